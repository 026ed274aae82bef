#pragma once

// Gate for privileged end-to-end tests. A test that needs root, network namespaces, cgroup2
// and bpffs starts with NODEMESH_REQUIRE_ROOT_OR_SKIP(): where the environment cannot run it
// the test is skipped with the reason, except when NODEMESH_REQUIRE_PRIVILEGED=1 (CI), where
// the same reason fails the test so a silently skipped suite cannot pass.
//
// Linking privileged_gate.cc also tells the simulated cluster when the current test has failed,
// so that its teardown prints the tail of every process's output (sim::setFailureProbe).

#include <gtest/gtest.h>

#include "sim/privileged.h"

// Use as the first statement of a privileged TEST body or of a fixture's SetUp().
#define NODEMESH_REQUIRE_ROOT_OR_SKIP()                                                \
  do {                                                                                 \
    if (auto nodemesh_sim_problem = ::nodemesh::sim::privilegedEnvironmentProblem()) { \
      if (::nodemesh::sim::privilegedTestsRequired()) {                                \
        GTEST_FAIL() << "privileged test cannot run (NODEMESH_REQUIRE_PRIVILEGED=1): " \
                     << *nodemesh_sim_problem;                                         \
      }                                                                                \
      GTEST_SKIP() << "privileged test skipped: " << *nodemesh_sim_problem;            \
    }                                                                                  \
  } while (0)
