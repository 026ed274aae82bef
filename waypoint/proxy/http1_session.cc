#include "waypoint/proxy/http1_session.h"

#include <utility>

#include <spdlog/spdlog.h>

#include "waypoint/proxy/heads.h"
#include "waypoint/routing/filters.h"
#include "waypoint/telemetry/request_id.h"
#include "waypoint/telemetry/trace_context.h"

namespace nodemesh::waypoint {

namespace {

std::optional<uint64_t> bodyLength(http1::BodyFraming framing, uint64_t content_length) {
  switch (framing) {
    case http1::BodyFraming::kNone:
      return 0;
    case http1::BodyFraming::kContentLength:
      return content_length;
    default:
      return std::nullopt;  // chunked, or until close: sent chunked
  }
}

}  // namespace

Http1Session::Http1Session(HboneConn& down, hbone::StreamId stream, Router& router,
                           std::function<void()> on_done)
    : down_conn_(&down), down_stream_(stream), router_(router), on_done_(std::move(on_done)) {
  down_.s = this;
  down.attach(stream, &down_);
}

Http1Session::~Http1Session() {
  if (up_) releaseUp(/*reset=*/true);
  if (down_open_) down_conn_->detach(down_stream_);
}

Status Http1Session::start(std::vector<uint8_t> first_bytes) {
  auto codec = http1::ServerCodec::create(*this);
  if (!codec) return codec.error();
  server_ = std::move(*codec);
  if (!first_bytes.empty()) in_.push_back(std::move(first_bytes));
  feedDown();
  return okStatus();
}

// ---- the client's stream ----

void Http1Session::Down::onStreamData(std::span<const uint8_t> data) {
  s->in_.emplace_back(data.begin(), data.end());
  s->feedDown();
}

void Http1Session::Down::onStreamEnd() {
  s->client_eof_ = true;
  s->feedDown();
}

void Http1Session::Down::onStreamWritable() {
  s->flushDown();
  s->feedUp();
}

void Http1Session::Down::onStreamClosed(uint32_t error_code, const std::string& why) {
  s->down_open_ = false;
  if (error_code != hbone::kH2NoError) {
    spdlog::debug("waypoint: client stream closed: {}", why);
  }
  s->finish(/*reset_down=*/false);
}

void Http1Session::feedDown() {
  if (done_ || !server_) return;
  while (!in_.empty() && server_->wantsRead()) {
    // The upstream must keep up with the request body before more is read.
    if (up_ && up_->codec && up_->codec->pendingBytes() > kMaxPendingOutput) break;
    auto& chunk = in_.front();
    std::span<const uint8_t> rest(chunk.data() + in_front_off_, chunk.size() - in_front_off_);
    auto taken = server_->receive(rest);
    if (!taken) {
      // The codec queued its error response (onRequestError); send it and close.
      flushDown();
      return finish(/*reset_down=*/false);
    }
    if (*taken == 0) break;
    if (down_open_) (void)down_conn_->consumed(down_stream_, *taken);
    in_front_off_ += *taken;
    if (in_front_off_ == chunk.size()) {
      in_.pop_front();
      in_front_off_ = 0;
    }
    if (done_) return;
  }
  if (in_.empty() && client_eof_ && server_->wantsRead()) {
    client_eof_ = false;  // once
    (void)server_->receiveEof();
  }
  flushDown();
  flushUp();
}

void Http1Session::flushDown() {
  if (done_ || !server_ || !down_open_) return;
  while (server_->pendingBytes() > 0) {
    auto out = server_->pendingOutput();
    auto taken = down_conn_->send(down_stream_, out);
    if (!taken) return finish(/*reset_down=*/true);
    if (*taken == 0) return;  // onStreamWritable brings us back
    server_->consumeOutput(*taken);
  }
  if (server_->shouldClose()) {
    (void)down_conn_->endStream(down_stream_);
  }
}

// ---- requests ----

void Http1Session::onRequestHead(const http1::RequestHead& head, const http1::RequestInfo& info) {
  ++requests_;
  request_done_ = false;
  ExchangeRecord& x = exchange_.emplace();
  x.method = head.method;
  x.authority = info.authority;
  x.path = info.path;
  x.version = head.version;
  x.start = std::chrono::system_clock::now();
  x.start_steady = std::chrono::steady_clock::now();
  if (auto ua = head.headers.get("user-agent")) x.user_agent = *ua;
  // W3C trace context: the client's trace continues with a span of the waypoint's (a new
  // trace when it sent none); x-request-id is kept when sane, else made.
  SystemRandom random;
  InboundTrace inbound;
  auto traceparents = head.headers.getAll("traceparent");
  if (!traceparents.empty()) inbound.traceparent = traceparents.front();
  inbound.traceparent_repeated = traceparents.size() > 1;
  std::string tracestate;
  for (auto v : head.headers.getAll("tracestate")) {
    if (!tracestate.empty()) tracestate += ",";
    tracestate += v;
  }
  if (!tracestate.empty()) inbound.tracestate = tracestate;
  HopTrace trace = continueTrace(inbound, random);
  x.trace_id = std::string(trace.context.traceId());
  x.span_id = std::string(trace.context.spanId());
  x.request_id = requestIdFor(head.headers.get("x-request-id"), random);

  RouteResult r = router_.route(head, info);
  if (r.decision && r.decision->matched) x.route_name = r.decision->matched->describe();
  if (r.status != 200) {
    if (r.decision && !r.decision->response_flag.empty()) {
      x.flags.set(r.decision->response_flag == "NR" ? ResponseFlag::kNoRouteFound
                                                    : ResponseFlag::kNoClusterFound);
    } else if (r.status == 503) {
      x.flags.set(ResponseFlag::kNoHealthyUpstream);
    }
    return respondLocally(r.status, r.error, r.response_headers);
  }
  x.endpoint_uid = r.endpoint_uid;
  x.upstream_host = SocketAddress::parse(r.authority).valueOr(SocketAddress{});
  auto up = std::make_unique<Up>();
  up->s = this;
  auto codec = http1::ClientCodec::create(*up);
  if (!codec) return respondLocally(500, codec.error().message);
  up->codec = std::move(*codec);
  up->table = std::move(r.table);
  up->decision = std::move(r.decision);
  http1::RequestHead out = head;
  if (r.forward) out = std::move(*r.forward);
  http1::stripHopByHop(out.headers);
  out.headers.remove("traceparent");
  out.headers.remove("tracestate");
  out.headers.remove("x-request-id");
  out.headers.add("traceparent", trace.context.traceparent());
  if (!trace.tracestate.empty()) out.headers.add("tracestate", trace.tracestate);
  out.headers.add("x-request-id", x.request_id);
  if (auto st = up->codec->sendRequestHead(out, bodyLength(info.framing, info.content_length));
      !st) {
    return respondLocally(400, st.error().message);
  }
  hbone::ConnectHeaders connect_headers;
  auto stream = r.conn->openConnect(r.authority, connect_headers, up.get());
  if (!stream) {
    router_.finished(r.endpoint_uid);
    return respondLocally(503, "open upstream stream: " + stream.error().message);
  }
  up->conn = r.conn;
  up->stream = *stream;
  up->open = true;
  up->endpoint_uid = r.endpoint_uid;
  up_ = std::move(up);
  // 100-continue: the endpoint answers it (its 100 is relayed), the body is read either way.
  flushUp();
}

void Http1Session::onRequestBody(std::span<const uint8_t> data) {
  bytes_from_client_ += data.size();
  if (exchange_) exchange_->request_bytes += data.size();
  if (!up_ || !up_->codec) return;  // answered locally: the body is dropped
  if (auto st = up_->codec->sendBody(data); !st) upstreamFailed(st.error().message);
}

void Http1Session::onRequestComplete() {
  request_done_ = true;
  if (!up_ || !up_->codec) return;
  if (auto st = up_->codec->sendEnd(); !st) upstreamFailed(st.error().message);
}

void Http1Session::onUpgrade(const http1::RequestHead& /*head*/,
                             const http1::RequestInfo& /*info*/) {
  // Upgrades (websocket, h2c) are not routed at L7 yet: refuse rather than half-support.
  respondLocally(501, "upgrade requests are not supported by the waypoint");
}

void Http1Session::onRequestError(const http1::Rejection& rejection) {
  spdlog::info("waypoint: request refused with {}: {}", rejection.status, rejection.reason);
}

void Http1Session::respondLocally(int status, const std::string& why,
                                  const http1::Headers& headers) {
  http1::ResponseHead head;
  head.status = status;
  head.headers = headers;
  head.headers.add("content-type", "text/plain");
  std::string body = why + "\n";
  if (server_->sendResponseHead(head, body.size())) {
    (void)server_->sendBody({reinterpret_cast<const uint8_t*>(body.data()), body.size()});
    (void)server_->sendEnd();
    if (exchange_) {
      exchange_->response_code = static_cast<uint32_t>(status);
      exchange_->response_bytes += body.size();
    }
  }
  requestDone();
  flushDown();
}

void Http1Session::onTimer(std::chrono::steady_clock::time_point now,
                           std::chrono::milliseconds timeout) {
  if (done_ || !server_) return;
  if (!server_->messageInProgress()) {
    in_progress_since_.reset();
    return;
  }
  if (!in_progress_since_) {
    in_progress_since_ = now;
    return;
  }
  if (now - *in_progress_since_ < timeout) return;
  spdlog::info("waypoint: request from {} timed out after {} ms", down_conn_->peer().toString(),
               timeout.count());
  server_->timeout();
  if (exchange_) {
    exchange_->flags.set(ResponseFlag::kStreamIdleTimeout);
    if (!up_ || !up_->response_started) exchange_->response_code = 408;
  }
  if (up_ && !up_->response_started) {
    releaseUp(/*reset=*/true);
    requestDone();
  }
  flushDown();
}

void Http1Session::requestDone() {
  if (!exchange_) return;
  router_.requestDone(*exchange_);
  exchange_.reset();
}

// ---- the endpoint's stream ----

void Http1Session::flushUp() {
  if (!up_ || !up_->open || !up_->codec) return;
  while (up_->codec->pendingBytes() > 0) {
    auto taken = up_->conn->send(up_->stream, up_->codec->pendingOutput());
    if (!taken) return upstreamFailed(taken.error().message);
    if (*taken == 0) return;
    up_->codec->consumeOutput(*taken);
  }
}

void Http1Session::Up::onConnectResponse(int status) {
  if (status == hbone::kStatusOk) return;
  s->upstreamFailed("the endpoint's agent answered " + std::to_string(status));
}

void Http1Session::Up::onStreamData(std::span<const uint8_t> data) {
  in.emplace_back(data.begin(), data.end());
  s->feedUp();
}

void Http1Session::Up::onStreamEnd() {
  if (!response_done) {
    if (auto st = codec->receiveEof(); !st) return s->upstreamFailed(st.error().message);
  }
  s->feedUp();
}

void Http1Session::Up::onStreamWritable() {
  s->flushUp();
  s->feedDown();
}

void Http1Session::Up::onStreamClosed(uint32_t error_code, const std::string& why) {
  open = false;
  if (!response_done) {
    s->upstreamFailed(why.empty() ? "upstream closed before the response was complete (" +
                                        std::string(hbone::h2ErrorName(error_code)) + ")"
                                  : why);
  }
}

void Http1Session::feedUp() {
  if (!up_ || done_) return;
  Up& up = *up_;
  while (!up.in.empty() && server_->pendingBytes() <= kMaxPendingOutput) {
    std::vector<uint8_t> chunk = std::move(up.in.front());
    up.in.pop_front();
    auto taken = up.codec->receive(chunk);
    if (up.open) (void)up.conn->consumed(up.stream, chunk.size());
    if (!taken) return upstreamFailed(taken.error().message);
    if (!up_) return;  // released by the response's end
  }
  flushDown();
}

void Http1Session::Up::onResponseHead(const http1::ResponseHead& head,
                                      const http1::ResponseInfo& info) {
  http1::ResponseHead out = head;
  http1::stripHopByHop(out.headers);
  if (info.interim) {
    if (head.status == 100) {
      (void)s->server_->sendContinue();
    } else {
      (void)s->server_->sendInterim(head.status, out.headers);
    }
    return;
  }
  response_started = true;
  if (s->exchange_) s->exchange_->response_code = static_cast<uint32_t>(head.status);
  if (decision) {
    // ResponseHeaderModifier filters of the route that served it.
    ResponseHead routed = toRoutingHead(out);
    applyResponseFilters(*decision, routed);
    applyToHttp1(routed, out);
  }
  (void)s->server_->sendResponseHead(out, bodyLength(info.framing, info.content_length));
}

void Http1Session::Up::onResponseBody(std::span<const uint8_t> data) {
  s->bytes_to_client_ += data.size();
  if (s->exchange_) s->exchange_->response_bytes += data.size();
  (void)s->server_->sendBody(data);
}

void Http1Session::Up::onResponseComplete() {
  response_done = true;
  (void)s->server_->sendEnd();
  s->requestDone();
  // The endpoint's connection is not reused: the stream (the pod's TCP connection) ends, with
  // a FIN when the whole request went out, else a reset.
  s->releaseUp(/*reset=*/!s->request_done_);
  s->flushDown();
  s->feedDown();  // the next request
}

void Http1Session::Up::onResponseError(const http1::Rejection& rejection) {
  s->upstreamFailed("bad response from the endpoint: " + rejection.reason);
}

void Http1Session::upstreamFailed(const std::string& why) {
  if (!up_) return;
  const bool started = up_->response_started;
  spdlog::info("waypoint: upstream {} failed: {}", up_->endpoint_uid, why);
  releaseUp(/*reset=*/true);
  if (exchange_) exchange_->flags.set(ResponseFlag::kUpstreamConnectionTermination);
  if (!started) return respondLocally(503, "upstream failed: " + why);
  requestDone();
  finish(/*reset_down=*/true);  // a response cut short: the client must not take it as whole
}

void Http1Session::releaseUp(bool reset) {
  if (!up_) return;
  if (up_->open) {
    if (!reset) (void)up_->conn->endStream(up_->stream);
    up_->conn->detach(up_->stream, reset);
  }
  up_->open = false;
  router_.finished(up_->endpoint_uid);
  retired_.push_back(std::move(up_));
}

void Http1Session::finish(bool reset_down) {
  if (done_) return;
  done_ = true;
  if (exchange_) {
    exchange_->flags.set(ResponseFlag::kDownstreamConnectionTermination);
    requestDone();
  }
  if (up_) releaseUp(/*reset=*/true);
  if (down_open_) {
    if (reset_down) {
      (void)down_conn_->reset(down_stream_, hbone::kH2ConnectError);
    } else {
      (void)down_conn_->endStream(down_stream_);
    }
    down_conn_->detach(down_stream_, /*reset=*/false);
    down_open_ = false;
  }
  if (on_done_) on_done_();
}

}  // namespace nodemesh::waypoint
