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
  dropMirrors();
  if (up_) releaseUp(/*clean=*/false);
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
    // The upstream must keep up with the request body before more is read; nothing is read
    // while a retry waits for its backoff.
    if (up_ && up_->waiting) break;
    if (up_ && up_->conn && up_->conn->codec().pendingBytes() > kMaxPendingOutput) break;
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
  dropMirrors();  // the previous request's, all ended
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
  x.authz = std::move(r.authz);
  if (r.status != 200) {
    if (r.flag) {
      x.flags.set(*r.flag);
    } else if (r.decision && !r.decision->response_flag.empty()) {
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
  up->table = std::move(r.table);
  up->decision = std::move(r.decision);
  up->target = UpstreamTarget{r.conn, r.authority, r.endpoint_uid, r.endpoint_port,
                              r.max_requests_per_connection};
  up->service_key = std::move(r.service_key);
  http1::RequestHead out = head;
  if (r.forward) out = std::move(*r.forward);
  http1::stripHopByHop(out.headers);
  out.headers.remove("traceparent");
  out.headers.remove("tracestate");
  out.headers.remove("x-request-id");
  out.headers.add("traceparent", trace.context.traceparent());
  if (!trace.tracestate.empty()) out.headers.add("tracestate", trace.tracestate);
  out.headers.add("x-request-id", x.request_id);
  up->retry = RetryPolicy::of(up->decision ? up->decision->retry : std::nullopt);
  up->tried.push_back(r.endpoint_uid);
  x.upstream_attempts = 1;
  up->body_length = bodyLength(info.framing, info.content_length);
  up->idempotent = up->body_length == 0 || idempotentMethod(out.method);
  up->request = std::move(out);
  up_ = std::move(up);
  if (Status st = startAttempt(/*fresh=*/false); !st.ok()) {
    if (st.error().code == EINVAL) {  // the head cannot be sent as it is
      releaseUp(/*clean=*/false);
      return respondLocally(400, "open upstream stream: " + st.error().message);
    }
    upstreamFailed("open upstream stream: " + st.error().message, /*connect=*/true);
    if (!up_ || !up_->waiting) return;  // answered
  }
  // Mirrors: copies of the request as it goes out, each to its own backend, their responses
  // discarded. Route timeouts bound them too.
  model::RouteTimeouts timeouts;
  if (up_->decision) timeouts = up_->decision->timeouts;
  const auto mirror_timeout =
      timeouts.request && timeouts.request->count() > 0 ? *timeouts.request : kMirrorTimeout;
  for (const UpstreamTarget& target : r.mirrors) {
    mirrors_.push_back(
        router_.upstreams().startMirror(target, up_->request, up_->body_length, mirror_timeout));
  }
}

Status Http1Session::startAttempt(bool fresh) {
  Up& up = *up_;
  auto leased = router_.upstreams().acquire(up.target, up, fresh);
  if (!leased) return leased.error();
  up.conn = *leased;
  up.attempt_start = Clock::now();
  http1::ClientCodec& codec = up.conn->codec();
  if (Status st = codec.sendRequestHead(up.request, up.body_length); !st.ok()) return st;
  if (!up.body.empty()) {
    if (Status st = codec.sendBody(up.body); !st.ok()) return st;
  }
  if (request_done_) {
    if (Status st = codec.sendEnd(); !st.ok()) return st;
  }
  // 100-continue: the endpoint answers it (its 100 is relayed), the body is read either way.
  return up.conn->flush();
}

bool Http1Session::mayRetry() const {
  if (!up_ || !up_->conn || up_->retried || up_->response_started) return false;
  if (!up_->conn->reused() || up_->conn->receivedAny()) return false;
  return up_->body_kept && up_->idempotent;
}

void Http1Session::onRequestBody(std::span<const uint8_t> data) {
  bytes_from_client_ += data.size();
  if (exchange_) exchange_->request_bytes += data.size();
  for (Http1Mirror* m : mirrors_) m->body(data);
  const bool waiting = up_ && up_->waiting;      // kept for the retry (bytes read in one go)
  if (!up_ || (!up_->conn && !waiting)) return;  // answered locally: the body is dropped
  if (up_->body_kept) {
    if (up_->body.size() + data.size() <= kMaxRetryBody) {
      up_->body.insert(up_->body.end(), data.begin(), data.end());
    } else {
      up_->body_kept = false;
      std::vector<uint8_t>().swap(up_->body);
    }
  }
  if (waiting) return;
  if (auto st = up_->conn->codec().sendBody(data); !st) return upstreamFailed(st.error().message);
  flushUp();
}

void Http1Session::onRequestComplete() {
  request_done_ = true;
  for (Http1Mirror* m : mirrors_) m->end();
  if (!up_ || !up_->conn) return;
  if (auto st = up_->conn->codec().sendEnd(); !st) return upstreamFailed(st.error().message);
  flushUp();
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
  checkRouteTimeouts(now);
  if (done_) return;
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
    releaseUp(/*clean=*/false);
    requestDone();
  }
  flushDown();
}

