#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/ip_address.h"
#include "common/result.h"

namespace nodemesh::agent {

// A network namespace reachable through a path, identified by its nsfs inode.
struct NetnsCandidate {
  uint64_t inode = 0;
  std::string path;    // /var/run/netns/NAME (preferred) or /proc/PID/ns/net
  bool named = false;  // found under netns_dir
};

// Every network namespace named under netns_dir and, with include_processes, every one used by
// a process under proc_dir, once each, except the caller's own. No namespace is entered: a stat
// per name and a readlink per process. The process pass is the expensive one (a readlink per
// process on the machine, ~5 us each), so callers run it less often than the named one.
// With a `name_prefix`, named namespaces whose name does not start with it are left out, and
// so are the processes that use them (only their namespace is looked at, and it is not ours).
std::vector<NetnsCandidate> listNetns(const std::string& netns_dir = "/var/run/netns",
                                      const std::string& proc_dir = "/proc",
                                      bool include_processes = true,
                                      std::string_view name_prefix = {});

// Tells whether names under a directory (the named network namespaces) were created, removed
// or renamed, through inotify, so that a node whose pods are all enrolled need not list them on
// every pass. Not thread-safe; never blocks.
class NetnsDirWatch {
 public:
  // Names that do not start with `name_prefix` are not changes (listNetns leaves them out).
  explicit NetnsDirWatch(std::string dir, std::string name_prefix = {})
      : dir_(std::move(dir)), prefix_(std::move(name_prefix)) {}

  // True when a name changed since the last call, and also whenever the watch is not in place
  // (inotify unavailable, the directory missing, or it was removed, moved or overflowed the
  // event queue): the caller cannot rely on it then and must look itself. The call that puts
  // the watch in place returns true too: what happened before it is unknown.
  bool changed();
  // The watch is in place (after a changed() call).
  bool active() const { return wd_ >= 0; }

 private:
  void drop();

  std::string dir_;
  std::string prefix_;
  UniqueFd fd_;
  int wd_ = -1;
};

// The addresses configured on the interfaces of the namespace netns_fd names (the calling
// thread enters it for the netlink dump and returns).
Result<std::vector<IpAddress>> netnsAddresses(int netns_fd);

}  // namespace nodemesh::agent
