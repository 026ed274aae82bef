#include "sim/privileged.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/magic.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "common/cgroup.h"
#include "sim/process.h"
#include "sim/sim_cluster.h"

namespace nodemesh::sim {
namespace {

constexpr const char* kBpffsPath = "/sys/fs/bpf";

std::optional<std::string> probe() {
  if (::geteuid() != 0) return "not running as root (euid " + std::to_string(::geteuid()) + ")";

  // A network namespace can be created (CAP_SYS_ADMIN, CONFIG_NET_NS, not blocked by seccomp).
  pid_t child = ::fork();
  if (child < 0) return "fork: " + std::string(std::strerror(errno));
  if (child == 0) ::_exit(::unshare(CLONE_NEWNET) == 0 ? 0 : 1);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return "cannot create a network namespace (unshare(CLONE_NEWNET) failed)";
  }

  auto cgroup_root = findCgroup2Root();
  if (!cgroup_root) return "no cgroup2 hierarchy: " + cgroup_root.error().message;
  // The probe name matches the harness's stale-run pattern, so a crash here is swept later.
  std::string probe_dir = *cgroup_root + "/nmt" + std::to_string(::getpid()) + "xprobe";
  if (::mkdir(probe_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return "cannot create a cgroup under " + *cgroup_root + ": " + std::strerror(errno);
  }
  ::rmdir(probe_dir.c_str());

  if (auto st = ensureBpffsMounted(); !st) return st.error().message;

  if (!findExecutable("ip")) return "the `ip` tool (iproute2) is not installed";
  for (const char* plugin : {"bridge", "loopback", "static"}) {
    std::string path = std::string(kCniBinDir) + "/" + plugin;
    if (::access(path.c_str(), X_OK) != 0) {
      return "CNI plugin " + path + " is missing (install containernetworking-plugins)";
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> privilegedEnvironmentProblem() {
  static std::once_flag once;
  static std::optional<std::string> problem;
  std::call_once(once, [] { problem = probe(); });
  return problem;
}

bool privilegedTestsRequired() {
  const char* v = std::getenv("NODEMESH_REQUIRE_PRIVILEGED");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

Status ensureBpffsMounted() {
  struct statfs fs {};
  if (::statfs(kBpffsPath, &fs) == 0 && fs.f_type == BPF_FS_MAGIC) return okStatus();
  std::error_code ec;
  std::filesystem::create_directories(kBpffsPath, ec);
  if (::mount("bpf", kBpffsPath, "bpf", 0, "mode=0700") != 0) {
    return Error::fromErrno(std::string("mount -t bpf bpf ") + kBpffsPath);
  }
  return okStatus();
}

}  // namespace nodemesh::sim
