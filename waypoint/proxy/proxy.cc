#include "waypoint/proxy/proxy.h"

#include <algorithm>
#include <vector>

#include <spdlog/spdlog.h>

namespace nodemesh::waypoint {

namespace {

const model::GatewayAddress* waypointOf(const model::Snapshot& snapshot, const IpAddress& ip) {
  if (const model::Service* s = snapshot.serviceByVip(ip)) {
    return s->waypoint ? &*s->waypoint : nullptr;
  }
  const model::Workload* w = snapshot.workloadByIp(ip);
  return w && w->waypoint ? &*w->waypoint : nullptr;
}

}  // namespace

bool servedBy(const model::Snapshot& snapshot, const SocketAddress& dst,
              const std::string& self_uid) {
  const model::GatewayAddress* gateway = waypointOf(snapshot, dst.ip);
  if (!gateway) return false;
  model::WaypointTarget target = model::resolveWaypoint(snapshot, *gateway);
  return std::any_of(target.workloads.begin(), target.workloads.end(),
                     [&](const model::Workload* w) { return w->uid == self_uid; });
}

UpstreamChoice Proxy::choose(const SocketAddress& dst) {
  UpstreamChoice c;
  auto fail = [&c](int status, std::string why) {
    c.status = status;
    c.error = std::move(why);
    return c;
  };
  if (!snapshot_) return fail(hbone::kStatusServiceUnavailable, "no config yet");
  const model::Snapshot& snap = *snapshot_;
  if (!servedBy(snap, dst, self_uid_)) {
    return fail(hbone::kStatusBadRequest, dst.toString() + " does not use this waypoint");
  }
  c.service = snap.serviceByVip(dst.ip);
  if (!c.service) {
    // A pod addressed directly: it is the endpoint.
    c.workload = snap.workloadByIp(dst.ip);
    c.address = dst;
    if (!model::inMesh(*c.workload)) {
      return fail(hbone::kStatusServiceUnavailable,
                  "workload " + c.workload->namespace_name + "/" + c.workload->name +
                      " is not in the mesh (the waypoint sends over HBONE only)");
    }
    return c;
  }
  auto port = c.service->ports.find(dst.port);
  if (port == c.service->ports.end()) {
    return fail(hbone::kStatusBadRequest,
                "port " + std::to_string(dst.port) + " is not a port of " + c.service->key());
  }
  struct Candidate {
    const model::Workload* w;
    uint16_t target;
  };
  std::vector<Candidate> candidates;
  for (const model::Endpoint& ep : snap.endpoints(*c.service)) {
    const model::Workload* w = snap.workloadByUid(ep.workload_uid);
    if (!w || w->workload_ips.empty() || !model::inMesh(*w)) continue;
    if (w->status != model::HealthStatus::Healthy || ep.status != model::HealthStatus::Healthy) {
      continue;
    }
    uint16_t target = port->second;
    auto own = ep.ports.find(dst.port);
    if (own != ep.ports.end() && own->second != 0) target = own->second;
    if (target == 0) continue;
    candidates.push_back({w, target});
  }
  if (candidates.empty()) {
    return fail(hbone::kStatusServiceUnavailable,
                "no healthy endpoint in the mesh for " + c.service->key());
  }
  // Power of two choices on the requests in flight (Envoy's LEAST_REQUEST default).
  const Candidate* pick = &candidates[rng_() % candidates.size()];
  if (candidates.size() > 1) {
    const Candidate* second = &candidates[rng_() % candidates.size()];
    if (in_flight_[second->w->uid] < in_flight_[pick->w->uid]) pick = second;
  }
  c.workload = pick->w;
  c.address = SocketAddress{pick->w->workload_ips.front(), pick->target};
  return c;
}

void Proxy::onConnectRequest(HboneConn& conn, hbone::StreamId stream,
                             const hbone::ConnectRequest& request) {
  ++stats_.streams;
  joins_.push_back(Join{});
  Join& j = joins_.back();
  Join* jp = &j;
  j.join = std::make_unique<StreamJoin>(conn, stream, [jp] { jp->done = true; });
  if (!conn.peerIdentity()) {
    ++stats_.refused;
    return j.join->refuse(hbone::kStatusUnauthorized, "the client showed no certificate");
  }
  UpstreamChoice choice = choose(request.target);
  if (choice.status != hbone::kStatusOk) {
    ++stats_.refused;
    spdlog::info("waypoint: CONNECT {} from {} ({}) refused with {}: {}", request.authority,
                 conn.peer().toString(), conn.peerIdentity()->toString(), choice.status,
                 choice.error);
    return j.join->refuse(choice.status, choice.error);
  }
  const model::Workload& w = *choice.workload;
  auto peer_id = identity::SpiffeId::create(w.trust_domain, w.namespace_name, w.service_account);
  if (!peer_id) {
    ++stats_.refused;
    return j.join->refuse(hbone::kStatusServiceUnavailable, peer_id.error().message);
  }
  std::string error;
  HboneConn* up = conns_->clientFor(*peer_id, SocketAddress{choice.address.ip, 15008}, &error);
  if (!up) {
    ++stats_.refused;
    return j.join->refuse(hbone::kStatusServiceUnavailable, error);
  }
  hbone::ConnectHeaders headers;
  // The original client, as the node agent told us (forwarded: for="ip:port").
  const std::string& fwd = request.forwarded;
  if (auto at = fwd.find("for=\""); at != std::string::npos) {
    auto end = fwd.find('"', at + 5);
    if (end != std::string::npos) {
      if (auto addr = SocketAddress::parse(fwd.substr(at + 5, end - at - 5))) {
        headers.forwarded_for = *addr;
      }
    }
  }
  headers.baggage = request.baggage;
  headers.traceparent = request.traceparent;
  j.endpoint_uid = w.uid;
  ++in_flight_[w.uid];
  ++stats_.active;
  j.join->connect(*up, choice.address.toString(), headers);
}

void Proxy::reap() {
  for (auto it = joins_.begin(); it != joins_.end();) {
    if (!it->done) {
      ++it;
      continue;
    }
    if (!it->endpoint_uid.empty()) {
      auto f = in_flight_.find(it->endpoint_uid);
      if (f != in_flight_.end() && --f->second == 0) in_flight_.erase(f);
      --stats_.active;
      stats_.bytes_in += it->join->totals().to_upstream;
      stats_.bytes_out += it->join->totals().to_downstream;
    }
    it = joins_.erase(it);
  }
}

}  // namespace nodemesh::waypoint
