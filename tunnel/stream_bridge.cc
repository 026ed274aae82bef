#include "tunnel/stream_bridge.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/sockets.h"
#include "tunnel/inpod_sockets.h"

namespace nodemesh::tunnel {

StreamBridge::StreamBridge(StreamBridges& owner, StreamCarrier* conn, UniqueFd tcp,
                           Direction direction, const std::string& pod)
    : owner_(owner), conn_(conn), tcp_(std::move(tcp)), out_(owner.blocks_), start_(Clock::now()) {
  rx_.fd = tcp_.get();
  rx_.tag = &recv_tag_;
  rx_.buffers = &owner.ctx_.buffers;
  record.direction = direction;
  record.pod = pod;
  record.transport = Transport::kHbone;
}

RelayContext& StreamBridge::ctx() {
  return owner_.ctx_;
}

void StreamBridge::onCompletion(uint8_t op, int res, unsigned flags) {
  switch (op) {
    case kConnect:
      return onApplicationConnect(res);
    case kRecv:
      return onRecv(res, flags);
    case kSend:
      return onSend(res);
    case kShutdown:
      return onShutdown();
    default:
      return;
  }
}

void StreamBridge::attach(StreamCarrier* conn, hbone::StreamId stream) {
  conn_ = conn;
  stream_ = stream;
  conn->addStream(stream, this);
  conn->markDirty();
}

void StreamBridge::connectApplication() {
  connect_deferred_ = true;
  owner_.deferred_connects_.push_back(this);
}

void StreamBridge::detach(bool reset) {
  if (!conn_) return;
  giveBackHeld();
  StreamCarrier* c = conn_;
  conn_ = nullptr;
  c->removeStream(stream_, /*closed=*/!reset);
}

void StreamBridge::giveBackHeld() {
  if (!conn_) return;
  const size_t n = held();
  if (n == 0) return;
  (void)conn_->consumed(stream_, n);
  conn_->markDirty();
}

void StreamBridge::account() {
  const uint64_t now = held();
  if (now > budgeted_) {
    ctx().budget.add(now - budgeted_);
    bump(ctx().counters.buffered_bytes, now - budgeted_);
  } else if (now < budgeted_) {
    ctx().budget.remove(budgeted_ - now);
    subtract(ctx().counters.buffered_bytes, budgeted_ - now);
  }
  budgeted_ = now;
}

// ---- outbound: the CONNECT's answer ----

void StreamBridge::onConnectResponse(int status) {
  if (status != 200) {
    bump(ctx().counters.hbone_streams_rejected);
    return abort("HBONE CONNECT answered " + std::to_string(status));
  }
  state_ = State::kStreaming;
  if (service) ctx().services.established(*service);
  receiveFromTcp();
}

// ---- inbound: the connection to the application ----

void StreamBridge::onApplicationConnect(int res) {
  connect_in_flight_ = false;
  if (state_ == State::kAborting) return advance();
  if (res < 0) {
    bump(ctx().counters.failed_connect);
    bump(ctx().counters.hbone_streams_rejected);
    if (conn_) {
      // The stream is answered (503), not reset.
      (void)conn_->respond(stream_, 503);
      detach(/*reset=*/false);
    }
    return abort("connect " + record.dst.toString() + ": " + connectFailure(ctx(), res));
  }
  if (!conn_) return abort("HBONE stream gone before the application answered");
  if (auto st = conn_->respond(stream_, 200); !st) {
    return abort("respond 200: " + st.error().message);
  }
  bump(ctx().counters.hbone_streams_accepted);
  state_ = State::kStreaming;
  conn_->markDirty();
  receiveFromTcp();
}

// ---- TCP -> stream ----

void StreamBridge::receiveFromTcp() {
  if (to_stream_ == ToStream::kEnded || state_ != State::kStreaming || !conn_) return;
  ctx().receivers.arm(rx_);
}

void StreamBridge::onRecv(int res, unsigned flags) {
  ctx().receivers.onCompletion(rx_, res, flags);
  if (state_ == State::kAborting || !conn_) return advance();
  pushToStream();
}

void StreamBridge::onStreamWritable() {
  pushToStream();
}

void StreamBridge::pushToStream() {
  if (!conn_ || state_ == State::kAborting) return;
  const bool outbound = record.direction == Direction::kOutbound;
  while (!rx_.chunks.empty()) {
    auto n = conn_->send(stream_, rx_.front());
    if (!n) return abort("HBONE stream: " + n.error().message);
    if (*n == 0) return;  // the stream's queue is full: onStreamWritable resumes
    (outbound ? record.bytes_to_dst : record.bytes_from_dst) += *n;
    bump(outbound ? ctx().counters.bytes_to_dst : ctx().counters.bytes_from_dst, *n);
    ctx().receivers.consume(rx_, *n);
    conn_->markDirty();
  }
  if (rx_.error) {
    bump(ctx().counters.failed_io);
    return abort(std::string("recv: ") + std::strerror(rx_.error));
  }
  if (rx_.eof && to_stream_ == ToStream::kOpen) {
    to_stream_ = ToStream::kEnded;
    if (auto st = conn_->endStream(stream_); !st) {
      return abort("end HBONE stream: " + st.error().message);
    }
    conn_->markDirty();
    advance();
  }
}

// ---- stream -> TCP ----

void StreamBridge::onStreamData(std::span<const uint8_t> data) {
  out_.append(data);
  account();
  sendToTcp();
}

void StreamBridge::onStreamEnd() {
  if (to_tcp_ == ToTcp::kOpen) to_tcp_ = ToTcp::kPeerEnded;
  sendToTcp();
}

void StreamBridge::sendToTcp() {
  if (send_in_flight_ || shutdown_in_flight_ || state_ == State::kAborting) return;
  if (out_.empty()) {
    if (to_tcp_ == ToTcp::kPeerEnded) {
      ctx().ring.shutdownWrite(tcp_.get(), &shutdown_tag_);
      shutdown_in_flight_ = true;
    }
    return;
  }
  // Everything queued, up to kMaxSendBlocks blocks, in one send: a fast application takes
  // megabytes per call, as it did from one contiguous buffer.
  if (out_.front().size() == out_.size()) {
    ctx().ring.send(tcp_.get(), out_.front(), &send_tag_);
  } else {
    if (!gather_) gather_ = std::make_unique<GatherSend>();
    gather_->msg = {};
    gather_->msg.msg_iov = gather_->iov.data();
    gather_->msg.msg_iovlen = out_.gather(gather_->iov.data(), gather_->iov.size());
    ctx().ring.sendmsg(tcp_.get(), &gather_->msg, &send_tag_);
  }
  send_in_flight_ = true;
}

void StreamBridge::onSend(int res) {
  send_in_flight_ = false;
  if (state_ == State::kAborting) return advance();
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN) return sendToTcp();
    bump(ctx().counters.failed_io);
    return abort(std::string("send: ") + std::strerror(-res));
  }
  const auto n = static_cast<size_t>(res);
  out_.drop(n);
  if (out_.empty()) gather_.reset();
  const bool outbound = record.direction == Direction::kOutbound;
  (outbound ? record.bytes_from_dst : record.bytes_to_dst) += n;
  bump(outbound ? ctx().counters.bytes_from_dst : ctx().counters.bytes_to_dst, n);
  // Written to the TCP peer: only now may the HTTP/2 window reopen (flow control end to end).
  if (conn_) {
    (void)conn_->consumed(stream_, n);
    conn_->markDirty();
  }
  account();
  sendToTcp();
  advance();
}

