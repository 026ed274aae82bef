// main() of the end-to-end tests: gtest's, plus the simulated clusters' Ctrl-C cleanup
// (sim/interrupt.h). Interrupted (Ctrl-C on ctest or on the binary, SIGTERM, SIGHUP), a test's
// cluster is swept at once instead of waiting for the next run's sweep.

#include <gtest/gtest.h>

#include "sim/interrupt.h"

int main(int argc, char** argv) {
  nodemesh::sim::runSweeperIfAsked();
  nodemesh::sim::cleanUpWhenInterrupted();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
