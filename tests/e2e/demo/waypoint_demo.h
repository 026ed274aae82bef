#pragma once

// The demo's waypoint part (issue 15): Bookinfo's reviews service behind a nodemesh-waypoint,
// routed by a Gateway API HTTPRoute that the demo rewrites while the mesh runs.

#include <map>
#include <string>
#include <vector>

#include "sim/sim_cluster.h"

namespace nodemesh::demo {

// The running cluster of the demo's first part.
struct WaypointDemoCluster {
  sim::SimCluster* cluster = nullptr;
  std::string config_path;                      // the file the agents watch; rewritten in place
  std::vector<std::string> nodes;               // in order of addNode(); at least one
  std::map<std::string, sim::Process*> agents;  // by node
};

// Adds a client pod, reviews-v1 and reviews-v2 (HTTP servers that answer their version) and a
// waypoint pod to the cluster and to its config, then sends requests through the waypoint while
// the config's HTTPRoute changes: 90/10, 50/50, a header rule for beta users, and a rate limit
// per client identity. Prints the measured splits, what the limit admitted and the waypoint's
// metrics. Returns the number of checks that failed: a split outside its tolerance, a request
// that did not get its answer, a rate limit that admitted too few or too many, a step that did
// not happen.
// Harness failures throw sim::HarnessError.
int runWaypointDemo(const WaypointDemoCluster& c);

}  // namespace nodemesh::demo
