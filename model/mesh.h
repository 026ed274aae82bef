#pragma once

// Which workloads are in the mesh, and how a captured connection travels to its destination.
// The one definition shared by enrollment (agent/), the data path (tunnel/) and
// `nodemeshctl explain` (agent/explain/), so that explain cannot drift from what happens.

#include "common/ip_address.h"
#include "model/snapshot.h"

namespace nodemesh::model {

// A workload the node agents capture and reach over HBONE: protocol HBONE, and not on the
// host's network (a hostNetwork pod shares the node's namespace, which is never captured).
bool inMesh(const Workload& w);

enum class OutboundRoute {
  kService,  // a service VIP: the load balancer picks an endpoint (then kHbone or kTcp for it)
  kHbone,    // a workload in the mesh: HTTP/2 CONNECT over mutual TLS to its 15008
  kTcp,      // anything else: plain TCP to the original destination
};

struct OutboundDecision {
  OutboundRoute route = OutboundRoute::kTcp;
  const Service* service = nullptr;    // kService
  const Workload* workload = nullptr;  // kHbone, and kTcp to a workload outside the mesh
};

// How a captured outbound connection to `dst` travels. A service VIP wins over a workload
// address. `source_has_identity`: the client has a workload certificate; without one it can
// only use plain TCP.
OutboundDecision routeOutbound(const Snapshot& snapshot, const IpAddress& dst,
                               bool source_has_identity);

// The transport to one endpoint the load balancer picked (or any workload destination).
bool reachedByHbone(const Workload& dst, bool source_has_identity);

}  // namespace nodemesh::model
