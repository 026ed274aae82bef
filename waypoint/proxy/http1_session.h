#pragma once

// One client's HTTP/1.1 connection inside a CONNECT stream the waypoint answered 200: requests
// are parsed (http1::ServerCodec), each is routed to an endpoint (Router), and sent on an
// upstream HTTP/1.1 connection to that endpoint (a CONNECT stream to its 15008 carrying an
// http1::ClientCodec) leased from the Http1UpstreamPool: a kept-alive one when the pool has one,
// else a new one; the response comes back the same way and the connection goes back to the
// pool. One request at a time per client connection (pipelined requests wait, as the codec
// rules say).
//
// Route features on the way: RequestMirror copies go out through the pool (Http1Mirror) and
// never hold up the request; the route's timeouts (GEP-1742) run on the loop's timer: `request`
// from the request's head to the response's end, `backendRequest` per upstream attempt; when
// one fires before the response started the client gets 504 (flag UT), after it the streams are
// reset. A request sent on a reused connection that fails before any response byte (the pod
// closed its idle connection meanwhile) is sent once more on a new connection, if it has no
// body or an idempotent method and its body (up to kMaxRetryBody, kept for every request) was
// kept.
//
// Retries (retry.h): a response with a status the route's retry policy names (503 by
// default), or a failure before any response, is not relayed: after the backoff the request
// is sent again, to an endpoint not tried yet when there is one, while attempts and the
// budget last and the request may be sent again (as above, and received whole for a status
// retry), or nothing of it reached the pod (its agent refused the CONNECT: any method). The
// client's further bytes wait meanwhile. A discarded response still counts for
// the load balancer and outlier detection.
//
// Back-pressure: bytes read from a stream are acknowledged (consumed()) only once a codec took
// them, and a codec takes no more while its output to the other stream holds more than
// kMaxPendingOutput: a slow reader on either side slows the writer on the other, and a session
// holds at most two HTTP/2 windows plus that bound.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "waypoint/http1/client_codec.h"
#include "waypoint/http1/server_codec.h"
#include "waypoint/proxy/hbone_conn.h"
#include "waypoint/proxy/http1_mirror.h"
#include "waypoint/proxy/http1_upstream_pool.h"
#include "waypoint/proxy/policy.h"
#include "waypoint/proxy/retry.h"
#include "waypoint/routing/route_table.h"
#include "waypoint/telemetry/response_flags.h"

