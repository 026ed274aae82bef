#include "common/cgroup.h"

#include <fstream>
#include <sstream>

namespace nodemesh {

Result<std::string> findCgroup2Root() {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return Error::fromErrno("open /proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // Format (proc(5)): id parent major:minor root mount-point options [optional...] - fstype ...
    auto sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream tail(line.substr(sep + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream head(line.substr(0, sep));
    std::string id, parent, devno, root, mount_point;
    head >> id >> parent >> devno >> root >> mount_point;
    if (root == "/") return mount_point;
  }
  return Error{ENOENT, "no cgroup2 filesystem is mounted (see /proc/self/mountinfo)"};
}

}  // namespace nodemesh
