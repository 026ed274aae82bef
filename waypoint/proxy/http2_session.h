#pragma once

// One client's HTTP/2 connection (prior knowledge) inside a CONNECT stream the waypoint
// answered 200: an http2::H2Codec server over the stream; each request is routed (H2Router:
// GRPCRoutes for gRPC requests, HTTPRoutes otherwise), its request filters applied, and sent
// on over a multiplexed HTTP/2 upstream (H2Upstreams); the response, body and trailers come
// back with the route's response filters applied.
//
// Rules:
// - Failures the waypoint answers itself: a plain HTTP status for HTTP, a gRPC trailers-only
//   response (grpc-status from the HTTP status, grpc.h) for gRPC.
// - A client reset cancels the upstream stream (CANCEL) and an upstream reset resets the
//   client's stream once its response started (before that the client gets a 503 answer).
// - Back-pressure: body bytes are given back to the codec they came from (consumed()) only
//   when the other side's codec took them, so each direction of a request holds at most one
//   HTTP/2 stream window plus the send queue.
// - Codec events never free anything: finished requests wait for reap().
// - RequestMirror copies go out on the shared HTTP/2 upstreams (H2Mirror) and never hold up
//   the request.
// - Timeouts run on the loop's tick (onTimer). The route's `request` (from the request's
//   HEADERS) and `backendRequest` (from the upstream request's start) timeouts (GEP-1742): 504
//   with flag UT before the response started (gRPC: trailers-only DEADLINE_EXCEEDED), after it
//   both streams are reset (CANCEL). A request whose body has not ended within the waypoint's
//   request timeout, with no response started yet, gets 408 (gRPC: trailers-only with the
//   status gRPC maps 408 to, UNKNOWN, as Envoy's request_timeout does) and its upstream request
//   is cancelled; once a response started the timer no longer applies (Envoy disarms its
//   request_timeout there too), so streaming calls live on.
// - Retries (retry.h), as for HTTP/1.1: a final response whose status the policy names (503 by
//   default), a gRPC response that ends with its headers carrying grpc-status UNAVAILABLE or
//   CANCELLED, or a failure before any response, is not relayed: the response's body is read
//   and dropped, and after the backoff (RetryTimers) the same H2UpstreamCall sends the request
//   again (its kept body, H2UpstreamCall::replayable()) to an endpoint not tried yet when there
//   is one; while attempts and the budget last, for a request with no body or an idempotent
//   method (any request that never reached the pod: H2UpstreamCall::reached()), received whole
//   for a status retry. The client's DATA waits meanwhile (its stream window holds it). Each
//   attempt is reported to the router (finished()) once; the route's `request` timeout covers
//   all attempts, `backendRequest` each (not the backoff).

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "waypoint/http2/grpc.h"
#include "waypoint/http2/h2_codec.h"
#include "waypoint/proxy/h2_mirror.h"
#include "waypoint/proxy/h2_upstream.h"
#include "waypoint/proxy/hbone_conn.h"
#include "waypoint/proxy/http1_session.h"
#include "waypoint/proxy/retry.h"
#include "waypoint/routing/route_table.h"