namespace nodemesh::waypoint {

// Where one request goes.
struct RouteResult {
  int status = 200;  // not 200: the waypoint answers the request itself with this status
  std::string error;
  http1::Headers response_headers;   // of that answer (a redirect's location)
  std::optional<ResponseFlag> flag;  // of that answer, when routing does not imply it (RL)
  // The request to send when filters changed it (else the received one).
  std::optional<http1::RequestHead> forward;
  // The routing decision, for the response filters; `table` keeps what it points into.
  std::shared_ptr<const RouteTable> table;
  std::optional<RouteDecision> decision;
  PolicyDecision authz;       // the request's authorization, for the access log
  HboneConn* conn = nullptr;  // the pooled connection to the endpoint's 15008
  std::string authority;      // CONNECT authority: the endpoint's podIP:targetPort
  std::string endpoint_uid;
  uint16_t endpoint_port = 0;  // the target port it was picked on
  std::string service_key;     // the backend service it was picked from (empty: a pod)
  uint32_t max_requests_per_connection = 0;  // UpstreamTarget::max_requests
  // Endpoints of the decision's mirrors (their services' endpoints, already chosen).
  std::vector<UpstreamTarget> mirrors;
};

// What became of a request at the endpoint picked for it, for the load balancer
// (Router::finished): its latency sample, or a failure towards outlier ejection.
struct EndpointOutcome {
  enum class Kind {
    kResponded,  // the response head arrived, `latency` after the request was sent
    kFailed,     // the endpoint failed the request before any response (connect, reset)
    kAbandoned,  // neither: the client went, a timeout, a local answer
  };
  std::string_view endpoint_uid;
  uint16_t endpoint_port = 0;
  Kind kind = Kind::kAbandoned;
  std::chrono::nanoseconds latency{0};
  int status = 0;              // kResponded: the response's status (outlier detection)
  bool http2 = false;          // an Http2Session's request (circuit breaking counts by protocol)
  std::string_view service{};  // RouteResult::service_key (circuit breaking, outlier detection)
};

// One finished request as the session saw it, for the metrics and the access log.
struct ExchangeRecord {
  std::string method;
  std::string authority;
  std::string path;
  std::string user_agent;
  std::string request_id;
  std::string trace_id;
  std::string span_id;
  http1::Version version = http1::Version::kHttp11;
  bool http2 = false;  // the client spoke HTTP/2 (Http2Session); `version` does not apply
  bool grpc = false;   // content-type application/grpc
  std::optional<uint32_t> grpc_status;  // grpc-status of the response (trailers or head)
  std::string endpoint_uid;             // empty: answered by the waypoint itself
  std::optional<SocketAddress> upstream_host;
  std::string route_name;
  uint32_t upstream_attempts = 0;  // requests sent upstream: 1, or more after retries
  PolicyDecision authz;            // default ("-") when the request was answered before policies
  uint32_t response_code = 0;      // 0: no response reached the client
  ResponseFlags flags;
  uint64_t request_bytes = 0;
  uint64_t response_bytes = 0;
  std::chrono::system_clock::time_point start;
  std::chrono::steady_clock::time_point start_steady;
};

// Another endpoint for a retry (Router::retarget).
struct RetryPick {
  int status = 200;  // not 200: there is none, and why
  std::string error;
  UpstreamTarget target;
};

class Router {
 public:
  virtual ~Router() = default;
  virtual RouteResult route(const http1::RequestHead& head, const http1::RequestInfo& info) = 0;
  virtual void finished(const EndpointOutcome& outcome) = 0;  // the upstream is released
  virtual void requestDone(const ExchangeRecord& /*record*/) {}
  // Where upstream HTTP/1.1 connections are leased (shared by every session of the loop).
  virtual Http1UpstreamPool& upstreams() = 0;
  // Retries (retry.h). An endpoint of the decision's backend (the same pod for a request to a
  // pod), one not in `tried` when there is one; its start is counted as route()'s pick is.
  virtual RetryPick retarget(const std::optional<RouteDecision>& decision,
                             const std::vector<std::string>& tried) = 0;
  // Whether the retry budget of the backend `service_key` allows one more retry (counted).
  virtual bool admitRetry(std::string_view service_key) = 0;
  virtual RetryTimers& retryTimers() = 0;
  virtual RetryStats& retryStats() = 0;
  virtual RandomSource& retryRandom() = 0;
};

class Http1Session final : public http1::ServerHandler {
 public:
  static constexpr size_t kMaxPendingOutput = 256 * 1024;
  // Request body bytes kept for a retry on a new connection; a longer body is not retried.
  static constexpr size_t kMaxRetryBody = 64 * 1024;
  // How long a mirror may take when its route sets no request timeout.
  static constexpr std::chrono::milliseconds kMirrorTimeout{30000};

  Http1Session(HboneConn& down, hbone::StreamId stream, Router& router,
               std::function<void()> on_done);
  ~Http1Session() override;
  Http1Session(const Http1Session&) = delete;
  Http1Session& operator=(const Http1Session&) = delete;

  // Starts with the bytes the protocol detection read (not yet acknowledged on the stream).
  Status start(std::vector<uint8_t> first_bytes);
  bool done() const { return done_; }
  // On the loop's timer: a request that started arriving `timeout` ago and is still incomplete
  // is answered 408 and the connection closes (the codec decides what is half-received); the
  // route's request and backendRequest timeouts are checked.
  void onTimer(std::chrono::steady_clock::time_point now, std::chrono::milliseconds timeout);
  // After each batch of completions: frees the upstreams of finished requests (never inside
  // their own callbacks).
  void reap() { retired_.clear(); }
  uint64_t requests() const { return requests_; }
  uint64_t bytesFromClient() const { return bytes_from_client_; }  // request bodies
  uint64_t bytesToClient() const { return bytes_to_client_; }      // response bodies

