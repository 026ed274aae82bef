#pragma once

#include <string>

#include "common/result.h"

namespace nodemesh {

// The mount point of the cgroup2 (unified) hierarchy, read from /proc/self/mountinfo.
// Hybrid hosts mount it at /sys/fs/cgroup/unified, pure cgroup2 hosts at /sys/fs/cgroup.
Result<std::string> findCgroup2Root();

}  // namespace nodemesh
