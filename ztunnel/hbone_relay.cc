// HBONE in the worker (see worker.h): outbound connections to mesh destinations become
// HTTP/2 CONNECT streams on pooled mTLS connections to the destination pod's 15008, and
// connections accepted on 15008 are terminated here, checked, and delivered to the
// application from inside the pod.
//
// Rule of this file: nghttp2 callbacks (HboneConn::on*) never write to the socket and never
// free a connection; they change stream state and mark the connection dirty. After each batch
// of completions the worker flushes every dirty connection and frees the ones that are done
// (flushDirty).
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>

#include <spdlog/spdlog.h>

#include "ztunnel/inpod_sockets.h"
#include "ztunnel/worker.h"

namespace nodemesh::ztunnel::internal {
namespace {

void resetOnClose(int fd) {
  linger lin{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
}

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

// ---- nghttp2 callbacks: forwarded to the worker ----

void HboneConn::onRequest(hbone::StreamId stream, const hbone::ConnectRequest& request) {
  worker.onRequest(this, stream, request);
}
void HboneConn::onResponse(hbone::StreamId stream, int status) {
  worker.onResponse(this, stream, status);
}
void HboneConn::onData(hbone::StreamId stream, std::span<const uint8_t> data) {
  worker.onData(this, stream, data);
}
void HboneConn::onEndStream(hbone::StreamId stream) {
  worker.onEndStream(this, stream);
}
void HboneConn::onRequestRejected(hbone::StreamId /*stream*/, int status, std::string_view reason) {
  worker.onRequestRejected(this, status, reason);
}
void HboneConn::onStreamClosed(hbone::StreamId stream, uint32_t error_code) {
  worker.onStreamClosed(this, stream, error_code);
}
void HboneConn::onWritable(hbone::StreamId stream) {
  worker.onWritable(this, stream);
}
void HboneConn::onGoaway(hbone::StreamId /*last_stream*/, uint32_t /*error_code*/) {
  closing = true;  // no new streams on it; the open ones finish
}

// ---- connections ----

void Worker::markDirty(HboneConn* c) {
  if (c->dirty) return;
  c->dirty = true;
  dirty_.push_back(c);
}

void Worker::flushDirty() {
  while (!dirty_.empty()) {
    // The two vectors trade places each round and keep their capacity: no allocation per
    // completion batch.
    flushing_.clear();
    flushing_.swap(dirty_);
    for (HboneConn* c : flushing_) c->dirty = false;
    for (HboneConn* c : flushing_) {
      if (!c->rx.chunks.empty()) feedHbone(c);  // input TLS could not take before
      flush(c);
    }
    for (HboneConn* c : flushing_) maybeReleaseHbone(c);
  }
}

HboneConn* Worker::pooledConn(Pod* pod, const identity::SpiffeId& dst_id, const SocketAddress& dst,
                              std::string* error) {
  // ztunnel's pool key: source identity, destination identity, destination address, source
  // (here the pod, which fixes the source address).
  std::string key = pod->identity->toString() + "|" + dst_id.toString() + "|" + dst.toString() +
                    "|" + std::to_string(pod->cookie);
  auto range = pool_.equal_range(key);
  for (auto it = range.first; it != range.second; ++it) {
    HboneConn* c = it->second;
    if (!c->closing && !c->dead && !c->draining && c->transport->h2().availableStreams() > 0) {
      return c;
    }
  }
  auto ctx = tls_->clientContext(*pod->identity);
  if (!ctx) {
    *error = "client certificate for " + pod->identity->toString() + ": " + ctx.error().message;
    return nullptr;
  }
  auto session = tls::TlsSession::client(*ctx, {dst_id});
  if (!session) {
    *error = session.error().message;
    return nullptr;
  }
  auto conn = std::make_unique<HboneConn>(*this, hbone::H2Role::kClient);
  auto transport = HboneTransport::create(std::move(*session), hbone::H2Role::kClient, *conn);
  if (!transport) {
    *error = transport.error().message;
    return nullptr;
  }
  auto fd = socketInNetns(pod->netns.get(), !dst.ip.isV4(), options_.outbound_mark);
  if (!fd) {
    *error = fd.error().message;
    return nullptr;
  }
  HboneConn* c = conn.get();
  c->transport = std::move(*transport);
  c->fd = std::move(*fd);
  c->peer = dst;
  c->pod = pod->name;
  c->pool_key = key;
  c->rx.fd = c->fd.get();
  c->rx.user_data = &c->recv_tag;
  c->rx.ring = hbone_buffers_.get();
  c->idle_since = c->last_ping = Clock::now();
  hbone_conns_.push_back(std::move(conn));
  c->self = std::prev(hbone_conns_.end());
  pool_.emplace(key, c);
  hbone_pool_size_.fetch_add(1, std::memory_order_relaxed);

  socklen_t len = toSockaddr(dst, &c->peer_addr);
  prepConnect(c->fd.get(), c->peer_addr, len, &c->connect_tag);
  c->connecting = true;
  return c;
}

void Worker::acceptHbone(Listener* l, UniqueFd fd) {
  accepted_hbone_.fetch_add(1, std::memory_order_relaxed);
  Pod* pod = l->pod;
  auto fail = [&](const std::string& why) {
    spdlog::warn("{}: HBONE connection refused: {}", pod->name, why);
    resetOnClose(fd.get());
  };
  auto ctx = tls_->serverContext(*pod->identity);
  if (!ctx) return fail("server certificate: " + ctx.error().message);
  auto session = tls::TlsSession::server(*ctx);
  if (!session) return fail(session.error().message);
  auto conn = std::make_unique<HboneConn>(*this, hbone::H2Role::kServer);
  auto transport = HboneTransport::create(std::move(*session), hbone::H2Role::kServer, *conn);
  if (!transport) return fail(transport.error().message);
  auto peer = peerAddress(fd.get());
  if (!peer) return fail(peer.error().message);
  HboneConn* c = conn.get();
  c->transport = std::move(*transport);
  c->fd = std::move(fd);
  c->peer = *peer;
  c->pod = pod->name;
  c->server_pod = pod;
  c->rx.fd = c->fd.get();
  c->rx.user_data = &c->recv_tag;
  c->rx.ring = hbone_buffers_.get();
  c->idle_since = c->last_ping = Clock::now();
  hbone_conns_.push_back(std::move(conn));
  c->self = std::prev(hbone_conns_.end());
  hboneRecv(c);
}

void Worker::hboneRecv(HboneConn* c) {
  if (c->dead || c->draining) return;
  armRecv(c->rx);
}

void Worker::onHboneConnect(HboneConn* c, int res) {
  c->connecting = false;
  if (!c->dead && res < 0) {
    failed_connect_.fetch_add(1, std::memory_order_relaxed);
    failHbone(c, "connect " + c->peer.toString() + ": " + connectFailure(res));
  } else if (!c->dead) {
    hboneRecv(c);
  }
  markDirty(c);  // the ClientHello, or the release
}

void Worker::onHboneRecv(HboneConn* c, int res, unsigned flags) {
  onReceive(c->rx, res, flags);
  markDirty(c);
  if (c->dead || c->draining) return;
  feedHbone(c);
}

// Hands received ciphertext to TLS (and HTTP/2 behind it), chunk by chunk.
void Worker::feedHbone(HboneConn* c) {
  while (!c->dead && !c->draining && !c->rx.chunks.empty()) {
    bool was_established = c->transport->established();
    auto taken = c->transport->onSocketData(c->rx.front());
    if (!taken) {
      if (!was_established && !c->transport->established()) {
        tls_handshake_failures_.fetch_add(1, std::memory_order_relaxed);
      }
      spdlog::warn("{}: HBONE connection with {} failed: {}", c->pod, c->peer.toString(),
                   taken.error().message);
      // What the peer should learn first (a TLS alert, an HTTP/2 GOAWAY) is queued: send it,
      // then close (RFC 9113 5.4.1).
      return drainAndFail(c, taken.error().message);
    }
    if (c->transport->established() && !c->handshake_counted) {
      c->handshake_counted = true;
      (c->role == hbone::H2Role::kClient ? tls_handshakes_client_ : tls_handshakes_server_)
          .fetch_add(1, std::memory_order_relaxed);
    }
    if (*taken == 0) return;  // TLS input full: fed again after the next flush
    consumeRecv(c->rx, *taken);
  }
  if (c->dead || c->draining || !c->rx.chunks.empty()) return;
  if (c->rx.error) return failHbone(c, std::string("recv: ") + std::strerror(c->rx.error));
  if (c->rx.eof) {
    c->transport->onSocketEof();
    // A peer that closes with streams still open leaves them broken: reset their TCP sides.
    failHbone(c, c->streams.empty() ? "" : "peer closed the HBONE connection");
  }
}

void Worker::drainAndFail(HboneConn* c, const std::string& why) {
  if (c->dead || c->draining) return;
  c->draining = true;
  c->rx.closed = true;
  c->drain_reason = why;
  c->drain_since = Clock::now();
  // The streams cannot continue: their TCP sides are reset now.
  std::vector<Bridge*> open;
  for (auto& [stream, b] : c->streams) open.push_back(b);
  c->streams.clear();
  for (Bridge* b : open) {
    b->conn = nullptr;
    b->stream_closed = true;
    abortBridge(b, why);
  }
  markDirty(c);
}

void Worker::flush(HboneConn* c) {
  if (c->dead || c->send_in_flight || c->connecting || !c->transport) return;
  if (c->sendbuf.empty()) {
    // HTTP/2 callbacks may run in here. A failed transport may still hold its last words (a
    // TLS alert, a GOAWAY) in the ciphertext buffer: those leave before the close.
    auto out = c->draining ? c->transport->finalOutput() : c->transport->socketOutput();
    if (c->transport->failed() && !c->draining) {
      drainAndFail(c, c->transport->error().message);
      out = c->transport->finalOutput();
    }
    if (out.empty()) {
      // Everything said: close with a FIN, not a reset, so the peer reads our last words.
      if (c->draining) failHbone(c, c->drain_reason, /*reset=*/false);
      return;
    }
    c->sendbuf.assign(out.begin(), out.end());
    c->send_off = 0;
    c->transport->consumeSocketOutput(out.size());
  }
  io_uring_sqe* s = sqe();
  io_uring_prep_send(s, c->fd.get(), c->sendbuf.data() + c->send_off,
                     c->sendbuf.size() - c->send_off, MSG_NOSIGNAL);
  io_uring_sqe_set_data(s, &c->send_tag);
  c->send_in_flight = true;
}

void Worker::onHboneSend(HboneConn* c, int res) {
  c->send_in_flight = false;
  markDirty(c);
  if (c->dead) return;
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN) return;  // flushed again after the batch
    return failHbone(c, std::string("send: ") + std::strerror(-res));
  }
  c->send_off += static_cast<size_t>(res);
  if (c->send_off == c->sendbuf.size()) c->sendbuf.clear();
}

// Ends the connection: every stream on it is reset (its TCP side gets an RST), pending I/O is
// cancelled, and the connection is freed by flushDirty once nothing is in flight.
void Worker::failHbone(HboneConn* c, const std::string& why, bool reset) {
  if (c->dead) return;
  c->dead = true;
  c->rx.closed = true;
  c->error = why;
  markDirty(c);
  auto range = pool_.equal_range(c->pool_key);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second == c) {
      pool_.erase(it);
      break;
    }
  }
  std::vector<Bridge*> open;
  for (auto& [stream, b] : c->streams) open.push_back(b);
  c->streams.clear();
  for (Bridge* b : open) {
    b->conn = nullptr;
    b->stream_closed = true;
    abortBridge(b, why.empty() ? "HBONE connection closed" : why);
  }
  if (c->fd.valid()) {
    if (reset && !why.empty()) resetOnClose(c->fd.get());
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel_fd(s, c->fd.get(), IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data(s, &ignore_tag_);
  }
}

