#pragma once

// The run loop of nodemesh-bench, between the command line (nodemesh_bench.cc) and the report
// (report.h): it builds the simulated cluster, runs every selected scenario for every mode, once
// per repeat, and removes the cluster. Figures, facts and errors go into Results; a scenario
// that fails is an error of the report, not an exception.

#include <string>
#include <vector>

#include "bench/bench_env.h"
#include "bench/report.h"

namespace nodemesh::bench {

// One progress line on stderr ("[bench] ...").
void logLine(const std::string& line);

struct SuiteOutcome {
  std::vector<std::string> leftovers;   // what the cluster's teardown could not remove
  std::vector<double> background_vcpu;  // vCPU of processes outside the cluster, per mode run
  std::string congestion_used;          // what the pods ran, after any fallback
  std::string congestion_fallback;      // why it is not Options::congestion_control
};

// Runs the scenarios `order` (a subset of kScenarioOrder, in its order) for every mode of `o`:
// in each repeat the latency scenario first, the modes taking turns between sockperf runs, then
// each mode's other scenarios on one start of the mode (an L7 mode starts afresh for each).
SuiteOutcome runSuite(const Options& o, const std::vector<std::string>& order, Results& results);

}  // namespace nodemesh::bench