 private:
  // The client's side: the downstream CONNECT stream.
  struct Down final : StreamOwner {
    Http1Session* s = nullptr;
    void onStreamData(std::span<const uint8_t> data) override;
    void onStreamEnd() override;
    void onStreamWritable() override;
    void onStreamClosed(uint32_t error_code, const std::string& why) override;
  };
  // One request's upstream side: the leased connection and what a retry needs.
  struct Up final : Http1UpstreamUser, RetryWaiter {
    Http1Session* s = nullptr;
    Http1Upstream* conn = nullptr;  // leased from the pool; null once released
    UpstreamTarget target;
    bool response_started = false;  // the response head went to the client
    bool response_done = false;
    bool retried = false;  // sent again after a stale kept-alive connection failed
    bool failed = false;   // the endpoint failed it before a response (EndpointOutcome)
    // The load balancer counts this attempt as started (Router::finished not called yet).
    bool accounted = true;
    RetryPolicy retry;               // the route's, or the default
    uint32_t retries = 0;            // retries sent
    std::vector<std::string> tried;  // the endpoints tried, in order
    bool discarding = false;         // this attempt's response is dropped: a retry follows it
    bool waiting = false;            // between attempts: the retry is due on the timer
    std::chrono::nanoseconds response_latency{0};  // request sent to response head
    int response_status = 0;                       // of the final response head
    std::string service_key;                       // RouteResult::service_key
    std::shared_ptr<const RouteTable> table;       // keeps `decision` valid
    std::optional<RouteDecision> decision;
    http1::RequestHead request;  // as sent upstream
    std::optional<uint64_t> body_length;
    std::vector<uint8_t> body;  // sent so far, for a retry, while `body_kept`
    bool body_kept = true;      // all of it so far (at most kMaxRetryBody)
    bool idempotent = false;    // its method, or it has no body: it may be processed twice
    Clock::time_point attempt_start;

    void onUpstreamData() override;
    void onUpstreamWritable() override;
    void onUpstreamFailed(const std::string& why) override;
    void onResponseHead(const http1::ResponseHead& head, const http1::ResponseInfo& info) override;
    void onResponseBody(std::span<const uint8_t> data) override;
    void onResponseComplete() override;
    void onResponseError(const http1::Rejection& rejection) override;
    void onRetryDue() override;
  };

  // ServerHandler
  void onRequestHead(const http1::RequestHead& head, const http1::RequestInfo& info) override;
  void onRequestBody(std::span<const uint8_t> data) override;
  void onRequestComplete() override;
  void onUpgrade(const http1::RequestHead& head, const http1::RequestInfo& info) override;
  void onRequestError(const http1::Rejection& rejection) override;

  // Gives the client's bytes to the server codec while it wants them.
  void feedDown();
  // Gives the endpoint's bytes to the client codec while the client keeps up.
  void feedUp();
  void flushDown();
  void flushUp();
  // Answers the current request from the waypoint itself (no response has started).
  void respondLocally(int status, const std::string& why, const http1::Headers& headers = {});
  // Leases a connection for the current request (a new one when `fresh`) and sends what the
  // request has so far (head, kept body, end).
  Status startAttempt(bool fresh);
  // A reused connection failed before any response byte, and the request may be sent again.
  bool mayRetry() const;
  // Whether the current attempt's failure (`status` 0: no response) may be retried by the
  // policy: it must be one the policy names, the request whole and kept, an attempt left and
  // the budget willing (the last two counted when they say no).
  bool policyAllowsRetry(int status);
  // Ends the current attempt (its connection released, `clean` or reset; its outcome given to
  // the load balancer) and waits for the backoff before the next one.
  void scheduleRetry(bool clean);
  // The backoff passed: the next attempt, on another endpoint when there is one.
  void startRetry();
  // The request's upstream is finished with: `clean` after a whole exchange (the connection
  // may serve the next request), else it is reset.
  void releaseUp(bool clean);
  // `connect`: the attempt could not be started (UF), else it failed on its way (UC).
  void upstreamFailed(const std::string& why, bool connect = false);
  // The route's request / backendRequest timeout expired.
  void checkRouteTimeouts(Clock::time_point now);
  // Mirrors of a request that will not complete are cancelled; all are let go.
  void dropMirrors();
  void finish(bool reset_down);
  // The current request is over (its response went out, or it never will): report it once.
  void requestDone();

  HboneConn* down_conn_;
  hbone::StreamId down_stream_;
  Router& router_;
  std::function<void()> on_done_;
  Down down_;
  bool down_open_ = true;
  std::unique_ptr<http1::ServerCodec> server_;
  std::deque<std::vector<uint8_t>> in_;  // from the client, not yet taken by the server codec
  size_t in_front_off_ = 0;
  bool client_eof_ = false;
  bool request_done_ = false;
  std::unique_ptr<Up> up_;
  std::vector<Http1Mirror*> mirrors_;  // of the current request, owned by the pool
  std::vector<std::unique_ptr<Up>> retired_;
  uint64_t requests_ = 0;
  uint64_t bytes_from_client_ = 0;
  uint64_t bytes_to_client_ = 0;
  std::optional<ExchangeRecord> exchange_;  // the request being served
  std::optional<std::chrono::steady_clock::time_point> in_progress_since_;
  bool done_ = false;
};

}  // namespace nodemesh::waypoint