void StreamBridge::onShutdown() {
  shutdown_in_flight_ = false;
  to_tcp_ = ToTcp::kShut;
  advance();
}

// ---- the stream's end ----

void StreamBridge::onStreamClosed(uint32_t error_code) {
  // The peer may end the stream while bytes it sent still wait for the TCP peer (a fast sender,
  // a client that half-closed): they are still written, but nothing would give their window back.
  giveBackHeld();
  conn_ = nullptr;  // the connection already forgot the stream
  if (error_code == hbone::kH2RefusedStream && state_ == State::kOpening && reopen && !reopened_) {
    // RFC 9113 8.7: a refused stream was not processed (its request crossed a GOAWAY, which an
    // upgrading or idle peer sends), and nothing was read from the application before the
    // CONNECT's answer: open it again, once, on another connection.
    reopened_ = true;
    if (reopen(*this)) {
      bump(ctx().counters.hbone_streams_reopened);
      return;
    }
  }
  if (error_code != hbone::kH2NoError) {
    return abort(std::string("HBONE stream reset: ") + std::string(hbone::h2ErrorName(error_code)));
  }
  if (state_ == State::kOpening) return abort("HBONE stream closed before it was established");
  advance();
}

void StreamBridge::onConnectionLost(const std::string& why) {
  conn_ = nullptr;
  abort(why);
}

void StreamBridge::abort(const std::string& why) {
  if (state_ == State::kAborting) return;
  if (service && state_ == State::kOpening && record.direction == Direction::kOutbound &&
      !rx_.armed && !send_in_flight_ && !shutdown_in_flight_) {
    detach(/*reset=*/true);
    if (ctx().services.retry(service, tcp_, record.src, why)) return owner_.drop(this);
  }
  state_ = State::kAborting;
  rx_.closed = true;
  if (record.error.empty()) record.error = why;
  if (tcp_.valid()) {
    resetOnClose(tcp_.get());
    ctx().ring.cancelFd(tcp_.get());
  }
  detach(/*reset=*/true);
  // What the application will never read goes now, unless a send in flight still reads it
  // (then when the bridge is freed).
  if (!send_in_flight_) out_.drop(out_.size());
  account();
  advance();
}

void StreamBridge::advance() {
  if (connect_in_flight_ || rx_.armed || send_in_flight_ || shutdown_in_flight_) return;
  if (state_ != State::kAborting) {
    const bool done =
        !conn_ && to_stream_ == ToStream::kEnded && to_tcp_ == ToTcp::kShut && out_.empty();
    if (!done) return;
    bump(ctx().counters.completed);
  }
  owner_.finish(this);
}

