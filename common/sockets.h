#pragma once

// TCP socket helpers shared by the node tunnel and the waypoint.

#include <sys/socket.h>

#include <cstdint>

#include "common/fd.h"
#include "common/ip_address.h"
#include "common/result.h"

namespace nodemesh {

// A listening TCP socket bound to addr, carrying `mark` (none when 0). Must be called while the
// thread is inside the target network namespace. With `reuseport`, several workers' sockets share
// the address (SO_REUSEPORT): the kernel spreads connections over them, also after sk_lookup
// selected one of the group.
Result<UniqueFd> listenTcp(const SocketAddress& addr, uint32_t mark, bool reuseport = false,
                           int backlog = 4096);

// SO_MARK (needs CAP_NET_ADMIN).
Status setSocketMark(int fd, uint32_t mark);

Result<SocketAddress> localAddress(int fd);
Result<SocketAddress> peerAddress(int fd);

// Converts to a sockaddr usable with connect(2)/bind(2).
socklen_t toSockaddr(const SocketAddress& addr, sockaddr_storage* out);

Result<SocketAddress> fromSockaddr(const sockaddr_storage& ss);

// Ends a socket with a reset instead of a FIN when it is closed (SO_LINGER 0): a peer whose
// connection broke must not take the close for a clean end.
void resetOnClose(int fd);

}  // namespace nodemesh
