#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/result.h"

namespace nodemesh::agent {

// Reads the capture counters from an agent's pinned maps (<bpffs>/maps), without the agent:
// summed over CPUs, by reason name (reasonName()). Node-wide without a cookie, else the pod's.
// Zero counters are included.
Result<std::map<std::string, uint64_t>> readPinnedCounters(
    const std::string& maps_dir, std::optional<uint64_t> pod_netns_cookie = std::nullopt);

}  // namespace nodemesh::agent
