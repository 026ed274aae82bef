#pragma once

#include <cstdint>

#include "common/result.h"

namespace nodemesh::tunnel {

// Routing inside a pod's network namespace that lets the tunnel deliver connections to the
// application from the original client's address (an IP_TRANSPARENT socket bound to it),
// without iptables:
//   - net.ipv4.tcp_fwmark_accept=1: the application's accepted socket inherits the mark of
//     the delivery socket's SYN,
//   - `ip rule fwmark <mark> lookup <table>` and `local 0.0.0.0/0 dev lo table <table>`: the
//     application's replies, carrying that mark, are delivered locally, to the tunnel;
//   - installDeliveryRoutingV6: the same for IPv6 (`ip -6 rule`, `local ::/0 dev lo`,
//     net.ipv6.fwmark_reflect), after installDeliveryRouting.
// All calls must run on a thread inside the pod's namespace. Idempotent. Removal removes both
// families' routing (a namespace without IPv6 is not an error).
Status installDeliveryRouting(uint32_t delivery_mark, uint32_t table);
Status installDeliveryRoutingV6(uint32_t delivery_mark, uint32_t table);
Status removeDeliveryRouting(uint32_t delivery_mark, uint32_t table);

}  // namespace nodemesh::tunnel