void Worker::maybeReleaseHbone(HboneConn* c) {
  if (!c->dead || c->rx.armed || c->send_in_flight || c->connecting || c->dirty) return;
  releaseRecv(c->rx);
  if (c->role == hbone::H2Role::kClient) {
    hbone_pool_size_.fetch_sub(1, std::memory_order_relaxed);
  }
  hbone_conns_.erase(c->self);  // closes the socket
}

void Worker::closeIdleHbone() {
  auto now = Clock::now();
  std::vector<HboneConn*> idle;
  std::vector<HboneConn*> stalled;
  for (auto& c : hbone_conns_) {
    if (!c->dead && !c->transport->established() &&
        now - c->idle_since >= options_.handshake_timeout) {
      stalled.push_back(c.get());
    }
  }
  for (auto& c : hbone_conns_) {
    // A peer that does not read our last words must not keep the connection either.
    if (!c->dead && c->draining && now - c->drain_since >= std::chrono::seconds(5)) {
      failHbone(c.get(), c->drain_reason);
    }
  }
  for (HboneConn* c : stalled) {
    tls_handshake_failures_.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("{}: HBONE connection with {}: TLS handshake timed out", c->pod,
                 c->peer.toString());
    failHbone(c, "TLS handshake timed out");
  }
  for (auto& c : hbone_conns_) {
    if (c->dead || c->role != hbone::H2Role::kClient || !c->streams.empty()) continue;
    if (now - c->idle_since >= options_.pool_idle_timeout) {
      idle.push_back(c.get());
    } else if (c->transport->established() && now - c->last_ping >= options_.keepalive_interval) {
      c->last_ping = now;
      (void)c->transport->h2().ping();
      markDirty(c.get());
    }
  }
  for (HboneConn* c : idle) {
    (void)c->transport->h2().goaway();
    failHbone(c, "");
  }
}