ConnectionInfo StreamBridge::describe(Clock::time_point now) const {
  ConnectionInfo info =
      describeRecord(record, std::chrono::duration_cast<std::chrono::milliseconds>(now - start_));
  info.bytes_to_dst = record.bytes_to_dst;
  info.bytes_from_dst = record.bytes_from_dst;
  const bool closing =
      state_ == State::kAborting || to_stream_ == ToStream::kEnded || to_tcp_ != ToTcp::kOpen;
  info.state = state_ == State::kOpening ? "connecting" : closing ? "closing" : "open";
  return info;
}

// ---- the worker's bridges ----

StreamBridge* StreamBridges::create(StreamCarrier* conn, UniqueFd tcp, Direction direction,
                                    const std::string& pod) {
  auto bridge = std::make_unique<StreamBridge>(*this, conn, std::move(tcp), direction, pod);
  StreamBridge* b = bridge.get();
  bridges_.push_back(std::move(bridge));
  b->self_ = std::prev(bridges_.end());
  bump(ctx_.counters.active);
  return b;
}

void StreamBridges::startDeferredConnects() {
  // Swapped out first: nothing below defers more, but a bridge may finish (and leave the list).
  std::vector<StreamBridge*> pending;
  pending.swap(deferred_connects_);
  for (StreamBridge* b : pending) {
    b->connect_deferred_ = false;
    socklen_t len = toSockaddr(b->record.dst, &b->dst_addr_);
    ctx_.ring.connect(b->tcp_.get(), b->dst_addr_, len, &b->connect_tag_);
    b->connect_in_flight_ = true;
  }
}

void StreamBridges::drop(StreamBridge* b) {
  if (b->connect_deferred_) {
    // Reset (or its connection lost) before the connect started: no connection was made.
    bump(ctx_.counters.hbone_reset_before_connect);
    std::erase(deferred_connects_, b);
  }
  if (b->budgeted_ > 0) {
    ctx_.budget.remove(b->budgeted_);
    subtract(ctx_.counters.buffered_bytes, b->budgeted_);
  }
  subtract(ctx_.counters.active);
  bridges_.erase(b->self_);
}

void StreamBridges::finish(StreamBridge* b) {
  ctx_.receivers.release(b->rx_);
  if (b->service) ctx_.services.ended(*b->service);
  b->detach(/*reset=*/true);
  b->record.duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - b->start_);
  ctx_.events.finished(b->record);
  drop(b);  // closes the TCP socket (RST when aborting)
}

void StreamBridges::shedOverBudget() {
  BufferBudget& budget = ctx_.budget;
  if (!budget.over()) return;
  std::vector<StreamBridge*> heavy;
  for (const auto& b : bridges_) {
    if (b->state_ != StreamBridge::State::kAborting && b->budgeted_ >= budget.shedFloor()) {
      heavy.push_back(b.get());
    }
  }
  std::sort(heavy.begin(), heavy.end(), [](const StreamBridge* a, const StreamBridge* b) {
    return a->budgeted_ > b->budgeted_;
  });
  // What the total will be once the shed bridges are gone (a send in flight keeps its buffer
  // until it completes, so used() lags behind).
  const uint64_t used = budget.used();
  uint64_t projected = used;
  uint64_t shed = 0;
  uint64_t shed_bytes = 0;
  for (StreamBridge* b : heavy) {
    if (projected <= budget.lowWater()) break;
    const uint64_t holds = b->budgeted_;
    projected -= std::min(projected, holds);
    ++shed;
    shed_bytes += holds;
    bump(ctx_.counters.overload_streams_shed);
    b->abort(
        fmt::format("overload: reset while holding {} bytes its application had not read "
                    "(all streams: {} bytes, over --max-buffered-bytes {})",
                    holds, used, budget.limit()));
  }
  uint64_t held_back = 0;
  if (shed > 0 && shed_log_.admit(RateLimitedLog::Clock::now(), &held_back)) {
    spdlog::warn(
        "overload: {} bytes buffered for applications that do not read, over "
        "--max-buffered-bytes {}: reset {} streams holding {} bytes{}",
        used, budget.limit(), shed, shed_bytes,
        held_back == 0 ? std::string()
                       : fmt::format(" ({} such lines held back; every reset is counted in "
                                     "nodemesh_tunnel_overload_total{{action=\"reset_stream\"}})",
                                     held_back));
  }
}

std::vector<StreamBridge*> StreamBridges::openInbound() const {
  std::vector<StreamBridge*> out;
  for (const auto& b : bridges_) {
    if (b->record.direction == Direction::kInbound && b->state_ != StreamBridge::State::kAborting) {
      out.push_back(b.get());
    }
  }
  return out;
}

void StreamBridges::describe(std::vector<ConnectionInfo>& out, Clock::time_point now) const {
  for (const auto& b : bridges_) out.push_back(b->describe(now));
}

}  // namespace nodemesh::tunnel
