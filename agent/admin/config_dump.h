#pragma once

// The config in force as JSON, in the shape of ztunnel's /config_dump (camelCase keys, the
// local config format's spellings), for the admin API and nodemeshctl.

#include <nlohmann/json.hpp>

#include "model/snapshot.h"

namespace nodemesh::agent::admin {

nlohmann::json workloadJson(const model::Workload& w);
// With the endpoints the snapshot merges (the service's own and the workloads that list it).
nlohmann::json serviceJson(const model::Snapshot& snapshot, const model::Service& s);
nlohmann::json policyJson(const model::Authorization& p);

}  // namespace nodemesh::agent::admin
