#include "agent/metrics/connection_peers.h"

namespace nodemesh::agent::metrics {

ConnectionPeers resolvePeers(const model::Snapshot& snapshot, const ztunnel::ConnectionRecord& r) {
  ConnectionPeers peers;
  if (r.direction == ztunnel::Direction::kOutbound) {
    peers.source = snapshot.workloadByName(r.pod);
    peers.destination = snapshot.workloadByIp(r.dst.ip);
    if (!peers.destination) peers.service = snapshot.serviceByVip(r.dst.ip);
  } else {
    peers.destination = snapshot.workloadByName(r.pod);
    if (!peers.destination) peers.destination = snapshot.workloadByIp(r.dst.ip);
    peers.source = snapshot.workloadByIp(r.src.ip);
  }
  return peers;
}

std::string workloadKey(const model::Workload* w) {
  return w ? w->namespace_name + "/" + w->name : "-";
}

}  // namespace nodemesh::agent::metrics
