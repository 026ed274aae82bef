#include "common/sockets.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

namespace nodemesh {

socklen_t toSockaddr(const SocketAddress& addr, sockaddr_storage* out) {
  std::memset(out, 0, sizeof(*out));
  if (addr.ip.isV4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_addr = addr.ip.v4();
    sin->sin_port = htons(addr.port);
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_addr = addr.ip.v6();
  sin6->sin6_port = htons(addr.port);
  return sizeof(sockaddr_in6);
}

Result<SocketAddress> fromSockaddr(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    return SocketAddress{IpAddress::fromV4(sin->sin_addr), ntohs(sin->sin_port)};
  }
  if (ss.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    return SocketAddress{IpAddress::fromV6(sin6->sin6_addr), ntohs(sin6->sin6_port)};
  }
  return Error{EAFNOSUPPORT, "unexpected address family " + std::to_string(ss.ss_family)};
}

Status setSocketMark(int fd, uint32_t mark) {
  if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
    return Error::fromErrno("setsockopt SO_MARK (needs CAP_NET_ADMIN)");
  }
  return okStatus();
}

Result<UniqueFd> listenTcp(const SocketAddress& addr, uint32_t mark, bool reuseport, int backlog) {
  bool v4 = addr.ip.isV4();
  UniqueFd fd(::socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::fromErrno("socket");
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuseport && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return Error::fromErrno("setsockopt SO_REUSEPORT");
  }
  if (!v4) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  // Accepted sockets inherit it. Without it Nagle holds a small write (an HTTP/2 frame of one
  // stream) while an earlier one is unacknowledged: on an HBONE connection that several
  // streams share, a response then waits for the peer's delayed ACK.
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (mark != 0) {
    if (auto st = setSocketMark(fd.get(), mark); !st) return st.error();
  }
  sockaddr_storage ss{};
  socklen_t len = toSockaddr(addr, &ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Error::fromErrno("bind " + addr.toString());
  }
  if (::listen(fd.get(), backlog) != 0) return Error::fromErrno("listen " + addr.toString());
  return fd;
}

Result<SocketAddress> localAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Error::fromErrno("getsockname");
  }
  return fromSockaddr(ss);
}

Result<SocketAddress> peerAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Error::fromErrno("getpeername");
  }
  return fromSockaddr(ss);
}

void resetOnClose(int fd) {
  linger lin{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
}

}  // namespace nodemesh
