#pragma once

// Why a request is routed the way it is, for the CLI and the admin API. explainRoute() calls
// RouteTable::route(), the function the data path calls, and describes its decision and trace:
// there is no second implementation of the rules to drift.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "waypoint/routing/route_table.h"

namespace nodemesh::waypoint {

struct RouteExplanation {
  struct Backend {
    std::string service;  // "namespace/name"
    uint16_t port = 0;
    uint32_t weight = 0;
    double percent = 0;   // of the rule's traffic
    bool exists = false;  // requests that pick a missing backend get 500
    std::vector<std::string> filters;
  };
  struct Mirror {
    std::string service;
    uint16_t port = 0;
    double percent = 0;
    bool exists = false;
  };

  RouteTarget target;
  RequestHead request;
  RouteDecision decision;  // one sample: the backend pick and mirror flips use a fixed seed
  RouteTrace trace;
  std::string outcome;               // "forward", "redirect 301", "respond 404 (NR)", ...
  std::vector<Backend> backends;     // the matched rule's candidates
  std::vector<std::string> filters;  // the matched rule's filters, described
  std::vector<Mirror> mirrors;       // the matched rule's mirrors (all backends)

  nlohmann::json toJson() const;
  // Several lines for a terminal.
  std::string toText() const;
};

RouteExplanation explainRoute(const RouteTable& table, const RouteTarget& target,
                              const RequestHead& request);

// One line per filter: "RequestHeaderModifier: set x-a: 1; remove x-b".
std::string describeFilter(const model::RouteFilter& filter);

}  // namespace nodemesh::waypoint
