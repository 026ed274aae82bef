#include "agent/metrics/connection_peers.h"

namespace nodemesh::agent::metrics {

ConnectionPeers resolvePeers(const model::Snapshot& snapshot, const tunnel::ConnectionRecord& r) {
  ConnectionPeers peers;
  if (r.direction == tunnel::Direction::kOutbound) {
    peers.source = snapshot.workloadByName(r.pod);
    peers.destination = snapshot.workloadByIp(r.dst.ip);
    // Through a service VIP the tunnel names the service; `dst` is the endpoint it picked.
    if (!r.dst_service.empty()) peers.service = snapshot.serviceByKey(r.dst_service);
    if (!peers.service && !peers.destination) peers.service = snapshot.serviceByVip(r.dst.ip);
  } else {
    peers.destination = snapshot.workloadByName(r.pod);
    if (!peers.destination) peers.destination = snapshot.workloadByIp(r.dst.ip);
    peers.source = snapshot.workloadByIp(r.src.ip);
  }
  return peers;
}

Verdict verdictOf(const tunnel::ConnectionRecord& r) {
  if (r.denied) return {"deny", r.policy, r.reason};
  if (r.direction == tunnel::Direction::kInbound) return {"allow", r.policy, r.reason};
  // Outbound: the destination's tunnel decides and answers a denied CONNECT with 401.
  if (r.error.find("answered 401") != std::string::npos) {
    return {"deny", "", "denied by the destination (HBONE 401)"};
  }
  return {};
}

std::string workloadKey(const model::Workload* w) {
  return w ? w->namespace_name + "/" + w->name : "-";
}

}  // namespace nodemesh::agent::metrics
