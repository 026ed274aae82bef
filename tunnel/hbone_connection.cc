#include "tunnel/hbone_connection.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "tunnel/hbone_pool.h"
#include "tunnel/stream_bridge.h"

namespace nodemesh::tunnel {

HboneConnection::HboneConnection(HbonePool& pool, hbone::H2Role role)
    : pool_(pool), ctx_(pool.ctx_), socket_(*this, ctx_.ring, ctx_.receivers, role) {}

const std::optional<identity::SpiffeId>& HboneConnection::peerIdentity() const {
  return socket_.transport().tls().peerIdentity();
}

void HboneConnection::markDirty() {
  pool_.markDirty(this);
}

StreamBridge* HboneConnection::bridgeFor(hbone::StreamId stream) const {
  auto it = streams_.find(stream);
  return it == streams_.end() ? nullptr : it->second;
}

void HboneConnection::addStream(hbone::StreamId stream, StreamBridge* bridge) {
  streams_[stream] = bridge;
}

void HboneConnection::removeStream(hbone::StreamId stream, bool closed) {
  if (!closed) (void)h2().resetStream(stream, hbone::kH2Cancel);
  streams_.erase(stream);
  if (streams_.empty()) idle_since_ = Clock::now();
  markDirty();
}

// ---- HTTP/2 events, straight to the stream's bridge ----

void HboneConnection::onRequest(hbone::StreamId stream, const hbone::ConnectRequest& request) {
  pool_.inbound_.onConnectRequest(*this, stream, request);
}

void HboneConnection::onResponse(hbone::StreamId stream, int status) {
  if (StreamBridge* b = bridgeFor(stream)) b->onConnectResponse(status);
}

void HboneConnection::onRequestRejected(hbone::StreamId /*stream*/, int status,
                                        std::string_view reason) {
  bump(ctx_.counters.hbone_streams_rejected);
  logRefusal("HBONE request", status, reason);
  markDirty();
}

uint64_t HboneConnection::bufferedBytes() const {
  uint64_t sum = 0;
  for (const auto& [stream, bridge] : streams_) sum += bridge->held();
  return sum;
}

void HboneConnection::logRefusal(const std::string& what, int status, std::string_view why) {
  RateLimitedLog& log = pool_.refusalLog();
  uint64_t held_back = 0;
  if (!log.admit(RateLimitedLog::Clock::now(), &held_back)) return;
  spdlog::info(
      "{}: {} from {} refused with {}: {}{}", podName(), what, peer().toString(), status, why,
      held_back == 0
          ? std::string()
          : fmt::format(" ({} more refused since the last such line, not logged: at most {} "
                        "lines per {} s per worker; all are counted in "
                        "nodemesh_hbone_streams_total{{event=\"rejected\"}})",
                        held_back, log.burst(), log.interval().count()));
}

void HboneConnection::onData(hbone::StreamId stream, std::span<const uint8_t> data) {
  StreamBridge* b = bridgeFor(stream);
  if (!b || b->state() == StreamBridge::State::kAborting) {
    (void)h2().consumed(stream, data.size());  // keep the connection window
    return;
  }
  b->onStreamData(data);
}

void HboneConnection::onEndStream(hbone::StreamId stream) {
  if (StreamBridge* b = bridgeFor(stream)) b->onStreamEnd();
}

void HboneConnection::onWritable(hbone::StreamId stream) {
  if (StreamBridge* b = bridgeFor(stream)) b->onStreamWritable();
}

void HboneConnection::onStreamClosed(hbone::StreamId stream, uint32_t error_code) {
  StreamBridge* b = bridgeFor(stream);
  streams_.erase(stream);
  if (streams_.empty()) idle_since_ = Clock::now();
  markDirty();
  if (b) b->onStreamClosed(error_code);
}

void HboneConnection::onGoaway(hbone::StreamId /*last_stream*/, uint32_t /*error_code*/) {
  socket_.goingAway();  // the open streams finish
}

void HboneConnection::onFlood(hbone::H2Flood kind, std::string_view /*detail*/) {
  // The session fails with the detail, and HboneSocket logs it once for the connection.
  bump(kind == hbone::H2Flood::kRapidReset ? ctx_.counters.hbone_floods_reset
                                           : ctx_.counters.hbone_floods_control);
  markDirty();
}

// ---- socket events ----

std::string HboneConnection::onConnectFailed(int res) {
  bump(ctx_.counters.failed_connect);
  return connectFailure(ctx_, res);
}

void HboneConnection::onEstablished() {
  pool_.handshakeDone(this);
  bump(socket_.role() == hbone::H2Role::kClient ? ctx_.counters.tls_handshakes_client
                                                : ctx_.counters.tls_handshakes_server);
}

void HboneConnection::onHandshakeFailure() {
  bump(ctx_.counters.tls_handshake_failures);
}

void HboneConnection::onClosing(const std::string& /*why*/) {
  pool_.removeFromPool(this);
}

void HboneConnection::loseStreams(const std::string& why) {
  std::vector<StreamBridge*> open;
  for (auto& [stream, b] : streams_) open.push_back(b);
  streams_.clear();
  for (StreamBridge* b : open) b->onConnectionLost(why);
}

}  // namespace nodemesh::tunnel
