#include "model/mesh.h"

#include <algorithm>
#include <variant>

namespace nodemesh::model {

bool inMesh(const Workload& w) {
  return w.protocol == Protocol::Hbone && w.network_mode != NetworkMode::HostNetwork;
}

bool reachedByHbone(const Workload& dst, bool source_has_identity) {
  return source_has_identity && inMesh(dst);
}

namespace {

void addServiceWorkloads(const Snapshot& snapshot, const Service& service, WaypointTarget& t) {
  for (const Endpoint& ep : snapshot.endpoints(service)) {
    const Workload* w = snapshot.workloadByUid(ep.workload_uid);
    if (!w || w->workload_ips.empty()) continue;
    if (w->status != HealthStatus::Healthy || ep.status != HealthStatus::Healthy) continue;
    t.workloads.push_back(w);
  }
  if (t.workloads.empty()) {
    t.error = "waypoint service " + service.key() + " has no healthy endpoint";
  }
}

}  // namespace

WaypointTarget resolveWaypoint(const Snapshot& snapshot, const GatewayAddress& address) {
  WaypointTarget t;
  t.address = &address;
  if (const auto* host = std::get_if<NamespacedHostname>(&address.destination)) {
    const Service* service = snapshot.serviceByKey(host->toString());
    if (!service) {
      t.error = "waypoint " + address.toString() + " not found";
      return t;
    }
    addServiceWorkloads(snapshot, *service, t);
    return t;
  }
  const auto& ip = std::get<NetworkAddress>(address.destination).address;
  if (const Service* service = snapshot.serviceByVip(ip)) {
    addServiceWorkloads(snapshot, *service, t);
  } else if (const Workload* w = snapshot.workloadByIp(ip)) {
    t.workloads.push_back(w);
  } else {
    t.error = "waypoint " + address.toString() + " not found";
  }
  return t;
}

bool fromWaypoint(const WaypointTarget& waypoint, const OutboundSource& source) {
  if (source.identity.empty()) return false;
  return std::any_of(waypoint.workloads.begin(), waypoint.workloads.end(), [&](const Workload* w) {
    return w->identity() == source.identity &&
           std::find(w->workload_ips.begin(), w->workload_ips.end(), source.ip) !=
               w->workload_ips.end();
  });
}

OutboundDecision routeOutbound(const Snapshot& snapshot, const IpAddress& dst,
                               const OutboundSource& source) {
  OutboundDecision d;
  if (const Service* service = snapshot.serviceByVip(dst)) {
    d.service = service;
    d.route = OutboundRoute::kService;
    if (service->waypoint && source.has_identity) {
      WaypointTarget waypoint = resolveWaypoint(snapshot, *service->waypoint);
      if (!fromWaypoint(waypoint, source)) {
        d.route = OutboundRoute::kWaypoint;
        d.waypoint = std::move(waypoint);
      }
    }
    return d;
  }
  d.workload = snapshot.workloadByIp(dst);
  if (!d.workload || !source.has_identity) return d;
  if (d.workload->waypoint) {
    WaypointTarget waypoint = resolveWaypoint(snapshot, *d.workload->waypoint);
    if (!fromWaypoint(waypoint, source)) {
      d.route = OutboundRoute::kWaypoint;
      d.waypoint = std::move(waypoint);
      return d;
    }
  }
  if (inMesh(*d.workload)) d.route = OutboundRoute::kHbone;
  return d;
}

OutboundDecision routeOutbound(const Snapshot& snapshot, const IpAddress& dst,
                               bool source_has_identity) {
  OutboundSource source;
  source.has_identity = source_has_identity;
  return routeOutbound(snapshot, dst, source);
}

}  // namespace nodemesh::model