namespace nodemesh::waypoint {

// Where one HTTP/2 request goes.
struct H2RouteResult {
  int status = 200;  // not 200: the waypoint answers the request itself with this status
  std::string error;
  Headers response_headers;          // of that answer (a redirect's location)
  std::optional<ResponseFlag> flag;  // of that answer, when routing does not imply it (RL)
  // The request to send, after the route's request filters.
  RequestHead forward;
  // The routing decision, for the response filters; `table` keeps what it points into.
  std::shared_ptr<const RouteTable> table;
  std::optional<RouteDecision> decision;
  PolicyDecision authz;   // the request's authorization, for the access log
  std::string authority;  // the endpoint's podIP:targetPort
  std::string endpoint_uid;
  uint16_t endpoint_port = 0;  // the target port it was picked on
  std::string service_key;     // the backend service it was picked from (empty: a pod)
  // The pooled HBONE connection to the endpoint's 15008, when a new upstream is needed.
  std::function<HboneConn*(std::string*)> connect;
  // Endpoints of the decision's mirrors (their services' endpoints, already chosen).
  std::vector<H2MirrorTarget> mirrors;
};

// Another endpoint for a retry (H2Router::retargetH2): as H2RouteResult's.
struct H2RetryPick {
  int status = 200;  // not 200: there is none, and why
  std::string error;
  std::string authority;
  std::string endpoint_uid;
  uint16_t endpoint_port = 0;
  std::string service_key;
  std::function<HboneConn*(std::string*)> connect;
};

class H2Router {
 public:
  virtual ~H2Router() = default;
  // `head` as received (lowercase names, no pseudo-header fields, no Host).
  virtual H2RouteResult routeH2(const RequestHead& head, bool grpc) = 0;
  virtual void finished(const EndpointOutcome& outcome) = 0;  // the upstream is released
  virtual void requestDone(const ExchangeRecord& /*record*/) {}
  // The HTTP/1.1 pool: its mirror and route-timeout counters and its mirror body limit are the
  // waypoint's for both protocols.
  virtual Http1UpstreamPool& upstreams() = 0;
  // Retries (retry.h), as Router's: an endpoint of the decision's backend (the same pod for a
  // request to a pod), one not in `tried` when there is one; its start is counted as routeH2()'s
  // pick is.
  virtual H2RetryPick retargetH2(const std::optional<RouteDecision>& decision,
                                 const std::vector<std::string>& tried) = 0;
  // Whether the retry budget of the backend `service_key` allows one more retry (counted).
  virtual bool admitRetry(std::string_view service_key) = 0;
  virtual RetryTimers& retryTimers() = 0;
  virtual RetryStats& retryStats() = 0;
  virtual RandomSource& retryRandom() = 0;
};

class Http2Session final : public http2::H2CodecHandler {
 public:
  Http2Session(HboneConn& down, hbone::StreamId stream, H2Router& router, H2Upstreams& upstreams,
               std::function<void()> on_done, const http2::H2CodecOptions& options = {});
  ~Http2Session() override;
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  // Starts with the bytes the protocol detection read (the connection preface, not yet
  // acknowledged on the stream).
  Status start(std::vector<uint8_t> first_bytes);
  bool done() const { return done_; }
  // On the loop's tick: the route timeouts and the request timeout (`request_timeout`, 0: none)
  // of each open request (see the rules above).
  void onTimer(Clock::time_point now, std::chrono::milliseconds request_timeout);
  // After each batch of completions: frees finished requests.
  void reap() { retired_.clear(); }
  uint64_t requests() const { return requests_; }
  uint64_t bytesFromClient() const { return bytes_from_client_; }  // request bodies
  uint64_t bytesToClient() const { return bytes_to_client_; }      // response bodies
  // The client connection's DATA bytes not given back yet (H2Codec::unconsumedBytes).
  uint64_t unconsumedBytes() const { return codec_ ? codec_->unconsumedBytes() : 0; }

 private:
  // The client's side: the downstream CONNECT stream.
  struct Down final : StreamOwner {
    Http2Session* s = nullptr;
    void onStreamData(std::span<const uint8_t> data) override;
    void onStreamEnd() override;
    void onStreamWritable() override;
    void onStreamClosed(uint32_t error_code, const std::string& why) override;
  };
  // One request, from its HEADERS to the close of the client's stream.
  struct Exchange final : H2UpstreamHandler, RetryWaiter {
    Http2Session* s = nullptr;
    http2::StreamId id = 0;
    bool grpc = false;
    ExchangeRecord record;
    uint16_t endpoint_port = 0;  // with record.endpoint_uid: the load balancer's key
    std::string service_key;     // H2RouteResult::service_key
    // Every attempt's: reset between attempts and sent again (H2Upstreams::send).
    std::unique_ptr<H2UpstreamCall> up;
    bool up_released = false;                 // router_.finished() was called for this attempt
    std::shared_ptr<const RouteTable> table;  // keeps `decision` valid
    std::optional<RouteDecision> decision;
    // Client -> upstream: body not yet taken by the upstream codec, then the end.
    std::deque<std::vector<uint8_t>> to_up;
    bool client_ended = false;
    http2::HeaderList client_trailers;
    bool up_end_sent = false;
    // Upstream -> client.
    std::deque<std::vector<uint8_t>> to_down;
    size_t to_down_front_off = 0;
    bool response_started = false;  // a final response went to the client
    bool upstream_ended = false;
    std::optional<http2::HeaderList> upstream_trailers;
    bool down_end_sent = false;
    bool local = false;               // answered by the waypoint itself
    bool reset_by_us = false;         // the client's stream was reset by the waypoint (a timeout)
    Clock::time_point attempt_start;  // the upstream request's, for backendRequest
    // For the load balancer (EndpointOutcome): the endpoint answered (after this long), or
    // failed the request before answering.
    bool responded = false;
    bool failed = false;
    std::chrono::nanoseconds response_latency{0};
    int response_status = 0;         // of this attempt's final response head
    std::vector<H2Mirror*> mirrors;  // RequestMirror copies, owned by H2Upstreams
    RetryPolicy retry;               // the route's, or the default
    uint32_t retries = 0;            // retries sent
    std::vector<std::string> tried;  // the endpoints tried, in order
    bool discarding = false;         // this attempt's response is dropped: a retry follows it
    bool waiting = false;            // between attempts: the retry is due on the timer

