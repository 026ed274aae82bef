#include "agent/bpf/bpffs.h"

#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <filesystem>
#include <system_error>

namespace nodemesh::agent {

namespace fs = std::filesystem;

bool isBpffs(const std::string& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

namespace {

Status mountBpffs(const std::string& where) {
  if (::mount("bpf", where.c_str(), "bpf", 0, "mode=0700") != 0) {
    return Error::fromErrno("mount bpffs on " + where);
  }
  return okStatus();
}

}  // namespace

Result<bool> ensureBpffsDir(const std::string& dir) {
  if (isBpffs(dir)) return false;
  const std::string kDefaultRoot = "/sys/fs/bpf";
  std::error_code ec;
  if (dir.rfind(kDefaultRoot + "/", 0) == 0 && !isBpffs(kDefaultRoot)) {
    if (!fs::is_directory(kDefaultRoot, ec)) {
      return Error{ENOENT, kDefaultRoot + " does not exist: is this a Linux host with sysfs?"};
    }
    if (auto st = mountBpffs(kDefaultRoot); !st) return st.error();
  }
  fs::create_directories(dir, ec);
  if (ec) return Error{ec.value(), "create " + dir + ": " + ec.message()};
  if (isBpffs(dir)) return false;
  if (auto st = mountBpffs(dir); !st) return st.error();
  return true;
}

Status removePinTree(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Error{ec.value(), "remove " + dir + ": " + ec.message()};
  }
  return okStatus();
}

}  // namespace nodemesh::agent
