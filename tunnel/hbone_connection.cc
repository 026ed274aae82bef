#include "tunnel/hbone_connection.h"

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "tunnel/hbone_pool.h"
#include "tunnel/stream_bridge.h"

namespace nodemesh::tunnel {

HboneConnection::HboneConnection(HbonePool& pool, hbone::H2Role role)
    : pool_(pool),
      ctx_(pool.ctx_),
      role_(role),
      state_(role == hbone::H2Role::kClient ? State::kConnecting : State::kOpen) {}

const std::optional<identity::SpiffeId>& HboneConnection::peerIdentity() const {
  return transport_->tls().peerIdentity();
}

void HboneConnection::onCompletion(uint8_t op, int res, unsigned flags) {
  switch (op) {
    case kConnect:
      return onConnect(res);
    case kRecv:
      return onRecv(res, flags);
    case kSend:
      return onSend(res);
    default:
      return;
  }
}

void HboneConnection::markDirty() {
  pool_.markDirty(this);
}

bool HboneConnection::usable() const {
  return (state_ == State::kConnecting || state_ == State::kOpen) &&
         transport_->h2().availableStreams() > 0;
}

bool HboneConnection::releasable() const {
  return state_ == State::kDead && !rx_.armed && !send_in_flight_ && !connect_in_flight_ && !dirty_;
}

StreamBridge* HboneConnection::bridgeFor(hbone::StreamId stream) const {
  auto it = streams_.find(stream);
  return it == streams_.end() ? nullptr : it->second;
}

void HboneConnection::addStream(hbone::StreamId stream, StreamBridge* bridge) {
  streams_[stream] = bridge;
}

void HboneConnection::removeStream(hbone::StreamId stream, bool closed) {
  if (!closed) (void)transport_->h2().resetStream(stream, hbone::kH2Cancel);
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
  spdlog::info("{}: HBONE request from {} refused with {}: {}", pod_, peer_.toString(), status,
               reason);
  markDirty();
}

void HboneConnection::onData(hbone::StreamId stream, std::span<const uint8_t> data) {
  StreamBridge* b = bridgeFor(stream);
  if (!b || b->state() == StreamBridge::State::kAborting) {
    (void)transport_->h2().consumed(stream, data.size());  // keep the connection window
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
  if (state_ == State::kOpen) state_ = State::kGoingAway;  // the open streams finish
}

// ---- I/O ----

void HboneConnection::receive() {
  if (state_ == State::kDead || state_ == State::kDraining) return;
  ctx_.receivers.arm(rx_);
}

void HboneConnection::onConnect(int res) {
  connect_in_flight_ = false;
  if (state_ == State::kConnecting) state_ = State::kOpen;
  if (state_ != State::kDead && res < 0) {
    bump(ctx_.counters.failed_connect);
    fail("connect " + peer_.toString() + ": " + connectFailure(ctx_, res));
  } else if (state_ != State::kDead) {
    receive();
  }
  markDirty();  // the ClientHello, or the release
}

void HboneConnection::onRecv(int res, unsigned flags) {
  ctx_.receivers.onCompletion(rx_, res, flags);
  markDirty();
  if (state_ == State::kDead || state_ == State::kDraining) return;
  feed();
}

void HboneConnection::feed() {
  auto failing = [this] { return state_ == State::kDead || state_ == State::kDraining; };
  while (!failing() && !rx_.chunks.empty()) {
    const bool was_established = transport_->established();
    auto taken = transport_->onSocketData(rx_.front());
    if (!taken) {
      if (!was_established && !transport_->established()) {
        bump(ctx_.counters.tls_handshake_failures);
      }
      spdlog::warn("{}: HBONE connection with {} failed: {}", pod_, peer_.toString(),
                   taken.error().message);
      // What the peer should learn first (a TLS alert, an HTTP/2 GOAWAY) is queued: send it,
      // then close (RFC 9113 5.4.1).
      return drainAndFail(taken.error().message);
    }
    if (transport_->established() && !handshake_counted_) {
      handshake_counted_ = true;
      bump(role_ == hbone::H2Role::kClient ? ctx_.counters.tls_handshakes_client
                                           : ctx_.counters.tls_handshakes_server);
    }
    if (*taken == 0) return;  // TLS input full: fed again after the next flush
    ctx_.receivers.consume(rx_, *taken);
  }
  if (failing() || !rx_.chunks.empty()) return;
  if (rx_.error) return fail(std::string("recv: ") + std::strerror(rx_.error));
  if (rx_.eof) {
    transport_->onSocketEof();
    // A peer that closes with streams still open leaves them broken: reset their TCP sides.
    fail(streams_.empty() ? "" : "peer closed the HBONE connection");
  }
}

void HboneConnection::flush() {
  if (state_ == State::kDead || send_in_flight_ || connect_in_flight_ || !transport_) return;
  if (sendbuf_.empty()) {
    // HTTP/2 callbacks may run in here. A failed transport may still hold its last words (a
    // TLS alert, a GOAWAY) in the ciphertext buffer: those leave before the close.
    auto out = state_ == State::kDraining ? transport_->finalOutput() : transport_->socketOutput();
    if (transport_->failed() && state_ != State::kDraining) {
      drainAndFail(transport_->error().message);
      out = transport_->finalOutput();
    }
    if (out.empty()) {
      // Everything said: close with a FIN, not a reset, so the peer reads our last words.
      if (state_ == State::kDraining) fail(drain_reason_, /*reset=*/false);
      return;
    }
    sendbuf_.assign(out.begin(), out.end());
    send_off_ = 0;
    transport_->consumeSocketOutput(out.size());
  }
  ctx_.ring.send(fd_.get(), std::span<const uint8_t>(sendbuf_).subspan(send_off_), &send_tag_);
  send_in_flight_ = true;
}

void HboneConnection::onSend(int res) {
  send_in_flight_ = false;
  markDirty();
  if (state_ == State::kDead) return;
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN) return;  // flushed again after the batch
    return fail(std::string("send: ") + std::strerror(-res));
  }
  send_off_ += static_cast<size_t>(res);
  if (send_off_ == sendbuf_.size()) sendbuf_.clear();
}

// ---- failure ----

void HboneConnection::loseStreams(const std::string& why) {
  std::vector<StreamBridge*> open;
  for (auto& [stream, b] : streams_) open.push_back(b);
  streams_.clear();
  for (StreamBridge* b : open) b->onConnectionLost(why);
}

void HboneConnection::drainAndFail(const std::string& why) {
  if (state_ == State::kDead || state_ == State::kDraining) return;
  state_ = State::kDraining;
  rx_.closed = true;
  drain_reason_ = why;
  drain_since_ = Clock::now();
  // The streams cannot continue: their TCP sides are reset now.
  loseStreams(why);
  markDirty();
}

void HboneConnection::fail(const std::string& why, bool reset) {
  if (state_ == State::kDead) return;
  state_ = State::kDead;
  rx_.closed = true;
  markDirty();
  pool_.removeFromPool(this);
  loseStreams(why.empty() ? "HBONE connection closed" : why);
  if (fd_.valid()) {
    if (reset && !why.empty()) resetOnClose(fd_.get());
    ctx_.ring.cancelFd(fd_.get());
  }
}

}  // namespace nodemesh::tunnel
