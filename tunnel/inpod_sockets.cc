#include "tunnel/inpod_sockets.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>

#include "common/netns.h"

namespace nodemesh::tunnel {

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
    if (auto st = setSocketMark(fd.get(), mark); !st) return st.error();
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

}  // namespace nodemesh::tunnel
