#pragma once

// Can this process build a simulated cluster? Root, network namespaces, cgroup2 and bpffs.
// The e2e tests gate on it (tests/e2e/privileged_gate.h), the demo and the benchmark too: where
// the environment cannot run them they skip with the reason, except when
// NODEMESH_REQUIRE_PRIVILEGED=1 (CI), where the same reason is a failure.

#include <optional>
#include <string>

#include "common/result.h"

namespace nodemesh::sim {

// Why this process cannot run privileged e2e tests, or nullopt when it can. Probes once per
// process: euid 0, a network namespace can be created, the cgroup2 hierarchy is writable,
// bpffs is (or can be) mounted at /sys/fs/bpf, `ip` and the CNI plugins are installed.
std::optional<std::string> privilegedEnvironmentProblem();

// NODEMESH_REQUIRE_PRIVILEGED=1 in the environment.
bool privilegedTestsRequired();

// Mounts bpffs at /sys/fs/bpf unless a bpffs (statfs magic BPF_FS_MAGIC) is already there.
// The mount is left in place: it is the standard location and other users may rely on it.
Status ensureBpffsMounted();

}  // namespace nodemesh::sim
