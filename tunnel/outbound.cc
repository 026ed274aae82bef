#include "tunnel/outbound.h"

#include <cstdio>

#include "model/mesh.h"
#include "tunnel/inpod_sockets.h"
#include "tunnel/pod_listeners.h"

namespace nodemesh::tunnel {

void Outbound::accept(Pod& pod, UniqueFd fd) {
  bump(ctx_.counters.accepted_outbound);
  auto peer = peerAddress(fd.get());
  auto local = localAddress(fd.get());
  std::optional<SocketAddress> dst;
  if (peer) dst = resolver_.takeOrigDst(pod.cookie, *peer);
  if (auto snap = peer && dst ? mesh_.snapshot() : nullptr) {
    auto route = model::routeOutbound(*snap, dst->ip, pod.identity.has_value());
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
  auto dst_id = identity::SpiffeId::create(dst_workload.trust_domain, dst_workload.namespace_name,
                                           dst_workload.service_account);
  StreamBridge* b = bridges_.create(nullptr, std::move(app), Direction::kOutbound, pod.name);
  b->record.src = app_addr;
  b->record.dst = dst;
  b->record.src_identity = pod.identity->toString();
  if (target) {
    b->record.dst_service = target->service->key();
    b->record.service_addr = target->vip;
    b->record.attempts = static_cast<unsigned>(target->tried.size());
    b->service = std::move(target);  // failures below are retried by abort()
  }
  if (dst_id) b->record.dst_identity = dst_id->toString();
  // Metrics count a service connection once, at its first attempt.
  if (!b->service || b->service->tried.size() == 1) ctx_.events.opened(b->record);
  if (!dst_id) {
    bump(ctx_.counters.failed_connect);
    return b->abort("destination identity: " + dst_id.error().message);
  }
  std::string error;
  HboneConnection* c =
      pool_->clientFor(pod, *dst_id, SocketAddress{dst.ip, options_.hbone_port}, &error);
  if (!c) {
    bump(ctx_.counters.failed_connect);
    return b->abort(error);
  }
  hbone::ConnectHeaders headers;
  // The client as the mesh knows it: the pod's address and the application's port.
  headers.forwarded_for = SocketAddress{pod.ips.empty() ? app_addr.ip : pod.ips[0], app_addr.port};
  headers.traceparent = newTraceparent();
  headers.baggage = baggageFor(pod);
  auto stream = c->h2().openConnect(dst.toString(), headers);
  if (!stream) {
    bump(ctx_.counters.failed_connect);
    return b->abort("open HBONE stream: " + stream.error().message);
  }
  bump(ctx_.counters.hbone_streams_opened);
  b->attach(c, *stream);
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