    void onUpstreamInformational(const http2::ResponseHead& head) override;
    void onUpstreamResponse(const http2::ResponseHead& head, bool end_stream) override;
    void onUpstreamData(std::span<const uint8_t> data) override;
    void onUpstreamTrailers(const http2::HeaderList& trailers) override;
    void onUpstreamEnd() override;
    void onUpstreamWritable() override;
    void onUpstreamClosed(uint32_t error_code, const std::string& why) override;
    void onRetryDue() override;
  };

  // H2CodecHandler (the client's connection)
  void onRequestHeaders(http2::StreamId stream, const http2::RequestHead& head,
                        bool end_stream) override;
  void onRequestRejected(http2::StreamId stream, int status, std::string_view reason) override;
  void onData(http2::StreamId stream, std::span<const uint8_t> data) override;
  void onTrailers(http2::StreamId stream, const http2::HeaderList& trailers) override;
  void onEndStream(http2::StreamId stream) override;
  void onStreamClosed(http2::StreamId stream, const http2::StreamClose& close) override;
  void onWritable(http2::StreamId stream) override;

  Exchange* find(http2::StreamId stream);
  // Moves the client's body to the upstream while it takes it; then the end.
  void pumpUp(Exchange& x);
  // Moves the upstream's body to the client while the codec takes it; then the end.
  void pumpDown(Exchange& x);
  // Answers from the waypoint itself (no response started yet); a gRPC request gets a
  // trailers-only response with `grpc_status`, or the one gRPC maps `status` to.
  void respondLocally(Exchange& x, int status, const std::string& why, const Headers& headers = {},
                      std::optional<http2::GrpcStatus> grpc_status = std::nullopt);
  // Starts the decision's mirrors with `head` as it goes upstream.
  void startMirrors(Exchange& x, const H2RouteResult& route, const http2::RequestHead& head,
                    bool end_stream);
  // The client's request is over: mirrors of an unfinished request are cancelled; all are
  // forgotten.
  void dropMirrors(Exchange& x);
  // The route's timeouts, then the request timeout, for one request.
  void checkTimeouts(Exchange& x, Clock::time_point now, std::chrono::milliseconds request_timeout);
  // The upstream request is finished with (reset with `reset_code` if still open), its attempt
  // reported to the router unless it was, a waiting retry cancelled.
  void releaseUp(Exchange& x, uint32_t reset_code);
  // Reports the current attempt's outcome to the router (once per attempt).
  void reportAttempt(Exchange& x);
  // Whether the current attempt's failure (`status` 0: none, the upstream failed before any
  // response; `grpc_status` of a response that ended with its headers) may be retried: one the
  // policy names, the request sendable again, an attempt left and the budget willing (the last
  // two counted when they say no).
  bool policyAllowsRetry(Exchange& x, int status, std::optional<uint32_t> grpc_status);
  // Ends the current attempt (its stream reset if open, its outcome reported) and waits for the
  // backoff before the next one.
  void scheduleRetry(Exchange& x);
  // The backoff passed: the next attempt, on another endpoint when there is one.
  void startRetry(Exchange& x);
  // The upstream request could not be sent (`why`): retried, or answered 503 with flag UF.
  void sendFailed(Exchange& x, const std::string& why);
  // Writes what the codec has for the client (later when inside a codec callback).
  void flushDown();
  void finish();

  HboneConn* down_conn_;
  hbone::StreamId down_stream_;
  H2Router& router_;
  H2Upstreams& upstreams_;
  std::function<void()> on_done_;
  http2::H2CodecOptions options_;
  Down down_;
  bool down_open_ = true;
  std::unique_ptr<http2::H2Codec> codec_;
  int depth_ = 0;  // > 0 inside the codec
  bool flush_wanted_ = false;
  std::map<http2::StreamId, std::unique_ptr<Exchange>> exchanges_;
  std::vector<std::unique_ptr<Exchange>> retired_;
  uint64_t requests_ = 0;
  uint64_t bytes_from_client_ = 0;
  uint64_t bytes_to_client_ = 0;
  bool done_ = false;
};

}  // namespace nodemesh::waypoint