// ---- outbound: application -> 15001 -> HBONE stream ----

void Worker::startOutboundHbone(Pod* pod, UniqueFd app, const SocketAddress& app_addr,
                                const SocketAddress& dst, const model::Workload& dst_workload,
                                std::unique_ptr<ServiceTarget> service) {
  auto dst_id = identity::SpiffeId::create(dst_workload.trust_domain, dst_workload.namespace_name,
                                           dst_workload.service_account);
  Bridge* b = newBridge(nullptr, std::move(app), Direction::kOutbound, pod->name);
  b->record.src = app_addr;
  b->record.dst = dst;
  b->record.src_identity = pod->identity->toString();
  if (service) {
    b->record.dst_service = service->service->key();
    b->record.service_addr = service->vip;
    b->record.attempts = static_cast<unsigned>(service->tried.size());
    b->service = std::move(service);  // failures below are retried by abortBridge
  }
  if (dst_id) b->record.dst_identity = dst_id->toString();
  // Metrics count a service connection once, at its first attempt.
  if (!b->service || b->service->tried.size() == 1) opened(b->record);
  if (!dst_id) {
    failed_connect_.fetch_add(1, std::memory_order_relaxed);
    return abortBridge(b, "destination identity: " + dst_id.error().message);
  }
  std::string error;
  HboneConn* c = pooledConn(pod, *dst_id, SocketAddress{dst.ip, options_.hbone_port}, &error);
  if (!c) {
    failed_connect_.fetch_add(1, std::memory_order_relaxed);
    return abortBridge(b, error);
  }
  hbone::ConnectHeaders headers;
  // The client as the mesh knows it: the pod's address and the application's port.
  headers.forwarded_for =
      SocketAddress{pod->ips.empty() ? app_addr.ip : pod->ips[0], app_addr.port};
  // W3C trace context: a new trace per connection, sampled.
  char trace[56];
  std::snprintf(trace, sizeof(trace), "00-%016llx%016llx-%016llx-01",
                static_cast<unsigned long long>(rng_()), static_cast<unsigned long long>(rng_()),
                static_cast<unsigned long long>(rng_()));
  headers.traceparent = trace;
  // Who the client is, as ztunnel's baggage says it (W3C baggage, OpenTelemetry k8s names).
  auto snap = snapshot();
  const model::Workload* src =
      snap && !pod->ips.empty() ? snap->workloadByIp(pod->ips[0]) : nullptr;
  if (src) {
    std::string kind = src->workload_type.empty() ? "pod" : src->workload_type;
    std::string baggage = "k8s.namespace.name=" + src->namespace_name + ",k8s." + kind +
                          ".name=" + (src->workload_name.empty() ? src->name : src->workload_name);
    if (!src->cluster_id.empty()) baggage += ",k8s.cluster.name=" + src->cluster_id;
    if (!src->canonical_name.empty()) baggage += ",service.name=" + src->canonical_name;
    if (!src->canonical_revision.empty()) baggage += ",service.version=" + src->canonical_revision;
    headers.baggage = std::move(baggage);
  }
  auto stream = c->transport->h2().openConnect(dst.toString(), headers);
  if (!stream) {
    failed_connect_.fetch_add(1, std::memory_order_relaxed);
    return abortBridge(b, "open HBONE stream: " + stream.error().message);
  }
  hbone_streams_opened_.fetch_add(1, std::memory_order_relaxed);
  b->conn = c;
  b->stream = *stream;
  c->streams[*stream] = b;
  markDirty(c);
}

