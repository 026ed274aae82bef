#include "waypoint/proxy/h2_upstream.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "waypoint/proxy/h2_mirror.h"

namespace nodemesh::waypoint {

// ---- one request ----

H2UpstreamCall::~H2UpstreamCall() {
  // Owners reset or finish their calls first; this only unhooks one they did not (its
  // RST_STREAM goes out with the connection's next write).
  if (conn_) {
    (void)conn_->codec_->resetStream(stream_, hbone::kH2Cancel);
    conn_->calls_.erase(stream_);
    if (conn_->calls_.empty()) conn_->since_ = Clock::now();
  }
}

Result<size_t> H2UpstreamCall::sendData(std::span<const uint8_t> data) {
  if (!conn_) return Error{EPIPE, "upstream stream closed"};
  auto taken = conn_->codec_->sendData(stream_, data);
  if (!taken) return taken.error();
  if (replayable_) {
    if (replay_.size() + *taken <= kMaxReplayBytes) {
      replay_.insert(replay_.end(), data.begin(), data.begin() + static_cast<long>(*taken));
    } else {
      replayable_ = false;  // too long to keep for a retry
      replay_.clear();
      replay_.shrink_to_fit();
    }
  }
  conn_->flush();
  return taken;
}

Status H2UpstreamCall::end(const http2::HeaderList& trailers) {
  ended_ = true;
  trailers_ = trailers;
  if (!conn_) return Error{EPIPE, "upstream stream closed"};
  Status st = trailers.empty() ? conn_->codec_->endStream(stream_)
                               : conn_->codec_->sendTrailers(stream_, trailers);
  conn_->flush();
  return st;
}

void H2UpstreamCall::reset(uint32_t error_code) {
  if (!conn_) return;
  H2UpstreamConn* conn = conn_;
  conn_ = nullptr;
  (void)conn->codec_->resetStream(stream_, error_code);
  if (unconsumed_ > 0) (void)conn->codec_->consumed(stream_, unconsumed_);
  unconsumed_ = 0;
  conn->calls_.erase(stream_);
  if (conn->calls_.empty()) conn->since_ = Clock::now();
  conn->flush();
}

void H2UpstreamCall::consumed(size_t n) {
  n = static_cast<size_t>(std::min<uint64_t>(n, unconsumed_));
  unconsumed_ -= n;
  if (!conn_ || n == 0) return;
  (void)conn_->codec_->consumed(stream_, n);
  conn_->flush();
}

// ---- one connection ----

H2UpstreamConn::~H2UpstreamConn() {
  for (auto& [stream, call] : calls_) call->conn_ = nullptr;
  if (hbone_) hbone_->detach(hbone_stream_, /*reset=*/true);
}

Status H2UpstreamConn::start(HboneConn& hbone, const http2::H2CodecOptions& options) {
  auto codec = http2::H2Codec::create(http2::Role::kClient, *this, options);
  if (!codec) return codec.error();
  codec_ = std::move(*codec);
  // The endpoint's agent delivers the stream to podIP:targetPort, where the HTTP/2 server is.
  auto stream = hbone.openConnect(authority_, hbone::ConnectHeaders{}, this);
  if (!stream) return stream.error();
  hbone_ = &hbone;
  hbone_stream_ = *stream;
  flush();  // the client preface and SETTINGS go out with the CONNECT
  return okStatus();
}

uint32_t H2UpstreamConn::availableStreams() const {
  if (dead_ || closing_ || !codec_ || !hbone_) return 0;
  return codec_->availableStreams();
}

H2UpstreamCall* H2UpstreamConn::callOf(http2::StreamId stream) const {
  auto it = calls_.find(stream);
  return it == calls_.end() ? nullptr : it->second;
}

Status H2UpstreamConn::submit(H2UpstreamCall& call) {
  const bool end_now = call.ended_ && call.replay_.empty() && call.trailers_.empty();
  auto id = codec_->submitRequest(call.head_, end_now);
  if (!id) return id.error();
  calls_[*id] = &call;
  call.conn_ = this;
  call.stream_ = *id;
  call.unconsumed_ = 0;
  call.reached_ = established_;
  ++pool_.stats_.requests;
  if (!call.replay_.empty()) {
    auto taken = codec_->sendData(*id, call.replay_);
    if (!taken || *taken < call.replay_.size()) {
      call.reset(hbone::kH2Cancel);
      return Error{EAGAIN, "no room to send the request body again"};
    }
  }
  if (call.ended_ && !end_now) {
    Status st =
        call.trailers_.empty() ? codec_->endStream(*id) : codec_->sendTrailers(*id, call.trailers_);
    if (!st) {
      call.reset(hbone::kH2Cancel);
      return st;
    }
  }
  flush();
  return okStatus();
}

void H2UpstreamConn::flush() {
  if (depth_ > 0) {
    flush_wanted_ = true;
    return;
  }
  if (!codec_ || !hbone_) return;
  do {
    flush_wanted_ = false;
    while (hbone_) {
      ++depth_;
      std::span<const uint8_t> out = codec_->pendingOutput();
      --depth_;
      if (out.empty()) break;
      auto taken = hbone_->send(hbone_stream_, out);
      if (!taken) return fail("upstream stream: " + taken.error().message);
      if (*taken == 0) break;  // onStreamWritable brings us back
      codec_->consumeOutput(*taken);
    }
  } while (flush_wanted_ && hbone_);
  if (hbone_ && codec_->isClosed()) fail("");
}

void H2UpstreamConn::close(const std::string& why) {
  if (dead_) return;
  closing_ = true;
  spdlog::debug("waypoint: HTTP/2 upstream {} closed: {}", authority_, why);
  (void)codec_->goaway(hbone::kH2NoError);
  flush();
  if (hbone_) {
    // The GOAWAY goes out before the end of the stream; the endpoint's agent then closes the
    // pod's connection.
    (void)hbone_->endStream(hbone_stream_);
    hbone_->detach(hbone_stream_, /*reset=*/false);
    hbone_ = nullptr;
  }
  fail("");
}

void H2UpstreamConn::fail(const std::string& why) {
  if (dead_) return;
  dead_ = true;
  if (!why.empty()) spdlog::info("waypoint: HTTP/2 upstream {}: {}", authority_, why);
  if (hbone_) {
    hbone_->detach(hbone_stream_, /*reset=*/true);
    hbone_ = nullptr;
  }
  std::vector<H2UpstreamCall*> calls;
  for (auto& [stream, call] : calls_) calls.push_back(call);
  calls_.clear();
  for (H2UpstreamCall* call : calls) call->conn_ = nullptr;
  for (H2UpstreamCall* call : calls) {
    call->handler_.onUpstreamClosed(hbone::kH2ConnectError,
                                    why.empty() ? "upstream connection closed" : why);
  }
}

// ---- the HBONE stream ----

void H2UpstreamConn::onConnectResponse(int status) {
  if (status == hbone::kStatusOk) {
    // The requests sent with the CONNECT go on to the pod now.
    established_ = true;
    for (auto& [stream, call] : calls_) call->reached_ = true;
    return;
  }
  fail(fmt::format("the endpoint's agent answered the CONNECT with {}", status));
}

void H2UpstreamConn::onStreamData(std::span<const uint8_t> data) {
  if (dead_ || !hbone_) return;
  ++depth_;
  Status st = codec_->receive(data);
  --depth_;
  if (hbone_) (void)hbone_->consumed(hbone_stream_, data.size());
  if (!st) {
    flush();  // the GOAWAY, when the codec has one
    return fail("upstream HTTP/2: " + st.error().message);
  }
  flush();
}

void H2UpstreamConn::onStreamEnd() {
  fail("the endpoint closed the connection");
}

void H2UpstreamConn::onStreamWritable() {
  flush();
}

void H2UpstreamConn::onStreamClosed(uint32_t /*error_code*/, const std::string& why) {
  hbone_ = nullptr;
  fail(why.empty() ? "upstream stream closed" : why);
}

// ---- the codec ----

void H2UpstreamConn::onInformational(http2::StreamId stream, const http2::ResponseHead& head) {
  if (H2UpstreamCall* call = callOf(stream)) call->handler_.onUpstreamInformational(head);
}

void H2UpstreamConn::onResponseHeaders(http2::StreamId stream, const http2::ResponseHead& head,
                                       bool end_stream) {
  if (H2UpstreamCall* call = callOf(stream)) {
    call->response_seen_ = true;
    call->handler_.onUpstreamResponse(head, end_stream);
  }
}

void H2UpstreamConn::onData(http2::StreamId stream, std::span<const uint8_t> data) {
  H2UpstreamCall* call = callOf(stream);
  if (!call) {
    (void)codec_->consumed(stream, data.size());  // the request was cancelled
    return;
  }
  call->unconsumed_ += data.size();
  call->handler_.onUpstreamData(data);
}

void H2UpstreamConn::onTrailers(http2::StreamId stream, const http2::HeaderList& trailers) {
  if (H2UpstreamCall* call = callOf(stream)) call->handler_.onUpstreamTrailers(trailers);
}

void H2UpstreamConn::onEndStream(http2::StreamId stream) {
  if (H2UpstreamCall* call = callOf(stream)) call->handler_.onUpstreamEnd();
}

void H2UpstreamConn::onWritable(http2::StreamId stream) {
  if (H2UpstreamCall* call = callOf(stream)) call->handler_.onUpstreamWritable();
}

void H2UpstreamConn::onStreamClosed(http2::StreamId stream, const http2::StreamClose& close) {
  H2UpstreamCall* call = callOf(stream);
  if (!call) return;
  calls_.erase(stream);
  if (calls_.empty()) since_ = Clock::now();
  call->conn_ = nullptr;
  if (call->unconsumed_ > 0) {
    // The owner may still hold these bytes; the stream is over, so the connection window
    // reopens now (the stream's own window bounded them).
    (void)codec_->consumed(stream, call->unconsumed_);
    call->unconsumed_ = 0;
  }
  // RFC 9113 §8.7: the server did not process it, so it may go again, once, elsewhere.
  if (close.retryable && !call->retried_ && call->replayable_ && !call->response_seen_) {
    call->retried_ = true;
    ++pool_.stats_.retries;
    Status st = pool_.place(*call, this);
    if (st) return;
    spdlog::info("waypoint: HTTP/2 upstream {}: retry failed: {}", authority_, st.error().message);
  }
  call->handler_.onUpstreamClosed(
      close.error_code,
      close.error_code == hbone::kH2NoError
          ? ""
          : fmt::format("upstream stream reset: {}", hbone::h2ErrorName(close.error_code)));
}

void H2UpstreamConn::onGoaway(http2::StreamId /*last_stream*/, uint32_t error_code) {
  // No new requests here; streams above last_stream close retryable (the codec decides).
  closing_ = true;
  spdlog::debug("waypoint: HTTP/2 upstream {} sent GOAWAY {}", authority_,
                hbone::h2ErrorName(error_code));
}

// ---- the pool ----

H2Upstreams::~H2Upstreams() = default;

Result<std::unique_ptr<H2UpstreamCall>> H2Upstreams::open(
    http2::RequestHead head, bool end_stream, const std::string& authority,
    std::function<HboneConn*(std::string*)> connect, H2UpstreamHandler& handler) {
  auto c = call(std::move(head), end_stream, handler);
  if (Status st = send(*c, authority, std::move(connect)); !st) return st.error();
  return c;
}

std::unique_ptr<H2UpstreamCall> H2Upstreams::call(http2::RequestHead head, bool end_stream,
                                                  H2UpstreamHandler& handler) {
  auto c = std::make_unique<H2UpstreamCall>(handler, std::move(head), std::string(), nullptr);
  c->ended_ = end_stream;
  return c;
}

Status H2Upstreams::send(H2UpstreamCall& call, std::string authority,
                         std::function<HboneConn*(std::string*)> connect) {
  if (call.conn_) return Error{EBUSY, "the upstream request is still open"};
  if (!call.replayable_) return Error{EFBIG, "the request body was too long to keep for a retry"};
  call.authority_ = std::move(authority);
  call.connect_ = std::move(connect);
  // A new attempt: the server's one-time REFUSED_STREAM retry is its own again.
  call.retried_ = false;
  call.response_seen_ = false;
  call.reached_ = false;
  call.unconsumed_ = 0;
  return place(call, nullptr);
}

Status H2Upstreams::place(H2UpstreamCall& call, const H2UpstreamConn* avoid) {
  auto range = conns_.equal_range(call.authority_);
  for (auto it = range.first; it != range.second; ++it) {
    H2UpstreamConn* c = it->second.get();
    if (c == avoid || c->availableStreams() == 0) continue;
    if (Status st = c->submit(call); st) return st;
  }
  std::string error;
  HboneConn* hbone = call.connect_ ? call.connect_(&error) : nullptr;
  if (!hbone) return Error{EHOSTUNREACH, error.empty() ? "no HBONE connection" : error};
  auto conn = std::make_unique<H2UpstreamConn>(*this, call.authority_);
  if (Status st = conn->start(*hbone, options_.codec); !st) return st;
  H2UpstreamConn* c = conn.get();
  conns_.emplace(call.authority_, std::move(conn));
  ++stats_.connections_opened;
  ++stats_.connections_active;
  return c->submit(call);
}

H2Mirror* H2Upstreams::adoptMirror(std::unique_ptr<H2Mirror> mirror) {
  mirrors_.push_back(std::move(mirror));
  return mirrors_.back().get();
}

void H2Upstreams::reap() {
  std::erase_if(mirrors_, [](const auto& m) { return m->finished() && !m->attached(); });
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (it->second->dead() && it->second->calls_.empty()) {
      --stats_.connections_active;
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

uint64_t H2Upstreams::unconsumedBytes() const {
  uint64_t n = 0;
  for (const auto& [authority, conn] : conns_) n += conn->unconsumedBytes();
  return n;
}

void H2Upstreams::onTimer(Clock::time_point now) {
  for (auto& [authority, conn] : conns_) {
    if (!conn->dead() && conn->idleSince(now - options_.idle_timeout)) conn->close("idle");
  }
  for (auto& m : mirrors_) {
    if (!m->finished() && now >= m->deadline()) m->cancel();
  }
}

}  // namespace nodemesh::waypoint
