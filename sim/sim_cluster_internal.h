#pragma once

// Internal to sim/sim_cluster*.cc: paths and small file helpers the cluster's pieces share.

#include <sys/types.h>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace nodemesh::sim::cluster_internal {

namespace fs = std::filesystem;

inline constexpr const char* kNetnsDir = "/var/run/netns";
inline constexpr const char* kBpffsRoot = "/sys/fs/bpf";

inline bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

inline std::string errnoText(const std::string& what, int err = errno) {
  return what + ": " + std::strerror(err);
}

inline bool writeString(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  if (!out) return false;
  out << value;
  out.flush();
  return static_cast<bool>(out);
}
inline std::string tempRoot() {
  std::error_code ec;
  fs::path p = fs::temp_directory_path(ec);
  return ec ? "/tmp" : p.string();
}

// `ip netns delete`, or by hand when that fails (sim_cluster_cleanup.cc).
void deleteNetns(const std::string& name, std::vector<std::string>& problems);

// Whether pid is a live process (a zombie is not; this process is). sim_cluster_cleanup.cc.
bool pidAlive(pid_t pid);

}  // namespace nodemesh::sim::cluster_internal
