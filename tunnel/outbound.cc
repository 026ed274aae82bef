#include "tunnel/outbound.h"

#include <cstdio>

#include "model/mesh.h"
#include "tunnel/inpod_sockets.h"
#include "tunnel/pod_listeners.h"

namespace nodemesh::tunnel {
namespace {

// What the fast path's and HBONE's records of an outbound connection have in common: the
// client, the hop's destination, the client's identity and the service attempt, if any.
void recordHop(ConnectionRecord& record, const Pod& pod, const SocketAddress& app_addr,
               const SocketAddress& authority, const ServiceTarget* target) {
  record.src = app_addr;
  record.dst = authority;
  record.src_identity = pod.identity->toString();
  if (target == nullptr) return;
  record.dst_service = target->service->key();
  record.service_addr = target->vip;
  record.attempts = static_cast<unsigned>(target->tried.size());
}

}  // namespace

void Outbound::accept(Pod& pod, UniqueFd fd) {
  bump(ctx_.counters.accepted_outbound);
  auto peer = peerAddress(fd.get());
  auto local = localAddress(fd.get());
  std::optional<SocketAddress> dst;
  if (peer) dst = resolver_.takeOrigDst(pod.cookie, *peer);
  if (auto snap = peer && dst ? mesh_.snapshot() : nullptr) {
    model::OutboundSource source;
    source.has_identity = pod.identity.has_value();
    if (pod.identity) source.identity = pod.identity->toString();
    source.ip = peer->ip;
    auto route = model::routeOutbound(*snap, dst->ip, source);
    switch (route.route) {
      case model::OutboundRoute::kService: {
        auto target = std::make_unique<ServiceTarget>();
        target->snapshot = snap;
        target->service = route.service;
        target->vip = *dst;
        target->pod_cookie = pod.cookie;
        return dialer_.start(pod, std::move(fd), *peer, std::move(target), "");
      }
      case model::OutboundRoute::kHbone:
        return relayHbone(pod, std::move(fd), *peer, *dst, *route.workload, nullptr);
      case model::OutboundRoute::kWaypoint:
        return relayToWaypoint(pod, std::move(fd), *peer, *dst, route);
      case model::OutboundRoute::kTcp:
        break;
    }
  }
  TcpConnection* c = relay_.create(Direction::kOutbound, pod.name, std::move(fd));
  if (!peer || !local) {
    bump(ctx_.counters.failed_io);
    return relay_.abort(c, "accepted socket has no address");
  }
  c->record.src = *peer;
  if (!dst) {
    bump(ctx_.counters.failed_no_orig_dst);
    return relay_.abort(c, "no original destination recorded for " + peer->toString() +
                               " (connected to 15001 directly?)");
  }
  c->record.dst = *dst;
  ctx_.events.opened(c->record);
  relay_.connectFromNetns(c, pod.netns.get(), options_.outbound_mark);
}

void Outbound::relayTcp(Pod& pod, UniqueFd app, ConnectionRecord record,
                        std::unique_ptr<ServiceTarget> target, bool count_opened) {
  TcpConnection* c = relay_.create(Direction::kOutbound, pod.name, std::move(app));
  c->record = std::move(record);
  if (count_opened) ctx_.events.opened(c->record);
  c->service = std::move(target);
  relay_.connectFromNetns(c, pod.netns.get(), options_.outbound_mark);
}

void Outbound::refuse(Pod& pod, UniqueFd app, ConnectionRecord record, bool count_opened,
                      const std::string& why) {
  TcpConnection* c = relay_.create(Direction::kOutbound, pod.name, std::move(app));
  c->record = std::move(record);
  if (count_opened) ctx_.events.opened(c->record);
  relay_.abort(c, why);
}

void Outbound::relayHbone(Pod& pod, UniqueFd app, const SocketAddress& app_addr,
                          const SocketAddress& dst, const model::Workload& dst_workload,
                          std::unique_ptr<ServiceTarget> target) {
  HboneHop hop{dst, SocketAddress{dst.ip, options_.hbone_port}, &dst_workload, ""};
  openStream(pod, std::move(app), app_addr, hop, std::move(target));
}

void Outbound::relayToWaypoint(Pod& pod, UniqueFd app, const SocketAddress& app_addr,
                               const SocketAddress& dst, const model::OutboundDecision& route) {
  const model::WaypointTarget& waypoint = *route.waypoint;
  if (waypoint.workloads.empty()) {
    ConnectionRecord record;
    record.src = app_addr;
    record.dst = dst;
    if (route.service) record.dst_service = route.service->key();
    bump(ctx_.counters.failed_no_waypoint);
    return refuse(pod, std::move(app), std::move(record), true, waypoint.error);
  }
  // Requests are balanced by the waypoint; connections over its instances at random, as
  // ztunnel picks among the waypoint service's endpoints.
  const model::Workload& w = *waypoint.workloads[rng_() % waypoint.workloads.size()];
  const IpAddress* ip = &w.workload_ips.front();
  for (const IpAddress& candidate : w.workload_ips) {
    if (candidate.isV4() == dst.ip.isV4()) {
      ip = &candidate;  // the client's address family when the waypoint has it
      break;
    }
  }
  HboneHop hop{dst, SocketAddress{*ip, waypoint.address->hbone_mtls_port}, &w,
               w.namespace_name + "/" + w.name};
  std::unique_ptr<ServiceTarget> target;
  if (route.service) {
    // Only for the record: the waypoint, not this agent, picks the endpoint.
    target = std::make_unique<ServiceTarget>();
    target->service = route.service;
    target->vip = dst;
    target->tried.push_back(w.uid);
  }
  bump(ctx_.counters.waypoint_streams);
  openStream(pod, std::move(app), app_addr, hop, std::move(target));
}

void Outbound::deliverOnNode(Pod& pod, Pod& server, UniqueFd app, const SocketAddress& app_addr,
                             const HboneHop& hop, std::unique_ptr<ServiceTarget> target) {
  TcpConnection* c = relay_.create(Direction::kOutbound, pod.name, std::move(app));
  recordHop(c->record, pod, app_addr, hop.authority, target.get());
  c->record.transport = Transport::kLocal;
  c->record.dst_identity = server.identity->toString();
  c->service = std::move(target);
  // Metrics count a service connection once, at its first attempt.
  if (!c->service || c->service->tried.size() == 1) ctx_.events.opened(c->record);
  bump(ctx_.counters.same_node_deliveries);
  // The client as the server's side of HBONE would see it: the pod's address of the
  // destination's family (the connection's), and the application's port.
  const IpAddress* client_ip = pod.ips.empty() ? &app_addr.ip : &pod.ips[0];
  for (const IpAddress& ip : pod.ips) {
    if (ip.isV4() == hop.authority.ip.isV4()) {
      client_ip = &ip;
      break;
    }
  }
  inbound_.deliverOnNode(c, server, SocketAddress{*client_ip, app_addr.port});
}

void Outbound::openStream(Pod& pod, UniqueFd app, const SocketAddress& app_addr,
                          const HboneHop& hop, std::unique_ptr<ServiceTarget> target) {
  if (options_.same_node_fast_path && hop.waypoint.empty()) {
    Pod* server = pods_.findByIp(hop.authority.ip);
    if (server != nullptr && server->identity && pod.identity) {
      return deliverOnNode(pod, *server, std::move(app), app_addr, hop, std::move(target));
    }
  }
  const model::Workload& peer = *hop.peer;
  auto peer_id =
      identity::SpiffeId::create(peer.trust_domain, peer.namespace_name, peer.service_account);
  StreamBridge* b = bridges_.create(nullptr, std::move(app), Direction::kOutbound, pod.name);
  recordHop(b->record, pod, app_addr, hop.authority, target.get());
  b->record.waypoint = hop.waypoint;
  // Failures below are retried by abort() over the service's endpoints; a waypoint's failure
  // is not (its instances are not the service's endpoints).
  if (hop.waypoint.empty()) b->service = std::move(target);
  if (peer_id) b->record.dst_identity = peer_id->toString();
  // Metrics count a service connection once, at its first attempt.
  if (!b->service || b->service->tried.size() == 1) ctx_.events.opened(b->record);
  if (!peer_id) {
    bump(ctx_.counters.failed_connect);
    return b->abort("destination identity: " + peer_id.error().message);
  }
  std::string error;
  HboneConnection* c = pool_->clientFor(pod, *peer_id, hop.connect_to, &error);
  if (!c) {
    bump(ctx_.counters.failed_connect);
    return b->abort(error);
  }
  hbone::ConnectHeaders headers;
  // The client as the mesh knows it: the pod's address and the application's port.
  headers.forwarded_for = SocketAddress{pod.ips.empty() ? app_addr.ip : pod.ips[0], app_addr.port};
  headers.traceparent = newTraceparent();
  headers.baggage = baggageFor(pod);
  auto stream = c->h2().openConnect(hop.authority.toString(), headers);
  if (!stream) {
    bump(ctx_.counters.failed_connect);
    return b->abort("open HBONE stream: " + stream.error().message);
  }
  bump(ctx_.counters.hbone_streams_opened);
  b->attach(c, *stream);
  // A refused stream is opened again on a usable connection (the refusing one is going away).
  b->reopen = [this, cookie = pod.cookie, dst_id = *peer_id, connect_to = hop.connect_to,
               authority = hop.authority.toString(), headers](StreamBridge& bridge) {
    Pod* p = pods_.find(cookie);
    if (p == nullptr || !p->identity) return false;
    std::string why;
    HboneConnection* again = pool_->clientFor(*p, dst_id, connect_to, &why);
    if (again == nullptr) return false;
    auto reopened = again->h2().openConnect(authority, headers);
    if (!reopened) return false;
    bump(ctx_.counters.hbone_streams_opened);
    bridge.attach(again, *reopened);
    return true;
  };
}

std::string Outbound::newTraceparent() {
  char trace[56];
  std::snprintf(trace, sizeof(trace), "00-%016llx%016llx-%016llx-01",
                static_cast<unsigned long long>(rng_()), static_cast<unsigned long long>(rng_()),
                static_cast<unsigned long long>(rng_()));
  return trace;
}

std::string Outbound::baggageFor(const Pod& pod) const {
  auto snap = mesh_.snapshot();
  const model::Workload* src = snap && !pod.ips.empty() ? snap->workloadByIp(pod.ips[0]) : nullptr;
  if (!src) return "";
  std::string kind = src->workload_type.empty() ? "pod" : src->workload_type;
  std::string baggage = "k8s.namespace.name=" + src->namespace_name + ",k8s." + kind +
                        ".name=" + (src->workload_name.empty() ? src->name : src->workload_name);
  if (!src->cluster_id.empty()) baggage += ",k8s.cluster.name=" + src->cluster_id;
  if (!src->canonical_name.empty()) baggage += ",service.name=" + src->canonical_name;
  if (!src->canonical_revision.empty()) baggage += ",service.version=" + src->canonical_revision;
  return baggage;
}

}  // namespace nodemesh::tunnel
