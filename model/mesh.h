#pragma once

// Which workloads are in the mesh, and how a captured connection travels to its destination.
// The one definition shared by enrollment (agent/), the data path (tunnel/) and
// `nodemeshctl explain` (agent/explain/), so that explain cannot drift from what happens.

#include <optional>
#include <string>
#include <vector>

#include "common/ip_address.h"
#include "model/snapshot.h"

namespace nodemesh::model {

// A workload the node agents capture and reach over HBONE: protocol HBONE, and not on the
// host's network (a hostNetwork pod shares the node's namespace, which is never captured).
bool inMesh(const Workload& w);

enum class OutboundRoute {
  kService,   // a service VIP: the load balancer picks an endpoint (then kHbone or kTcp for it)
  kHbone,     // a workload in the mesh: HTTP/2 CONNECT over mutual TLS to its 15008
  kTcp,       // anything else: plain TCP to the original destination
  kWaypoint,  // the destination has a waypoint: HBONE to the waypoint, which routes it on
};

// The client of a captured connection, as far as routing cares.
struct OutboundSource {
  bool has_identity = false;  // a workload certificate; without one only plain TCP is possible
  std::string identity;       // its SPIFFE ID ("" when unknown)
  IpAddress ip;               // the address it connected from
};

// Where a GatewayAddress (a service's or workload's `waypoint`) leads: the workloads that run
// the waypoint, as ztunnel resolves it (fetch_waypoint): an address is a service VIP (its
// endpoints) or a workload's IP; a hostname is a service ("namespace/hostname").
struct WaypointTarget {
  const GatewayAddress* address = nullptr;
  std::vector<const Workload*> workloads;  // healthy, with an address; ordered by uid
  std::string error;                       // why `workloads` is empty
};

WaypointTarget resolveWaypoint(const Snapshot& snapshot, const GatewayAddress& address);

// Whether `source` is one of the workloads behind `waypoint` (its identity and one of its
// addresses, as ztunnel's check_from_waypoint): such traffic is never sent back to it.
bool fromWaypoint(const WaypointTarget& waypoint, const OutboundSource& source);

struct OutboundDecision {
  OutboundRoute route = OutboundRoute::kTcp;
  const Service* service = nullptr;    // kService; kWaypoint when the VIP is a service's
  const Workload* workload = nullptr;  // kHbone, kTcp to a known workload, kWaypoint to a pod IP
  std::optional<WaypointTarget> waypoint;  // kWaypoint
};

// How a captured outbound connection to `dst` travels. A service VIP wins over a workload
// address. A service with a waypoint sends everything to it; a workload's own waypoint applies
// only when it is addressed directly (ztunnel: service-addressed traffic never takes the
// endpoint's waypoint). Traffic from the waypoint itself goes on as if it had none.
OutboundDecision routeOutbound(const Snapshot& snapshot, const IpAddress& dst,
                               const OutboundSource& source);
// The same for a client the snapshot does not place behind any waypoint.
OutboundDecision routeOutbound(const Snapshot& snapshot, const IpAddress& dst,
                               bool source_has_identity);

// The transport to one endpoint the load balancer picked (or any workload destination).
bool reachedByHbone(const Workload& dst, bool source_has_identity);

}  // namespace nodemesh::model