void Http1Session::checkRouteTimeouts(Clock::time_point now) {
  if (!exchange_ || !up_ || up_->response_done || !up_->decision) return;
  const model::RouteTimeouts& t = up_->decision->timeouts;
  // GEP-1742: a zero duration disables a timeout.
  const bool request_expired =
      t.request && t.request->count() > 0 && now - exchange_->start_steady >= *t.request;
  const bool attempt_expired = t.backend_request && t.backend_request->count() > 0 &&
                               !up_->waiting && now - up_->attempt_start >= *t.backend_request;
  if (!request_expired && !attempt_expired) return;
  ++router_.upstreams().stats().request_timeouts;
  spdlog::info("waypoint: {} timeout of {} {} to {}",
               request_expired ? "request" : "backendRequest", exchange_->method, exchange_->path,
               up_->target.authority);
  exchange_->flags.set(ResponseFlag::kUpstreamRequestTimeout);
  const bool started = up_->response_started;
  releaseUp(/*clean=*/false);
  if (!started) return respondLocally(504, "upstream request timeout");
  // Part of the response went out: the client must not take it as whole.
  requestDone();
  finish(/*reset_down=*/true);
}

void Http1Session::requestDone() {
  if (!exchange_) return;
  router_.requestDone(*exchange_);
  exchange_.reset();
}

// ---- the endpoint's stream ----

void Http1Session::flushUp() {
  if (!up_ || !up_->conn) return;
  if (Status st = up_->conn->flush(); !st.ok()) upstreamFailed(st.error().message);
}

void Http1Session::Up::onUpstreamData() {
  s->feedUp();
}

void Http1Session::Up::onUpstreamWritable() {
  s->flushUp();
  s->feedDown();
}

void Http1Session::Up::onUpstreamFailed(const std::string& why) {
  s->upstreamFailed(why);
}

