#include "tunnel/inpod_sockets.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>

#include "common/netns.h"

namespace nodemesh::tunnel {

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

namespace {

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

Status setMark(int fd, uint32_t mark) {
  if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
    return Error::fromErrno("setsockopt SO_MARK (needs CAP_NET_ADMIN)");
  }
  return okStatus();
}

}  // namespace

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
  if (auto st = setMark(fd.get(), mark); !st) return st.error();
  sockaddr_storage ss{};
  socklen_t len = toSockaddr(addr, &ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Error::fromErrno("bind " + addr.toString());
  }
  if (::listen(fd.get(), backlog) != 0) return Error::fromErrno("listen " + addr.toString());
  return fd;
}

Result<UniqueFd> socketInNetns(int netns_fd, bool ipv6, uint32_t mark, const IpAddress* bind_ip,
                               bool transparent, uint16_t avoid_port) {
  // A few tries: a retry only happens when the kernel picked `avoid_port` (1 in ~28k binds).
  for (int attempt = 0; attempt < 4; ++attempt) {
    UniqueFd fd;
    {
      auto scope = ScopedNetns::enter(netns_fd);
      if (!scope) return scope.error();
      fd.reset(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (!fd.valid()) return Error::fromErrno("socket");
    }
    if (auto st = setMark(fd.get(), mark); !st) return st.error();
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!bind_ip) return fd;
    if (transparent) {
      int level = ipv6 ? IPPROTO_IPV6 : IPPROTO_IP;
      int option = ipv6 ? IPV6_TRANSPARENT : IP_TRANSPARENT;
      if (::setsockopt(fd.get(), level, option, &one, sizeof(one)) != 0) {
        return Error::fromErrno("setsockopt IP_TRANSPARENT (needs CAP_NET_ADMIN)");
      }
    }
    if (avoid_port == 0) {
      // The port is chosen by connect(), among those whose 4-tuple is free (TIME_WAIT ones
      // reused where tcp_tw_reuse allows). bind() picks a port free for every destination and
      // never one a TIME_WAIT socket holds: delivery sockets close first, so after a burst of
      // short connections tens of thousands of them sit in TIME_WAIT on bind()'s preferred
      // (odd) ports and every bind scans them all. The capture programs record the tuple at
      // connect (sockops TCP_CONNECT_CB), not here.
      ::setsockopt(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    }
    sockaddr_storage ss{};
    socklen_t len = toSockaddr(SocketAddress{*bind_ip, 0}, &ss);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      return Error::fromErrno("bind " + bind_ip->toString());
    }
    auto local = localAddress(fd.get());
    if (!local) return local.error();
    if (avoid_port == 0 || local->port != avoid_port) return fd;
  }
  return Error{EADDRINUSE, "no source port other than " + std::to_string(avoid_port)};
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

}  // namespace nodemesh::tunnel