void Worker::onResponse(HboneConn* c, hbone::StreamId stream, int status) {
  Bridge* b = bridgeFor(c, stream);
  if (!b) return;
  if (status != 200) {
    hbone_streams_rejected_.fetch_add(1, std::memory_order_relaxed);
    return abortBridge(b, "HBONE CONNECT answered " + std::to_string(status));
  }
  b->streaming = true;
  if (b->service) serviceEstablished(*b->service);
  bridgeRecv(b);
}

// ---- inbound: 15008 -> HBONE stream -> the application ----

void Worker::onRequestRejected(HboneConn* c, int status, std::string_view reason) {
  hbone_streams_rejected_.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("{}: HBONE request from {} refused with {}: {}", c->pod, c->peer.toString(), status,
               reason);
  markDirty(c);
}

void Worker::onRequest(HboneConn* c, hbone::StreamId stream, const hbone::ConnectRequest& req) {
  auto reject = [&](int status, const std::string& why) {
    hbone_streams_rejected_.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("{}: HBONE CONNECT {} from {} refused with {}: {}", c->pod, req.authority,
                 c->peer.toString(), status, why);
    (void)c->transport->h2().respond(stream, status);
  };
  spdlog::debug(
      "{}: HBONE CONNECT {} from {} ({}) forwarded=[{}] baggage=[{}] traceparent=[{}]", c->pod,
      req.authority, c->peer.toString(),
      c->transport->tls().peerIdentity() ? c->transport->tls().peerIdentity()->toString() : "-",
      req.forwarded, req.baggage, req.traceparent);
  Pod* pod = c->server_pod;
  if (!pod) return reject(503, "pod is being removed");
  const SocketAddress& target = req.target;
  if (std::find(pod->ips.begin(), pod->ips.end(), target.ip) == pod->ips.end()) {
    return reject(400, "target " + target.toString() + " is not an address of this pod");
  }
  if (target.port == options_.hbone_port || target.port == options_.inbound_port ||
      target.port == options_.outbound_port) {
    return reject(400, "target port " + std::to_string(target.port) + " is the tunnel's own");
  }
  // The client's port comes from `forwarded` only when the header names the connection's own
  // peer address: anything else is a claim the mesh cannot check.
  auto forwarded = forwardedFor(req.forwarded);
  ConnectionRecord record;
  record.direction = Direction::kInbound;
  record.pod = pod->name;
  record.transport = Transport::kHbone;
  record.src = forwarded && forwarded->ip == c->peer.ip ? *forwarded : SocketAddress{c->peer.ip, 0};
  record.dst = target;
  const auto& peer_id = c->transport->tls().peerIdentity();
  record.src_identity = peer_id ? peer_id->toString() : "";
  record.dst_identity = pod->identity ? pod->identity->toString() : "";
  opened(record);
  // Authorization, before anything is connected to the application: 401 when denied.
  if (!authorize(record, record.src_identity)) {
    reject(401, record.reason);
    record.error = "denied: " + record.reason;
    if (access_log_) access_log_(record);
    return;
  }
  // Delivered from the client's address, like 15006 (see worker.cc): the TCP peer of the
  // HBONE connection is the client pod.
  bool transparent = c->peer.ip.isV4() && target.ip.isV4();
  const IpAddress* bind_ip = transparent ? &c->peer.ip : &target.ip;
  auto fd = socketInNetns(pod->netns.get(), !target.ip.isV4(), options_.delivery_mark, bind_ip,
                          transparent);
  if (!fd) return reject(503, fd.error().message);
  Bridge* b = newBridge(c, std::move(*fd), Direction::kInbound, pod->name);
  b->stream = stream;
  c->streams[stream] = b;
  b->record = std::move(record);
  socklen_t len = toSockaddr(target, &b->dst_addr);
  prepConnect(b->tcp.get(), b->dst_addr, len, &b->connect_tag);
  b->connecting = true;
}

