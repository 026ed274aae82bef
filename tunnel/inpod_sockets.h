#pragma once

#include <cstdint>

#include "common/fd.h"
#include "common/ip_address.h"
#include "common/result.h"
#include "common/sockets.h"

namespace nodemesh::tunnel {

// A TCP socket for an upstream connection, created inside netns_fd (the thread enters and
// leaves it), carrying `mark`; bound to `bind_ip` (port 0) when given. With `transparent`
// (IP_TRANSPARENT) bind_ip may be a foreign address: the original client's. `avoid_port`, when
// non-zero, is a source port the kernel must not pick (see tcp_relay.cc): the port is then
// chosen at bind(); otherwise connect() chooses it (IP_BIND_ADDRESS_NO_PORT).
Result<UniqueFd> socketInNetns(int netns_fd, bool ipv6, uint32_t mark,
                               const IpAddress* bind_ip = nullptr, bool transparent = false,
                               uint16_t avoid_port = 0);

}  // namespace nodemesh::tunnel
