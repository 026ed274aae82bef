#include "tests/e2e/privileged_gate.h"

#include "sim/sim_cluster.h"

namespace nodemesh::sim {
namespace {

// A failed test's cluster prints its processes' output at teardown.
const bool kFailureProbeInstalled = [] {
  setFailureProbe([] { return ::testing::Test::HasFailure(); });
  return true;
}();

}  // namespace
}  // namespace nodemesh::sim