void Worker::onBridgeConnect(Bridge* b, int res) {
  b->connecting = false;
  if (b->aborting) return maybeFinishBridge(b);
  HboneConn* c = b->conn;
  if (res < 0) {
    failed_connect_.fetch_add(1, std::memory_order_relaxed);
    hbone_streams_rejected_.fetch_add(1, std::memory_order_relaxed);
    if (c) {
      (void)c->transport->h2().respond(b->stream, 503);
      c->streams.erase(b->stream);
      b->conn = nullptr;
      markDirty(c);
    }
    return abortBridge(b, "connect " + b->record.dst.toString() + ": " + connectFailure(res));
  }
  if (!c) return abortBridge(b, "HBONE stream gone before the application answered");
  if (auto st = c->transport->h2().respond(b->stream, 200); !st) {
    return abortBridge(b, "respond 200: " + st.error().message);
  }
  hbone_streams_accepted_.fetch_add(1, std::memory_order_relaxed);
  b->streaming = true;
  markDirty(c);
  bridgeRecv(b);
}

// ---- bridges: one stream <-> one TCP socket ----

Bridge* Worker::newBridge(HboneConn* c, UniqueFd tcp, Direction direction, const std::string& pod) {
  auto bridge = std::make_unique<Bridge>();
  Bridge* b = bridge.get();
  b->conn = c;
  b->tcp = std::move(tcp);
  b->rx.fd = b->tcp.get();
  b->rx.user_data = &b->recv_tag;
  b->rx.ring = buffers_.get();
  b->record.direction = direction;
  b->record.pod = pod;
  b->record.transport = Transport::kHbone;
  b->start = Clock::now();
  bridges_.push_back(std::move(bridge));
  b->self = std::prev(bridges_.end());
  active_.fetch_add(1, std::memory_order_relaxed);
  return b;
}

