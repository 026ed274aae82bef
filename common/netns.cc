#include "common/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace nodemesh {

Result<UniqueFd> openNetns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::fromErrno("open netns " + path);
  return UniqueFd(fd);
}

Result<ScopedNetns> ScopedNetns::enter(int netns_fd) {
  int original = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original < 0) return Error::fromErrno("open /proc/thread-self/ns/net");
  UniqueFd original_fd(original);
  if (::setns(netns_fd, CLONE_NEWNET) != 0) return Error::fromErrno("setns");
  return ScopedNetns(std::move(original_fd));
}

ScopedNetns::~ScopedNetns() {
  if (!original_.valid()) return;
  if (::setns(original_.get(), CLONE_NEWNET) != 0) {
    // The thread would keep running in a pod's namespace: nothing after this is safe.
    spdlog::critical("setns back to the original network namespace failed: {}",
                     std::strerror(errno));
    std::abort();
  }
}

Result<uint64_t> socketNetnsCookie(int sock_fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(sock_fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
    return Error::fromErrno("getsockopt SO_NETNS_COOKIE");
  }
  return cookie;
}

Result<uint64_t> netnsCookie(int netns_fd) {
  auto scope = ScopedNetns::enter(netns_fd);
  if (!scope) return scope.error();
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return Error::fromErrno("socket");
  UniqueFd sock(s);
  return socketNetnsCookie(sock.get());
}

}  // namespace nodemesh
