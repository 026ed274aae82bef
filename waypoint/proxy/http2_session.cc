#include "waypoint/proxy/http2_session.h"

#include <charconv>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "waypoint/routing/filters.h"
#include "waypoint/telemetry/request_id.h"
#include "waypoint/telemetry/trace_context.h"

namespace nodemesh::waypoint {

namespace {

RequestHead toRouting(const http2::RequestHead& head) {
  RequestHead r;
  r.method = head.method;
  r.scheme = head.scheme.empty() ? "http" : head.scheme;
  r.authority = head.authority;
  r.path = head.path;
  r.headers.reserve(head.headers.size());
  for (const auto& f : head.headers) r.headers.push_back(Header{f.name, f.value});
  return r;
}

http2::RequestHead toH2(const RequestHead& routed) {
  http2::RequestHead h;
  h.method = routed.method;
  h.scheme = routed.scheme;
  h.authority = routed.authority;
  h.path = routed.path;
  h.headers.reserve(routed.headers.size());
  for (const auto& f : routed.headers) h.headers.push_back({f.name, f.value});
  return h;
}

ResponseHead toRouting(const http2::ResponseHead& head) {
  ResponseHead r;
  r.status = head.status;
  for (const auto& f : head.headers) r.headers.push_back(Header{f.name, f.value});
  return r;
}

http2::ResponseHead toH2(const ResponseHead& routed) {
  http2::ResponseHead h;
  h.status = routed.status;
  for (const auto& f : routed.headers) h.headers.push_back({f.name, f.value});
  return h;
}

std::optional<uint32_t> grpcStatusOf(const http2::HeaderList& fields) {
  std::string_view v = http2::findHeader(fields, "grpc-status");
  uint32_t status = 0;
  if (v.empty() || std::from_chars(v.data(), v.data() + v.size(), status).ec != std::errc{}) {
    return std::nullopt;
  }
  return status;
}

void removeHeaders(http2::HeaderList& fields, std::string_view name) {
  std::erase_if(fields, [&](const http2::HeaderField& f) { return f.name == name; });
}

}  // namespace

Http2Session::Http2Session(HboneConn& down, hbone::StreamId stream, H2Router& router,
                           H2Upstreams& upstreams, std::function<void()> on_done,
                           const http2::H2CodecOptions& options)
    : down_conn_(&down),
      down_stream_(stream),
      router_(router),
      upstreams_(upstreams),
      on_done_(std::move(on_done)),
      options_(options) {
  down_.s = this;
  down.attach(stream, &down_);
}

Http2Session::~Http2Session() {
  // finish() released every request; a session freed without it leaves no retry waiting.
  for (auto& [id, x] : exchanges_) {
    if (x->waiting) router_.retryTimers().cancel(x.get());
  }
  if (down_open_) down_conn_->detach(down_stream_);
}

Status Http2Session::start(std::vector<uint8_t> first_bytes) {
  auto codec = http2::H2Codec::create(http2::Role::kServer, *this, options_);
  if (!codec) return codec.error();
  codec_ = std::move(*codec);
  if (first_bytes.empty()) {
    flushDown();
  } else {
    down_.onStreamData(first_bytes);
  }
  return okStatus();
}

Http2Session::Exchange* Http2Session::find(http2::StreamId stream) {
  auto it = exchanges_.find(stream);
  return it == exchanges_.end() ? nullptr : it->second.get();
}

// ---- the client's stream ----

void Http2Session::Down::onStreamData(std::span<const uint8_t> data) {
  if (s->done_) {
    (void)s->down_conn_->consumed(s->down_stream_, data.size());
    return;
  }
  ++s->depth_;
  Status st = s->codec_->receive(data);
  --s->depth_;
  // The codec parsed every byte; bodies wait in it under HTTP/2 flow control (consumed()).
  if (s->down_open_) (void)s->down_conn_->consumed(s->down_stream_, data.size());
  s->flushDown();  // on an error: the GOAWAY
  if (!st) {
    spdlog::info("waypoint: HTTP/2 client {}: {}", s->down_conn_->peer().toString(),
                 st.error().message);
    s->finish();
  }
}

void Http2Session::Down::onStreamEnd() {
  s->flushDown();
  s->finish();  // the client closed its connection
}

void Http2Session::Down::onStreamWritable() {
  s->flushDown();
}

void Http2Session::Down::onStreamClosed(uint32_t error_code, const std::string& why) {
  s->down_open_ = false;
  if (error_code != hbone::kH2NoError) spdlog::debug("waypoint: client stream closed: {}", why);
  s->finish();
}

void Http2Session::flushDown() {
  if (depth_ > 0) {
    flush_wanted_ = true;
    return;
  }
  if (!codec_ || !down_open_) return;
  do {
    flush_wanted_ = false;
    while (down_open_) {
      ++depth_;
      std::span<const uint8_t> out = codec_->pendingOutput();
      --depth_;
      if (out.empty()) break;
      auto taken = down_conn_->send(down_stream_, out);
      if (!taken) return finish();
      if (*taken == 0) break;  // onStreamWritable brings us back
      codec_->consumeOutput(*taken);
    }
  } while (flush_wanted_ && down_open_);
  if (codec_->isClosed()) finish();
}

void Http2Session::finish() {
  if (done_) return;
  done_ = true;
  if (down_open_) {
    (void)down_conn_->endStream(down_stream_);
    down_conn_->detach(down_stream_, /*reset=*/false);
    down_open_ = false;
  }
  // Taken out first: cancelling an upstream may run events of other requests of this session.
  std::map<http2::StreamId, std::unique_ptr<Exchange>> open;
  open.swap(exchanges_);
  for (auto& [id, x] : open) {
    dropMirrors(*x);
    releaseUp(*x, hbone::kH2Cancel);
    if (!x->down_end_sent) x->record.flags.set(ResponseFlag::kDownstreamConnectionTermination);
    router_.requestDone(x->record);
    retired_.push_back(std::move(x));
  }
  if (on_done_) on_done_();
}

// ---- requests ----

void Http2Session::onRequestHeaders(http2::StreamId stream, const http2::RequestHead& head,
                                    bool end_stream) {
  if (done_) return;
  ++requests_;
  auto owned = std::make_unique<Exchange>();
  Exchange& x = *owned;
  exchanges_[stream] = std::move(owned);
  x.s = this;
  x.id = stream;
  x.grpc = http2::isGrpcRequest(head);
  x.client_ended = end_stream;
  ExchangeRecord& r = x.record;
  r.method = head.method;
  r.authority = head.authority;
  r.path = head.path;
  r.http2 = true;
  r.grpc = x.grpc;
  r.start = std::chrono::system_clock::now();
  r.start_steady = std::chrono::steady_clock::now();
  r.user_agent = std::string(http2::findHeader(head.headers, "user-agent"));
  // W3C trace context, as for HTTP/1.1: the client's trace goes on with a span of ours.
  SystemRandom random;
  InboundTrace inbound;
  std::string tracestate;
  std::optional<std::string_view> request_id;
  for (const auto& f : head.headers) {
    if (f.name == "traceparent") {
      inbound.traceparent_repeated = inbound.traceparent.has_value();
      inbound.traceparent = f.value;
    } else if (f.name == "tracestate") {
      if (!tracestate.empty()) tracestate += ",";
      tracestate += f.value;
    } else if (f.name == "x-request-id" && !request_id) {
      request_id = f.value;
    }
  }
  if (!tracestate.empty()) inbound.tracestate = tracestate;
  HopTrace trace = continueTrace(inbound, random);
  r.trace_id = std::string(trace.context.traceId());
  r.span_id = std::string(trace.context.spanId());
  r.request_id = requestIdFor(request_id, random);

  H2RouteResult route = router_.routeH2(toRouting(head), x.grpc);
  if (route.decision && route.decision->matched) r.route_name = route.decision->matched->describe();
  r.authz = std::move(route.authz);
  if (route.status != 200) {
    if (route.flag) {
      r.flags.set(*route.flag);
    } else if (route.decision && !route.decision->response_flag.empty()) {
      r.flags.set(route.decision->response_flag == "NR" ? ResponseFlag::kNoRouteFound
                                                        : ResponseFlag::kNoClusterFound);
    } else if (route.status == 503) {
      r.flags.set(ResponseFlag::kNoHealthyUpstream);
    }
    return respondLocally(x, route.status, route.error, route.response_headers);
  }
  r.endpoint_uid = route.endpoint_uid;
  x.endpoint_port = route.endpoint_port;
  x.service_key = std::move(route.service_key);
  r.upstream_host = SocketAddress::parse(route.authority).valueOr(SocketAddress{});
  r.upstream_attempts = 1;
  x.table = std::move(route.table);
  x.decision = std::move(route.decision);
  x.retry = RetryPolicy::of(x.decision ? x.decision->retry : std::nullopt);
  x.tried.push_back(r.endpoint_uid);
  http2::RequestHead out = toH2(route.forward);
  removeHeaders(out.headers, "traceparent");
  removeHeaders(out.headers, "tracestate");
  removeHeaders(out.headers, "x-request-id");
  out.headers.push_back({"traceparent", trace.context.traceparent()});
  if (!trace.tracestate.empty()) out.headers.push_back({"tracestate", trace.tracestate});
  out.headers.push_back({"x-request-id", r.request_id});
  x.up_end_sent = end_stream;
  x.attempt_start = Clock::now();
  std::optional<http2::RequestHead> mirror_head;
  if (!route.mirrors.empty()) mirror_head = out;
  // The call outlives a failed send: a retry sends it again.
  x.up = H2Upstreams::call(std::move(out), end_stream, x);
  if (Status st = upstreams_.send(*x.up, route.authority, std::move(route.connect)); !st) {
    sendFailed(x, st.error().message);
  }
  if (x.response_started) return releaseUp(x, hbone::kH2Cancel);  // it failed while opening
  if (mirror_head) startMirrors(x, route, *mirror_head, end_stream);
}

void Http2Session::startMirrors(Exchange& x, const H2RouteResult& route,
                                const http2::RequestHead& head, bool end_stream) {
  // GEP-1742's request timeout bounds the copies too; else as long as an HTTP/1.1 mirror.
  const model::RouteTimeouts t = x.decision ? x.decision->timeouts : model::RouteTimeouts{};
  const auto timeout =
      t.request && t.request->count() > 0 ? *t.request : Http1Session::kMirrorTimeout;
  std::optional<uint64_t> content_length;
  std::string_view cl = http2::findHeader(head.headers, "content-length");
  uint64_t n = 0;
  if (!cl.empty() && std::from_chars(cl.data(), cl.data() + cl.size(), n).ec == std::errc{}) {
    content_length = n;
  }
  Http1UpstreamPool& pool = router_.upstreams();
  for (const H2MirrorTarget& target : route.mirrors) {
    H2Mirror* m = upstreams_.adoptMirror(std::make_unique<H2Mirror>(
        pool.stats(), pool.options().mirror_body_limit, Clock::now() + timeout));
    m->start(upstreams_, target, head, end_stream, content_length);
    if (end_stream) {
      m->detach();  // nothing more to give it
    } else {
      x.mirrors.push_back(m);
    }
  }
}

void Http2Session::dropMirrors(Exchange& x) {
  for (H2Mirror* m : x.mirrors) {
    if (!x.client_ended) m->cancel();
    m->detach();
  }
  x.mirrors.clear();
}

void Http2Session::onRequestRejected(http2::StreamId /*stream*/, int status,
                                     std::string_view reason) {
  spdlog::info("waypoint: HTTP/2 request from {} refused with {}: {}",
               down_conn_->peer().toString(), status, reason);
  ExchangeRecord r;
  r.http2 = true;
  r.start = std::chrono::system_clock::now();
  r.start_steady = std::chrono::steady_clock::now();
  r.response_code = static_cast<uint32_t>(status);
  r.flags.set(ResponseFlag::kDownstreamProtocolError);
  ++requests_;
  router_.requestDone(r);
}

void Http2Session::onData(http2::StreamId stream, std::span<const uint8_t> data) {
  bytes_from_client_ += data.size();
  Exchange* x = find(stream);
  if (!x) {
    (void)codec_->consumed(stream, data.size());
    return;
  }
  x->record.request_bytes += data.size();
  for (H2Mirror* m : x->mirrors) m->body(data);
  x->to_up.emplace_back(data.begin(), data.end());
  pumpUp(*x);
}

void Http2Session::onTrailers(http2::StreamId stream, const http2::HeaderList& trailers) {
  if (Exchange* x = find(stream)) x->client_trailers = trailers;
}

void Http2Session::onEndStream(http2::StreamId stream) {
  if (Exchange* x = find(stream)) {
    x->client_ended = true;
    for (H2Mirror* m : x->mirrors) m->end(x->client_trailers);
    dropMirrors(*x);
    pumpUp(*x);
  }
}

void Http2Session::onWritable(http2::StreamId stream) {
  if (Exchange* x = find(stream)) pumpDown(*x);
}

void Http2Session::onStreamClosed(http2::StreamId stream, const http2::StreamClose& close) {
  auto it = exchanges_.find(stream);
  if (it == exchanges_.end()) return;
  std::unique_ptr<Exchange> x = std::move(it->second);
  exchanges_.erase(it);
  dropMirrors(*x);
  if (!x->reset_by_us && (!x->down_end_sent || close.error_code != hbone::kH2NoError)) {
    // The client reset the stream (or the connection failed) before the response was whole.
    x->record.flags.set(close.error_code == hbone::kH2NoError
                            ? ResponseFlag::kDownstreamConnectionTermination
                            : ResponseFlag::kDownstreamRemoteReset);
  }
  releaseUp(*x, hbone::kH2Cancel);
  // Body bytes still waiting for the client go back to the upstream's window.
  size_t held = 0;
  for (const auto& chunk : x->to_down) held += chunk.size();
  if (x->up && held > x->to_down_front_off) x->up->consumed(held - x->to_down_front_off);
  x->to_down.clear();
  // And the client's body not yet taken by the upstream to the client connection's window (the
  // closed stream's bytes still count there until given back).
  for (const auto& chunk : x->to_up) (void)codec_->consumed(stream, chunk.size());
  x->to_up.clear();
  router_.requestDone(x->record);
  retired_.push_back(std::move(x));
}

void Http2Session::pumpUp(Exchange& x) {
  if (x.waiting) return;  // kept for the retry: the client's stream window holds it meanwhile
  if (x.local || !x.up || !x.up->open()) {
    // Answered by the waypoint, or the upstream is gone: the body is dropped.
    for (const auto& chunk : x.to_up) (void)codec_->consumed(x.id, chunk.size());
    x.to_up.clear();
    return flushDown();
  }
  while (!x.to_up.empty()) {
    std::vector<uint8_t>& front = x.to_up.front();
    auto taken = x.up->sendData(front);
    if (!taken) return pumpUp(x);  // the upstream failed meanwhile
    // Taken bytes are the call's now (kept for a retry): out of the queue even when the
    // upstream failed as they went out.
    if (*taken > 0) (void)codec_->consumed(x.id, *taken);
    const bool whole = *taken == front.size();
    if (whole) {
      x.to_up.pop_front();
    } else {
      front.erase(front.begin(), front.begin() + static_cast<long>(*taken));
    }
    if (!x.up->open()) return pumpUp(x);
    if (!whole) break;  // onUpstreamWritable brings us back
  }
  if (x.to_up.empty() && x.client_ended && !x.up_end_sent) {
    x.up_end_sent = true;
    (void)x.up->end(x.client_trailers);
  }
  flushDown();
}

void Http2Session::pumpDown(Exchange& x) {
  if (done_) return;
  while (!x.to_down.empty()) {
    std::vector<uint8_t>& front = x.to_down.front();
    std::span<const uint8_t> rest(front.data() + x.to_down_front_off,
                                  front.size() - x.to_down_front_off);
    auto taken = codec_->sendData(x.id, rest);
    if (!taken) return;  // the client's stream closed: onStreamClosed gives the rest back
    if (*taken == 0) break;
    if (x.up) x.up->consumed(*taken);
    bytes_to_client_ += *taken;
    x.record.response_bytes += *taken;
    x.to_down_front_off += *taken;
    if (x.to_down_front_off < front.size()) break;  // onWritable brings us back
    x.to_down.pop_front();
    x.to_down_front_off = 0;
  }
  if (x.to_down.empty() && x.upstream_ended && x.response_started && !x.down_end_sent) {
    x.down_end_sent = true;
    if (x.upstream_trailers && !x.upstream_trailers->empty()) {
      (void)codec_->sendTrailers(x.id, *x.upstream_trailers);
    } else {
      (void)codec_->endStream(x.id);
    }
  }
  flushDown();
}

void Http2Session::respondLocally(Exchange& x, int status, const std::string& why,
                                  const Headers& headers,
                                  std::optional<http2::GrpcStatus> grpc_status) {
  if (x.response_started || done_) return;
  x.local = true;
  x.response_started = true;
  x.down_end_sent = true;
  spdlog::debug("waypoint: HTTP/2 request answered {}: {}", status, why);
  if (x.grpc) {
    // gRPC clients read the outcome from grpc-status (404 -> UNIMPLEMENTED, 503 -> UNAVAILABLE).
    http2::ResponseHead head = grpc_status ? http2::grpcTrailersOnlyResponse(*grpc_status, why)
                                           : http2::grpcErrorForHttpStatus(status, why);
    // Metadata the answer carries (a 429's retry-after and RateLimit fields) goes with it.
    for (const auto& h : headers) head.headers.push_back({h.name, h.value});
    x.record.response_code = static_cast<uint32_t>(head.status);
    x.record.grpc_status = grpcStatusOf(head.headers);
    (void)codec_->respond(x.id, head, /*end_stream=*/true);
  } else {
    http2::ResponseHead head;
    head.status = status;
    for (const auto& h : headers) head.headers.push_back({h.name, h.value});
    head.headers.push_back({"content-type", "text/plain"});
    const std::string body = why + "\n";
    head.headers.push_back({"content-length", std::to_string(body.size())});
    x.record.response_code = static_cast<uint32_t>(status);
    if (codec_->respond(x.id, head, /*end_stream=*/false)) {
      auto taken =
          codec_->sendData(x.id, {reinterpret_cast<const uint8_t*>(body.data()), body.size()});
      if (taken) {
        x.record.response_bytes += *taken;
        bytes_to_client_ += *taken;
      }
      (void)codec_->endStream(x.id);
    }
  }
  pumpUp(x);  // drops what the client already sent
}

void Http2Session::onTimer(Clock::time_point now, std::chrono::milliseconds request_timeout) {
  if (done_ || !codec_) return;
  // Answers and resets may close streams (and retire their requests) as they go out.
  std::vector<http2::StreamId> ids;
  ids.reserve(exchanges_.size());
  for (const auto& [id, x] : exchanges_) ids.push_back(id);
  for (http2::StreamId id : ids) {
    if (done_) return;
    if (Exchange* x = find(id)) checkTimeouts(*x, now, request_timeout);
  }
  flushDown();
}

void Http2Session::checkTimeouts(Exchange& x, Clock::time_point now,
                                 std::chrono::milliseconds request_timeout) {
  if (x.local || x.down_end_sent) return;
  // The route's timeouts (GEP-1742; a zero duration disables one), while the upstream's
  // response is not whole: `request` covers every attempt and the backoffs between them,
  // `backendRequest` one attempt.
  if (x.decision && x.up && !x.upstream_ended) {
    const model::RouteTimeouts& t = x.decision->timeouts;
    const bool request_expired =
        t.request && t.request->count() > 0 && now - x.record.start_steady >= *t.request;
    const bool attempt_expired = t.backend_request && t.backend_request->count() > 0 &&
                                 !x.waiting && now - x.attempt_start >= *t.backend_request;
    if (request_expired || attempt_expired) {
      ++router_.upstreams().stats().request_timeouts;
      spdlog::info("waypoint: {} timeout of HTTP/2 {} {} to {}",
                   request_expired ? "request" : "backendRequest", x.record.method, x.record.path,
                   x.record.endpoint_uid);
      x.record.flags.set(ResponseFlag::kUpstreamRequestTimeout);
      releaseUp(x, hbone::kH2Cancel);
      if (!x.response_started) {
        // Envoy's router answers 504 "upstream request timeout"; a gRPC client gets
        // DEADLINE_EXCEEDED, the status gRPC defines for a deadline that expired.
        return respondLocally(x, 504, "upstream request timeout", {},
                              http2::GrpcStatus::kDeadlineExceeded);
      }
      // Part of the response went out: the client must not take it as whole.
      x.down_end_sent = true;
      x.reset_by_us = true;
      (void)codec_->resetStream(x.id, hbone::kH2Cancel);
      return;
    }
  }
  // The request timeout: a request whose body has not ended in time and has no response yet
  // (Envoy's request_timeout is disarmed once the response starts).
  if (request_timeout.count() > 0 && !x.client_ended && !x.response_started &&
      now - x.record.start_steady >= request_timeout) {
    spdlog::info("waypoint: HTTP/2 request from {} timed out after {} ms",
                 down_conn_->peer().toString(), request_timeout.count());
    x.record.flags.set(ResponseFlag::kStreamIdleTimeout);
    dropMirrors(x);  // cancelled: the copy never got its whole body
    releaseUp(x, hbone::kH2Cancel);
    respondLocally(x, 408, "request timeout");
  }
}

void Http2Session::releaseUp(Exchange& x, uint32_t reset_code) {
  if (x.waiting) {  // between attempts: the last one was reported
    router_.retryTimers().cancel(&x);
    x.waiting = false;
  }
  if (x.up) x.up->reset(reset_code);  // nothing when the stream already closed
  reportAttempt(x);
}

void Http2Session::reportAttempt(Exchange& x) {
  if (x.up_released || x.record.endpoint_uid.empty()) return;
  x.up_released = true;
  EndpointOutcome outcome{x.record.endpoint_uid, x.endpoint_port};
  outcome.service = x.service_key;
  outcome.http2 = true;
  if (x.responded) {  // a discarded response too: outlier detection sees its status
    outcome.kind = EndpointOutcome::Kind::kResponded;
    outcome.latency = x.response_latency;
    outcome.status = x.response_status;
  } else if (x.failed) {
    outcome.kind = EndpointOutcome::Kind::kFailed;
  }
  router_.finished(outcome);
}

// ---- retries ----

bool Http2Session::policyAllowsRetry(Exchange& x, int status, std::optional<uint32_t> grpc_status) {
  if (x.local || x.response_started || !x.up) return false;
  if (status != 0 && !x.retry.retriesStatus(status) &&
      !(x.grpc && grpc_status && x.retry.retriesGrpcStatus(*grpc_status))) {
    return false;
  }
  // What was sent must be sendable again: the body kept whole (what is still queued for the
  // upstream included), and either the request may be processed twice (no body, or an
  // idempotent method) or nothing of it reached the pod (no connection, or the endpoint's agent
  // refused its CONNECT). A status retry also needs the request whole: the response is the
  // client's answer while its body is still coming.
  const bool bodyless = x.client_ended && x.record.request_bytes == 0;
  const bool never_reached = status == 0 && !x.up->reached();
  if (!bodyless && !idempotentMethod(x.record.method) && !never_reached) return false;
  size_t queued = 0;
  for (const auto& chunk : x.to_up) queued += chunk.size();
  if (!x.up->replayable(queued) || (status != 0 && !x.client_ended)) return false;
  if (x.retries >= x.retry.attempts) {
    if (x.retry.attempts > 0) {
      x.record.flags.set(ResponseFlag::kUpstreamRetryLimitExceeded);
      ++router_.retryStats().limit_exceeded;
    }
    return false;
  }
  if (!router_.admitRetry(x.service_key)) {
    ++router_.retryStats().budget_exhausted;
    spdlog::debug("waypoint: retry budget of {} exhausted: HTTP/2 {} {} not retried", x.service_key,
                  x.record.method, x.record.path);
    return false;
  }
  ++(status != 0 ? router_.retryStats().on_status : router_.retryStats().on_failure);
  return true;
}

void Http2Session::scheduleRetry(Exchange& x) {
  // No RST_STREAM when both ends are over already (a dropped response read to its end).
  if (x.up) x.up->reset(hbone::kH2Cancel);
  reportAttempt(x);
  x.waiting = true;
  const auto delay = x.retry.delay(x.retries + 1, router_.retryRandom());
  spdlog::debug("waypoint: HTTP/2 {} {} to {}: {}, retry {} in {} ms", x.record.method,
                x.record.path, x.record.endpoint_uid,
                x.responded ? "answered " + std::to_string(x.response_status) : "failed",
                x.retries + 1, delay.count());
  router_.retryTimers().schedule(Clock::now() + delay, &x);
}

void Http2Session::startRetry(Exchange& x) {
  if (done_ || !x.waiting) return;
  x.waiting = false;
  H2RetryPick pick = router_.retargetH2(x.decision, x.tried);
  if (pick.status != 200) {
    x.record.flags.set(ResponseFlag::kNoHealthyUpstream);
    return respondLocally(x, pick.status, pick.error);
  }
  x.tried.push_back(pick.endpoint_uid);
  ++x.retries;
  x.record.upstream_attempts = x.retries + 1;
  x.record.endpoint_uid = std::move(pick.endpoint_uid);
  x.record.upstream_host = SocketAddress::parse(pick.authority).valueOr(SocketAddress{});
  x.endpoint_port = pick.endpoint_port;
  x.service_key = std::move(pick.service_key);
  x.up_released = false;  // the router counted this attempt as started
  x.responded = false;
  x.failed = false;
  x.discarding = false;
  x.response_status = 0;
  x.response_latency = std::chrono::nanoseconds(0);
  x.attempt_start = Clock::now();
  if (Status st = upstreams_.send(*x.up, std::move(pick.authority), std::move(pick.connect)); !st) {
    sendFailed(x, st.error().message);
  } else if (!x.response_started && !x.waiting) {
    pumpUp(x);  // the body that waited, and the end
  }
  if (x.response_started) releaseUp(x, hbone::kH2Cancel);  // answered: it failed while opening
  flushDown();
}

void Http2Session::sendFailed(Exchange& x, const std::string& why) {
  x.failed = true;
  if (policyAllowsRetry(x, 0, std::nullopt)) {
    spdlog::debug("waypoint: HTTP/2 upstream {} not reached: {}", x.record.endpoint_uid, why);
    return scheduleRetry(x);
  }
  releaseUp(x, hbone::kH2Cancel);
  x.record.flags.set(ResponseFlag::kUpstreamConnectionFailure);
  respondLocally(x, 503, "upstream: " + why);
}

// ---- the endpoint's side of one request ----

void Http2Session::Exchange::onUpstreamInformational(const http2::ResponseHead& head) {
  if (response_started || head.status == 101) return;
  (void)s->codec_->respond(id, head, /*end_stream=*/false);
  s->flushDown();
}

void Http2Session::Exchange::onUpstreamResponse(const http2::ResponseHead& head, bool end_stream) {
  if (!responded) {
    responded = true;
    response_latency = Clock::now() - attempt_start;
    response_status = head.status;
  }
  if (response_started || discarding) return;
  // A gRPC response that ends here (trailers-only) carries its grpc-status in these headers;
  // one that goes on has relayed nothing yet either, but its status comes in its trailers.
  const std::optional<uint32_t> grpc_status =
      grpc && end_stream ? grpcStatusOf(head.headers) : std::nullopt;
  if (s->policyAllowsRetry(*this, head.status, grpc_status)) {
    if (end_stream) return s->scheduleRetry(*this);
    discarding = true;  // the body is read and dropped; the retry follows its end
    return;
  }
  response_started = true;
  http2::ResponseHead out = head;
  if (decision) {
    // ResponseHeaderModifier filters of the route that served it.
    ResponseHead routed = toRouting(head);
    applyResponseFilters(*decision, routed);
    out = toH2(routed);
  }
  record.response_code = static_cast<uint32_t>(out.status);
  if (grpc) record.grpc_status = grpcStatusOf(out.headers);  // trailers-only
  if (end_stream) {
    upstream_ended = true;
    down_end_sent = true;
  }
  if (Status st = s->codec_->respond(id, out, end_stream); !st) {
    spdlog::info("waypoint: HTTP/2 response from {} not relayed: {}", record.endpoint_uid,
                 st.error().message);
    s->releaseUp(*this, hbone::kH2Cancel);
    (void)s->codec_->resetStream(id, hbone::kH2InternalError);
  }
  s->flushDown();
}

void Http2Session::Exchange::onUpstreamData(std::span<const uint8_t> data) {
  if (discarding) return up->consumed(data.size());
  to_down.emplace_back(data.begin(), data.end());
  s->pumpDown(*this);
}

void Http2Session::Exchange::onUpstreamTrailers(const http2::HeaderList& trailers) {
  if (discarding) return;
  upstream_trailers = trailers;
  if (grpc) record.grpc_status = grpcStatusOf(trailers);
}

void Http2Session::Exchange::onUpstreamEnd() {
  if (discarding) return s->scheduleRetry(*this);
  upstream_ended = true;
  s->pumpDown(*this);
}

void Http2Session::Exchange::onUpstreamWritable() {
  s->pumpUp(*this);
}

void Http2Session::Exchange::onUpstreamClosed(uint32_t error_code, const std::string& why) {
  if (error_code != hbone::kH2NoError && !local && !responded) failed = true;
  // A failure while a retryable response was being dropped: that retry was decided already.
  if (discarding || (failed && !response_started && s->policyAllowsRetry(*this, 0, std::nullopt))) {
    spdlog::debug("waypoint: HTTP/2 upstream {} failed: {}", record.endpoint_uid, why);
    return s->scheduleRetry(*this);
  }
  s->releaseUp(*this, hbone::kH2Cancel);
  if (error_code == hbone::kH2NoError) return;
  if (local) return;
  spdlog::info("waypoint: HTTP/2 upstream {} failed: {}", record.endpoint_uid, why);
  record.flags.set(error_code == hbone::kH2ConnectError
                       ? ResponseFlag::kUpstreamConnectionTermination
                       : ResponseFlag::kUpstreamRemoteReset);
  if (!response_started) return s->respondLocally(*this, 503, "upstream failed: " + why);
  if (!down_end_sent) {
    // A response cut short: the client must not take it as whole.
    down_end_sent = true;
    (void)s->codec_->resetStream(id, hbone::kH2Cancel);
  }
  s->flushDown();
}

void Http2Session::Exchange::onRetryDue() {
  s->startRetry(*this);
}

}  // namespace nodemesh::waypoint