Bridge* Worker::bridgeFor(HboneConn* c, hbone::StreamId stream) {
  auto it = c->streams.find(stream);
  return it == c->streams.end() ? nullptr : it->second;
}

void Worker::bridgeRecv(Bridge* b) {
  if (b->tcp_eof || b->aborting || !b->streaming || !b->conn) return;
  armRecv(b->rx);
}

void Worker::bridgePushToStream(Bridge* b) {
  HboneConn* c = b->conn;
  if (!c || b->aborting) return;
  while (!b->rx.chunks.empty()) {
    auto n = c->transport->h2().send(b->stream, b->rx.front());
    if (!n) return abortBridge(b, "HBONE stream: " + n.error().message);
    if (*n == 0) return;  // the stream's queue is full: onWritable resumes
    uint64_t& counter = b->record.direction == Direction::kOutbound ? b->record.bytes_to_dst
                                                                    : b->record.bytes_from_dst;
    counter += *n;
    (b->record.direction == Direction::kOutbound ? bytes_to_dst_ : bytes_from_dst_)
        .fetch_add(*n, std::memory_order_relaxed);
    consumeRecv(b->rx, *n);
    markDirty(c);
  }
  if (b->rx.error) {
    failed_io_.fetch_add(1, std::memory_order_relaxed);
    return abortBridge(b, std::string("recv: ") + std::strerror(b->rx.error));
  }
  if (b->rx.eof && !b->tcp_eof) {
    b->tcp_eof = true;
    if (auto st = c->transport->h2().endStream(b->stream); !st) {
      return abortBridge(b, "end HBONE stream: " + st.error().message);
    }
    markDirty(c);
    maybeFinishBridge(b);
  }
}

