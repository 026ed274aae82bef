#pragma once

// Gate for privileged end-to-end tests. A test that needs root, network namespaces, cgroup2
// and bpffs starts with NODEMESH_REQUIRE_ROOT_OR_SKIP(): where the environment cannot run it
// the test is skipped with the reason, except when NODEMESH_REQUIRE_PRIVILEGED=1 (CI), where
// the same reason fails the test so a silently skipped suite cannot pass.

#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "common/result.h"

namespace nodemesh::e2e {

// Why this process cannot run privileged e2e tests, or nullopt when it can. Probes once per
// process: euid 0, a network namespace can be created, the cgroup2 hierarchy is writable,
// bpffs is (or can be) mounted at /sys/fs/bpf, `ip` and the CNI plugins are installed.
std::optional<std::string> privilegedEnvironmentProblem();

// NODEMESH_REQUIRE_PRIVILEGED=1 in the environment.
bool privilegedTestsRequired();

// Mounts bpffs at /sys/fs/bpf unless a bpffs (statfs magic BPF_FS_MAGIC) is already there.
// The mount is left in place: it is the standard location and other users may rely on it.
Status ensureBpffsMounted();

}  // namespace nodemesh::e2e

// Use as the first statement of a privileged TEST body or of a fixture's SetUp().
#define NODEMESH_REQUIRE_ROOT_OR_SKIP()                                                \
  do {                                                                                 \
    if (auto nodemesh_e2e_problem = ::nodemesh::e2e::privilegedEnvironmentProblem()) { \
      if (::nodemesh::e2e::privilegedTestsRequired()) {                                \
        GTEST_FAIL() << "privileged test cannot run (NODEMESH_REQUIRE_PRIVILEGED=1): " \
                     << *nodemesh_e2e_problem;                                         \
      }                                                                                \
      GTEST_SKIP() << "privileged test skipped: " << *nodemesh_e2e_problem;            \
    }                                                                                  \
  } while (0)