void Http1Session::feedUp() {
  if (!up_ || !up_->conn || done_) return;
  Http1Upstream* conn = up_->conn;
  Status st = conn->pump([this] { return server_->pendingBytes() <= kMaxPendingOutput; });
  // (A malformed response already failed the upstream through onResponseError.)
  if (!st.ok() && up_ && up_->conn == conn) return upstreamFailed(st.error().message);
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
  response_latency = Clock::now() - attempt_start;
  response_status = head.status;
  if (s->policyAllowsRetry(head.status)) {
    discarding = true;  // the body is read and dropped; the retry follows its end
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
  if (discarding) return;
  s->bytes_to_client_ += data.size();
  if (s->exchange_) s->exchange_->response_bytes += data.size();
  (void)s->server_->sendBody(data);
}

void Http1Session::Up::onResponseComplete() {
  if (discarding) return s->scheduleRetry(/*clean=*/true);
  response_done = true;
  (void)s->server_->sendEnd();
  s->requestDone();
  // The connection goes back to the pool when the exchange was whole and kept alive; else it
  // ends, with a FIN when the whole request went out, a reset otherwise.
  s->releaseUp(/*clean=*/s->request_done_);
  s->flushDown();
  s->feedDown();  // the next request
}

void Http1Session::Up::onResponseError(const http1::Rejection& rejection) {
  s->upstreamFailed("bad response from the endpoint: " + rejection.reason);
}

void Http1Session::Up::onRetryDue() {
  s->startRetry();
}

bool Http1Session::policyAllowsRetry(int status) {
  Up& up = *up_;
  if (status != 0 && !up.retry.retriesStatus(status)) return false;
  // What was sent must be sendable again: the body kept, and either the request may be
  // processed twice or nothing of it reached the pod (its agent refused the CONNECT, or no
  // stream opened). A status retry also needs the request whole (the response is the
  // client's answer while its body is still coming).
  const bool never_reached = status == 0 && (!up.conn || !up.conn->established());
  if (!up.body_kept || (!up.idempotent && !never_reached)) return false;
  if (status != 0 && !request_done_) return false;
  if (up.retries >= up.retry.attempts) {
    if (up.retry.attempts > 0 && exchange_) {
      exchange_->flags.set(ResponseFlag::kUpstreamRetryLimitExceeded);
      ++router_.retryStats().limit_exceeded;
    }
    return false;
  }
  if (!router_.admitRetry(up.service_key)) {
    ++router_.retryStats().budget_exhausted;
    spdlog::debug("waypoint: retry budget of {} exhausted: {} {} not retried", up.service_key,
                  up.request.method, up.request.target);
    return false;
  }
  ++(status != 0 ? router_.retryStats().on_status : router_.retryStats().on_failure);
  return true;
}

void Http1Session::scheduleRetry(bool clean) {
  Up& up = *up_;
  if (up.conn) router_.upstreams().release(up.conn, clean);
  up.conn = nullptr;
  // The attempt's outcome, as releaseUp() would give it: a discarded response is a response
  // (outlier detection sees its status), anything else a failure.
  EndpointOutcome outcome{up.target.endpoint_uid, up.target.endpoint_port};
  outcome.service = up.service_key;
  if (up.discarding) {
    outcome.kind = EndpointOutcome::Kind::kResponded;
    outcome.latency = up.response_latency;
    outcome.status = up.response_status;
  } else {
    outcome.kind = EndpointOutcome::Kind::kFailed;
  }
  up.accounted = false;
  router_.finished(outcome);
  up.waiting = true;
  const auto delay = up.retry.delay(up.retries + 1, router_.retryRandom());
  spdlog::debug("waypoint: {} {} to {}: {}, retry {} in {} ms", up.request.method,
                up.request.target, up.target.endpoint_uid,
                up.discarding ? "answered " + std::to_string(up.response_status) : "failed",
                up.retries + 1, delay.count());
  router_.retryTimers().schedule(Clock::now() + delay, &up);
}

void Http1Session::startRetry() {
  if (done_ || !up_ || !up_->waiting) return;
  Up& up = *up_;
  up.waiting = false;
  if (!up.body_kept) {  // more body arrived while waiting than a retry keeps
    releaseUp(/*clean=*/false);
    return respondLocally(503, "upstream failed and the request is too large to retry");
  }
  RetryPick pick = router_.retarget(up.decision, up.tried);
  if (pick.status != 200) {
    releaseUp(/*clean=*/false);
    if (exchange_) exchange_->flags.set(ResponseFlag::kNoHealthyUpstream);
    return respondLocally(pick.status, pick.error);
  }
  pick.target.max_requests = up.target.max_requests;
  up.target = std::move(pick.target);
  // The client had its 100 Continue (or sent the body anyway): the body goes with the head.
  up.request.headers.remove("expect");
  up.accounted = true;
  up.tried.push_back(up.target.endpoint_uid);
  ++up.retries;
  up.response_started = false;
  up.discarding = false;
  up.failed = false;
  up.response_status = 0;
  up.response_latency = std::chrono::nanoseconds(0);
  if (exchange_) {
    exchange_->endpoint_uid = up.target.endpoint_uid;
    exchange_->upstream_host = SocketAddress::parse(up.target.authority).valueOr(SocketAddress{});
    exchange_->upstream_attempts = up.retries + 1;
  }
  if (Status st = startAttempt(/*fresh=*/false); !st.ok()) {
    upstreamFailed("open upstream stream: " + st.error().message, /*connect=*/true);
    return;
  }
  feedDown();  // what the client sent meanwhile
}

void Http1Session::upstreamFailed(const std::string& why, bool connect) {
  if (!up_ || up_->waiting || (!up_->conn && !connect)) return;
  if (up_->conn && mayRetry()) {
    // The pod closed the idle connection as we sent on it: once more on a new connection.
    spdlog::debug("waypoint: reused upstream {} failed before responding ({}), retrying",
                  up_->target.authority, why);
    // On the same HBONE connection: the one route() returned may have gone meanwhile.
    up_->target.conn = up_->conn->hboneConnection();
    router_.upstreams().release(up_->conn, /*clean=*/false);
    up_->conn = nullptr;
    up_->retried = true;
    ++router_.upstreams().stats().retries;
    Status st = startAttempt(/*fresh=*/true);
    if (st.ok()) return;
    spdlog::info("waypoint: retry to {} failed: {}", up_->target.authority, st.error().message);
  }
  const bool started = up_->response_started;
  // A failure while a retryable response was being dropped: that retry was decided already.
  if (!started && (up_->discarding || policyAllowsRetry(0))) {
    spdlog::debug("waypoint: upstream {} failed: {}", up_->target.endpoint_uid, why);
    up_->failed = !up_->discarding;
    return scheduleRetry(/*clean=*/false);
  }
  spdlog::info("waypoint: upstream {} failed: {}", up_->target.endpoint_uid, why);
  up_->failed = !started;
  releaseUp(/*clean=*/false);
  if (exchange_) {
    exchange_->flags.set(connect ? ResponseFlag::kUpstreamConnectionFailure
                                 : ResponseFlag::kUpstreamConnectionTermination);
  }
  if (!started) return respondLocally(503, "upstream failed: " + why);
  requestDone();
  finish(/*reset_down=*/true);  // a response cut short: the client must not take it as whole
}

void Http1Session::releaseUp(bool clean) {
  if (!up_) return;
  router_.retryTimers().cancel(up_.get());
  up_->waiting = false;
  if (up_->conn) router_.upstreams().release(up_->conn, clean);
  up_->conn = nullptr;
  if (!up_->accounted) {  // between attempts: the last one was reported
    retired_.push_back(std::move(up_));
    return;
  }
  EndpointOutcome outcome{up_->target.endpoint_uid, up_->target.endpoint_port};
  outcome.service = up_->service_key;
  if (up_->response_started) {
    outcome.kind = EndpointOutcome::Kind::kResponded;
    outcome.latency = up_->response_latency;
    outcome.status = up_->response_status;
  } else if (up_->failed) {
    outcome.kind = EndpointOutcome::Kind::kFailed;
  }
  router_.finished(outcome);
  retired_.push_back(std::move(up_));
}

void Http1Session::dropMirrors() {
  for (Http1Mirror* m : mirrors_) {
    if (!request_done_) m->cancel();
    m->detach();
  }
  mirrors_.clear();
}

void Http1Session::finish(bool reset_down) {
  if (done_) return;
  done_ = true;
  if (exchange_) {
    exchange_->flags.set(ResponseFlag::kDownstreamConnectionTermination);
    requestDone();
  }
  dropMirrors();
  if (up_) releaseUp(/*clean=*/false);
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