void Worker::onBridgeRecv(Bridge* b, int res, unsigned flags) {
  onReceive(b->rx, res, flags);
  if (b->aborting || !b->conn) return maybeFinishBridge(b);
  bridgePushToStream(b);
}

void Worker::onData(HboneConn* c, hbone::StreamId stream, std::span<const uint8_t> data) {
  Bridge* b = bridgeFor(c, stream);
  if (!b || b->aborting) {
    (void)c->transport->h2().consumed(stream, data.size());  // keep the connection window
    return;
  }
  b->out.insert(b->out.end(), data.begin(), data.end());
  bridgeSend(b);
}

void Worker::bridgeSend(Bridge* b) {
  if (b->send_in_flight || b->shutdown_in_flight || b->aborting) return;
  if (b->inflight.empty()) {
    if (b->out.empty()) {
      if (b->peer_ended && !b->tcp_shut) {
        io_uring_sqe* s = sqe();
        io_uring_prep_shutdown(s, b->tcp.get(), SHUT_WR);
        io_uring_sqe_set_data(s, &b->shutdown_tag);
        b->shutdown_in_flight = true;
      }
      return;
    }
    b->inflight.swap(b->out);
    b->inflight_off = 0;
  }
  io_uring_sqe* s = sqe();
  io_uring_prep_send(s, b->tcp.get(), b->inflight.data() + b->inflight_off,
                     b->inflight.size() - b->inflight_off, MSG_NOSIGNAL);
  io_uring_sqe_set_data(s, &b->send_tag);
  b->send_in_flight = true;
}

void Worker::onBridgeSend(Bridge* b, int res) {
  b->send_in_flight = false;
  if (b->aborting) return maybeFinishBridge(b);
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN) return bridgeSend(b);
    failed_io_.fetch_add(1, std::memory_order_relaxed);
    return abortBridge(b, std::string("send: ") + std::strerror(-res));
  }
  size_t n = static_cast<size_t>(res);
  b->inflight_off += n;
  uint64_t& counter = b->record.direction == Direction::kOutbound ? b->record.bytes_from_dst
                                                                  : b->record.bytes_to_dst;
  counter += n;
  (b->record.direction == Direction::kOutbound ? bytes_from_dst_ : bytes_to_dst_)
      .fetch_add(n, std::memory_order_relaxed);
  // Written to the TCP peer: only now may the HTTP/2 window reopen (flow control end to end).
  if (HboneConn* c = b->conn) {
    (void)c->transport->h2().consumed(b->stream, n);
    markDirty(c);
  }
  if (b->inflight_off == b->inflight.size()) {
    b->inflight.clear();
    b->inflight_off = 0;
  }
  bridgeSend(b);
  maybeFinishBridge(b);
}

void Worker::onEndStream(HboneConn* c, hbone::StreamId stream) {
  Bridge* b = bridgeFor(c, stream);
  if (!b) return;
  b->peer_ended = true;
  bridgeSend(b);
}

