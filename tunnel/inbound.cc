#include "tunnel/inbound.h"

#include <algorithm>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "tunnel/inpod_sockets.h"
#include "tunnel/pod_listeners.h"

namespace nodemesh::tunnel {
namespace {

// The address in a `forwarded: for="ip:port"` header (RFC 7239); nullopt when absent or
// malformed. Untrusted: the caller checks it against the connection's peer.
std::optional<SocketAddress> forwardedFor(const std::string& forwarded) {
  auto pos = forwarded.find("for=");
  if (pos == std::string::npos) return std::nullopt;
  std::string value = forwarded.substr(pos + 4);
  value = value.substr(0, value.find_first_of(";,"));
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  auto addr = SocketAddress::parse(value);
  if (!addr) return std::nullopt;
  return *addr;
}

}  // namespace

bool Inbound::tunnelPort(uint16_t port) const {
  return port == options_.hbone_port || port == options_.inbound_port ||
         port == options_.outbound_port;
}

std::optional<std::string> Inbound::admit(Pod& pod, ConnectionSlot* slot) {
  if (!limits_ || !pod.limiter) return std::nullopt;
  const auto now = limits_->now();
  const Refusal refusal = admitConnection(pod.limiter, now, slot);
  if (refusal == Refusal::kNone) return std::nullopt;
  bump(refusal == Refusal::kConnections ? ctx_.counters.refused_connections
                                        : ctx_.counters.refused_rate);
  std::string why = refusalText(refusal, limits_->limits());
  ++refusals_unlogged_;
  if (now >= next_refusal_log_) {
    spdlog::warn(
        "{}: inbound connection {}; {} refused by this worker since its last such line (at most "
        "one every {} s; all counted in nodemesh_tunnel_workload_limit_refusals_total)",
        pod.name, why, refusals_unlogged_, kRefusalLogInterval.count());
    refusals_unlogged_ = 0;
    next_refusal_log_ = now + kRefusalLogInterval;
  }
  return why;
}

void Inbound::acceptPlaintext(Pod& pod, UniqueFd fd) {
  bump(ctx_.counters.accepted_inbound);
  auto peer = peerAddress(fd.get());
  auto local = localAddress(fd.get());
  TcpConnection* c = relay_.create(Direction::kInbound, pod.name, std::move(fd));
  if (!peer || !local) {
    bump(ctx_.counters.failed_io);
    return relay_.abort(c, "accepted socket has no address");
  }
  c->record.src = *peer;
  // sk_lookup steered the connection without NAT: the local address is where the client
  // wanted to go.
  c->record.dst = *local;
  ctx_.events.opened(c->record);
  if (c->record.dst.port == options_.inbound_port || c->record.dst.port == options_.outbound_port ||
      c->record.dst.ip.isLoopback()) {
    // Delivering to the tunnel's own listener would accept the delivery again, forever.
    bump(ctx_.counters.failed_connect);
    return relay_.abort(c, "refusing to deliver to the tunnel's own listener " + local->toString());
  }
  // A plaintext client has no identity to show: only policies that need none can allow it.
  // A denied connection is reset before the application is even connected to.
  if (!authorizer_.authorize(c->record, "")) {
    return relay_.abort(c, "denied: " + c->record.reason);
  }
  // Over the workload's caps: reset like a denial, before the application is connected to.
  if (auto refused = admit(pod, &c->slot)) return relay_.abort(c, *refused);
  // Deliver from inside the pod with the delivery mark (so cgroup/connect4 lets sk_lookup
  // pass it to the application), bound to the client's address (IP_TRANSPARENT) so that the
  // application sees it. Our accepted socket holds (dst, src:port): the delivery must not
  // reuse that source port, or the application's socket would have the very same 4-tuple.
  const bool transparent = c->record.src.ip.isV4() || pod.ipv6_delivery;
  const IpAddress* bind_ip = transparent ? &c->record.src.ip : &c->record.dst.ip;
  relay_.connectFromNetns(c, pod.netns.get(), options_.delivery_mark, bind_ip, transparent,
                          c->record.src.port);
}

void Inbound::deliverOnNode(TcpConnection* c, Pod& server, const SocketAddress& client) {
  auto owned = std::make_unique<ConnectionRecord>();
  ConnectionRecord& r = *owned;
  r.direction = Direction::kInbound;
  r.pod = server.name;
  r.transport = Transport::kLocal;
  r.src = client;
  r.dst = c->record.dst;
  r.src_identity = c->record.src_identity;
  r.dst_identity = c->record.dst_identity;
  c->delivery = std::move(owned);
  ctx_.events.opened(r);
  // What HBONE would have answered 400, 401 or 503 resets the client's connection here.
  auto refuse = [&](const std::string& why) {
    bump(ctx_.counters.same_node_refused);
    r.error = why;
    relay_.abort(c, server.name + " refused the connection: " + why);
  };
  if (tunnelPort(r.dst.port)) {
    return refuse("target port " + std::to_string(r.dst.port) + " is the tunnel's own");
  }
  if (!authorizer_.authorize(r, r.src_identity)) {
    // The client's side knows the verdict too (over HBONE it learns only the 401).
    c->record.denied = true;
    c->record.policy = r.policy;
    c->record.reason = r.reason;
    return refuse("denied: " + r.reason);
  }
  if (auto refused = admit(server, &c->slot)) return refuse(*refused);
  const bool transparent =
      client.ip.isV4() == r.dst.ip.isV4() && (r.dst.ip.isV4() || server.ipv6_delivery);
  const IpAddress* bind_ip = transparent ? &client.ip : &r.dst.ip;
  relay_.connectFromNetns(c, server.netns.get(), options_.delivery_mark, bind_ip, transparent);
}

void Inbound::onConnectRequest(HboneConnection& conn, hbone::StreamId stream,
                               const hbone::ConnectRequest& req) {
  auto reject = [&](int status, const std::string& why) {
    bump(ctx_.counters.hbone_streams_rejected);
    conn.logRefusal("HBONE CONNECT " + req.authority, status, why);
    (void)conn.h2().respond(stream, status);
  };
  const auto& peer_id = conn.peerIdentity();
  spdlog::debug("{}: HBONE CONNECT {} from {} ({}) forwarded=[{}] baggage=[{}] traceparent=[{}]",
                conn.podName(), req.authority, conn.peer().toString(),
                peer_id ? peer_id->toString() : "-", req.forwarded, req.baggage, req.traceparent);
  Pod* pod = conn.serverPod();
  if (!pod) return reject(503, "pod is being removed");
  const SocketAddress& target = req.target;
  if (std::find(pod->ips.begin(), pod->ips.end(), target.ip) == pod->ips.end()) {
    return reject(400, "target " + target.toString() + " is not an address of this pod");
  }
  if (tunnelPort(target.port)) {
    return reject(400, "target port " + std::to_string(target.port) + " is the tunnel's own");
  }
  // The client's port comes from `forwarded` only when the header names the connection's own
  // peer address: anything else is a claim the mesh cannot check.
  const SocketAddress& peer = conn.peer();
  auto forwarded = forwardedFor(req.forwarded);
  ConnectionRecord record;
  record.direction = Direction::kInbound;
  record.pod = pod->name;
  record.transport = Transport::kHbone;
  record.src = forwarded && forwarded->ip == peer.ip ? *forwarded : SocketAddress{peer.ip, 0};
  record.dst = target;
  record.src_identity = peer_id ? peer_id->toString() : "";
  record.dst_identity = pod->identity ? pod->identity->toString() : "";
  ctx_.events.opened(record);
  // A refusal once the record is open also ends the record; `log_line`: false where the
  // refusal is logged in summary instead (admit()).
  auto refuse_recorded = [&](int status, const std::string& why, std::string error, bool log_line) {
    bump(ctx_.counters.hbone_streams_rejected);
    if (log_line) conn.logRefusal("HBONE CONNECT " + req.authority, status, why);
    (void)conn.h2().respond(stream, status);
    record.error = std::move(error);
    ctx_.events.finished(record);
  };
  // Authorization, before anything is connected to the application: 401 when denied.
  if (!authorizer_.authorize(record, record.src_identity)) {
    const std::string reason = record.reason;
    return refuse_recorded(401, reason, "denied: " + reason, true);
  }
  // The node's budget for unread bytes is spent (buffer_budget.h): a peer whose streams hold
  // the budget's shed floor or more gets 503 until the streams holding the most are shed (like
  // Envoy's overload manager stops accepting); other peers, which hold little, are still served.
  if (ctx_.budget.full() && conn.bufferedBytes() >= ctx_.budget.shedFloor()) {
    bump(ctx_.counters.overload_streams_refused);
    const std::string why = fmt::format(
        "overload: {} bytes buffered for applications that do not read (--max-buffered-bytes {})",
        ctx_.budget.used(), ctx_.budget.limit());
    return refuse_recorded(503, why, why, true);
  }
  // Over the workload's caps: 503, the answer for a destination that cannot take the stream now
  // (RFC 9110 15.6.4; Envoy's circuit breakers answer overflow so, ztunnel answers a failed
  // delivery so). Not 429: that tells one client it sent too many, and the cap is the
  // workload's, whoever the clients are. Only the stream is refused: the HBONE connection
  // carries on with its others. Logged in summary by admit(), not per stream like reject().
  ConnectionSlot slot;
  if (auto refused = admit(*pod, &slot)) {
    return refuse_recorded(503, *refused, *refused, false);
  }
  // Delivered from the client's address, like 15006: the TCP peer of the HBONE connection is
  // the client pod.
  const bool transparent =
      peer.ip.isV4() == target.ip.isV4() && (target.ip.isV4() || pod->ipv6_delivery);
  const IpAddress* bind_ip = transparent ? &peer.ip : &target.ip;
  auto fd = socketInNetns(pod->netns.get(), !target.ip.isV4(), options_.delivery_mark, bind_ip,
                          transparent);
  if (!fd) return reject(503, fd.error().message);
  StreamBridge* b = bridges_.create(&conn, std::move(*fd), Direction::kInbound, pod->name);
  b->record = std::move(record);
  b->slot = std::move(slot);
  b->attach(&conn, stream);
  b->connectApplication();
}

}  // namespace nodemesh::tunnel
