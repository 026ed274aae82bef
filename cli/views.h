#pragma once

// What each nodemeshctl command shows, built from what the agent's admin API or the pins
// returned: the JSON data (-o json / -o yaml) and the table (-o table). Pure functions, so the
// formatting is unit-tested without an agent.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/doctor.h"
#include "cli/output.h"
#include "common/bpf_pins.h"

namespace nodemesh::cli {

struct Filters {
  std::string namespace_name;  // empty: all
  std::string node;            // empty: all
};

// bugprone-exception-escape: nlohmann::json's noexcept move calls assert_invariant(), which
// clang-tidy 14 cannot prove does not throw.
struct View {  // NOLINT(bugprone-exception-escape)
  nlohmann::json data;
  std::string table;  // rendered, ends with a newline (or empty when there is nothing)
};

// From /config_dump.
View workloadsView(const nlohmann::json& dump, const Filters& f, size_t width);
View servicesView(const nlohmann::json& dump, const Filters& f, size_t width);
View policiesView(const nlohmann::json& dump, const Filters& f, size_t width);
View certsView(const nlohmann::json& dump, const Filters& f,
               std::chrono::system_clock::time_point now, size_t width);
// Where the config and certificates come from (the dump's controlPlane): the source (file or
// istiod), the xDS connection, ACKed versions per type, the last NACK and why, and the CA.
View controlPlaneView(const nlohmann::json& dump, size_t width);
// From /connections.
View connectionsView(const nlohmann::json& connections, const Filters& f, size_t width);

// The enrolled pods: from /config_dump when the agent answers (names, netns), else only the
// cookies the pins know; the per-pod counters come from the pins either way.
struct PodCounters {
  uint64_t netns_cookie = 0;
  std::map<std::string, uint64_t> counters;  // empty: unreadable
};
View podsView(const std::optional<nlohmann::json>& dump, const std::vector<PodCounters>& pods,
              const Filters& f, size_t width);

View bpfView(const bpfpins::PinInventory& pins,
             const std::optional<std::map<std::string, uint64_t>>& node_counters, size_t width);
// From /explain: the story, numbered, and the verdict.
View explainView(const nlohmann::json& explanation, size_t width);
View doctorView(const std::vector<Check>& checks, size_t width);

}  // namespace nodemesh::cli