void Worker::onBridgeShutdown(Bridge* b, int /*res*/) {
  b->shutdown_in_flight = false;
  b->tcp_shut = true;
  maybeFinishBridge(b);
}

void Worker::onWritable(HboneConn* c, hbone::StreamId stream) {
  if (Bridge* b = bridgeFor(c, stream)) bridgePushToStream(b);
}

void Worker::onStreamClosed(HboneConn* c, hbone::StreamId stream, uint32_t error_code) {
  Bridge* b = bridgeFor(c, stream);
  c->streams.erase(stream);
  if (c->streams.empty()) c->idle_since = Clock::now();
  markDirty(c);
  if (!b) return;
  b->conn = nullptr;
  b->stream_closed = true;
  if (error_code != hbone::kH2NoError) {
    return abortBridge(
        b, std::string("HBONE stream reset: ") + std::string(hbone::h2ErrorName(error_code)));
  }
  if (!b->streaming) return abortBridge(b, "HBONE stream closed before it was established");
  maybeFinishBridge(b);
}

void Worker::dropBridge(Bridge* b) {
  active_.fetch_sub(1, std::memory_order_relaxed);
  bridges_.erase(b->self);
}

// Ends a bridge with a reset on its TCP side and on its stream. An outbound connection to a
// service that failed before its stream was established is retried on another endpoint
// instead (nothing was read from the application yet, so nothing is lost).
void Worker::abortBridge(Bridge* b, const std::string& why) {
  if (b->aborting) return;
  if (b->service && !b->streaming && b->record.direction == Direction::kOutbound && !b->finished &&
      !b->rx.armed && !b->send_in_flight && !b->shutdown_in_flight) {
    if (HboneConn* c = b->conn) {
      if (!b->stream_closed) (void)c->transport->h2().resetStream(b->stream, hbone::kH2Cancel);
      c->streams.erase(b->stream);
      if (c->streams.empty()) c->idle_since = Clock::now();
      b->conn = nullptr;
      b->stream_closed = true;
      markDirty(c);
    }
    if (retryService(b->service, b->tcp, b->record.src, why)) return dropBridge(b);
  }
  b->aborting = true;
  b->rx.closed = true;
  if (b->record.error.empty()) b->record.error = why;
  if (b->tcp.valid()) {
    resetOnClose(b->tcp.get());
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel_fd(s, b->tcp.get(), IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data(s, &ignore_tag_);
  }
  if (HboneConn* c = b->conn) {
    if (!b->stream_closed) (void)c->transport->h2().resetStream(b->stream, hbone::kH2Cancel);
    c->streams.erase(b->stream);
    if (c->streams.empty()) c->idle_since = Clock::now();
    b->conn = nullptr;
    markDirty(c);
  }
  maybeFinishBridge(b);
}

void Worker::maybeFinishBridge(Bridge* b) {
  if (b->finished) return;
  if (b->connecting || b->rx.armed || b->send_in_flight || b->shutdown_in_flight) return;
  if (!b->aborting) {
    bool done =
        b->stream_closed && b->tcp_eof && b->tcp_shut && b->out.empty() && b->inflight.empty();
    if (!done) return;
    completed_.fetch_add(1, std::memory_order_relaxed);
  }
  finishBridge(b);
}

void Worker::finishBridge(Bridge* b) {
  b->finished = true;
  releaseRecv(b->rx);
  if (b->service) serviceEnded(*b->service);
  if (HboneConn* c = b->conn) {
    if (!b->stream_closed) (void)c->transport->h2().resetStream(b->stream, hbone::kH2Cancel);
    c->streams.erase(b->stream);
    if (c->streams.empty()) c->idle_since = Clock::now();
    markDirty(c);
  }
  b->record.duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - b->start);
  if (access_log_) access_log_(b->record);
  active_.fetch_sub(1, std::memory_order_relaxed);
  bridges_.erase(b->self);  // closes the TCP socket (RST when aborting)
}

}  // namespace nodemesh::ztunnel::internal
