#pragma once

#include <cstdint>
#include <string>

#include "common/fd.h"
#include "common/result.h"

namespace nodemesh {

// Opens a network namespace file (/var/run/netns/NAME, /proc/PID/ns/net).
Result<UniqueFd> openNetns(const std::string& path);

// Enters a network namespace for the calling thread and returns to the original one when
// destroyed. setns(2) with CLONE_NEWNET only affects the calling thread.
class ScopedNetns {
 public:
  static Result<ScopedNetns> enter(int netns_fd);
  ScopedNetns(ScopedNetns&& other) noexcept = default;
  ScopedNetns& operator=(ScopedNetns&&) = delete;
  ScopedNetns(const ScopedNetns&) = delete;
  ScopedNetns& operator=(const ScopedNetns&) = delete;
  ~ScopedNetns();

 private:
  explicit ScopedNetns(UniqueFd original) : original_(std::move(original)) {}
  UniqueFd original_;
};

// The kernel's netns cookie (SO_NETNS_COOKIE, Linux 5.14+) of the namespace netns_fd names;
// the same value bpf_get_netns_cookie() returns in programs running for that namespace.
Result<uint64_t> netnsCookie(int netns_fd);

// The cookie of the namespace a socket lives in.
Result<uint64_t> socketNetnsCookie(int sock_fd);

}  // namespace nodemesh
