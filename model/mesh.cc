#include "model/mesh.h"

namespace nodemesh::model {

bool inMesh(const Workload& w) {
  return w.protocol == Protocol::Hbone && w.network_mode != NetworkMode::HostNetwork;
}

bool reachedByHbone(const Workload& dst, bool source_has_identity) {
  return source_has_identity && inMesh(dst);
}

OutboundDecision routeOutbound(const Snapshot& snapshot, const IpAddress& dst,
                               bool source_has_identity) {
  OutboundDecision d;
  if (const Service* service = snapshot.serviceByVip(dst)) {
    d.route = OutboundRoute::kService;
    d.service = service;
    return d;
  }
  d.workload = snapshot.workloadByIp(dst);
  if (d.workload && reachedByHbone(*d.workload, source_has_identity)) {
    d.route = OutboundRoute::kHbone;
  }
  return d;
}

}  // namespace nodemesh::model
