#pragma once

#include <cstdint>

#include "common/fd.h"
#include "common/ip_address.h"
#include "common/result.h"

namespace nodemesh::tunnel {

// A listening TCP socket bound to addr, carrying `mark`. Must be called while the thread is
// inside the target network namespace.
// With `reuseport`, several workers' sockets share the address (SO_REUSEPORT): the kernel
// spreads connections over them, also after sk_lookup selected one of the group.
Result<UniqueFd> listenTcp(const SocketAddress& addr, uint32_t mark, bool reuseport = false,
                           int backlog = 4096);

// A TCP socket for an upstream connection, created inside netns_fd (the thread enters and
// leaves it), carrying `mark`; bound to `bind_ip` (port 0) when given. With `transparent`
// (IP_TRANSPARENT) bind_ip may be a foreign address: the original client's. `avoid_port`, when
// non-zero, is a source port the kernel must not pick (see tcp_relay.cc): the port is then
// chosen at bind(); otherwise connect() chooses it (IP_BIND_ADDRESS_NO_PORT).
Result<UniqueFd> socketInNetns(int netns_fd, bool ipv6, uint32_t mark,
                               const IpAddress* bind_ip = nullptr, bool transparent = false,
                               uint16_t avoid_port = 0);

Result<SocketAddress> localAddress(int fd);
Result<SocketAddress> peerAddress(int fd);

// Converts to a sockaddr usable with connect(2)/bind(2).
socklen_t toSockaddr(const SocketAddress& addr, sockaddr_storage* out);

}  // namespace nodemesh::tunnel
