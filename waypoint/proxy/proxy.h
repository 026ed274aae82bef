#pragma once

// What the waypoint does with each CONNECT a node agent sends it: the destination (the
// original service VIP:port or pod IP:port in `:authority`) must name this waypoint (400
// otherwise). The CONNECT is answered 200 and the first bytes tell the protocol
// (http1::detectProtocol): HTTP/1.1 is parsed and each request routed (Http1Session), HTTP/2
// (prior knowledge) too, with multiplexed HTTP/2 upstreams (Http2Session, H2Upstreams); anything
// else, or a client that sends nothing within a second, is passed through as TCP (StreamJoin).
// Either way an endpoint is chosen (the node agents' load balancer, tunnel/lb: locality, power
// of two choices on the requests in flight and their latency, ejection after consecutive
// failures) and reached
// by a CONNECT to its 15008 with `:authority` podIP:targetPort (for HTTP/1.1 a kept-alive one
// from the Http1UpstreamPool when there is one), on a pooled connection that presents the
// waypoint's own identity (so the destination sees the waypoint, as in Istio).

#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "model/mesh.h"
#include "model/snapshot.h"
#include "tunnel/lb/endpoint_picker.h"
#include "waypoint/proxy/h2_upstream.h"
#include "waypoint/proxy/hbone_conn.h"
#include "waypoint/proxy/http1_session.h"
#include "waypoint/proxy/http2_session.h"
#include "waypoint/proxy/jwt_auth.h"
#include "waypoint/proxy/policy.h"
#include "waypoint/proxy/retry.h"
#include "waypoint/proxy/stream_join.h"
#include "waypoint/ratelimit/rate_limiter.h"
#include "waypoint/routing/random_source.h"
#include "waypoint/routing/route_table.h"
#include "waypoint/telemetry/request_telemetry.h"

namespace nodemesh::waypoint {

// Where a CONNECT to the waypoint goes: decided from the snapshot alone (also what the admin
// API's explain shows).
struct UpstreamChoice {
  const model::Service* service = nullptr;    // the destination service, if a VIP
  const model::Workload* workload = nullptr;  // the endpoint picked
  SocketAddress address;                      // the endpoint's ip:targetPort (the authority)
  int status = 200;                           // not 200: the answer to the client, and why
  std::string error;
};

// Whether the destination `dst` (a CONNECT authority) uses the waypoint workload `self_uid`.
bool servedBy(const model::Snapshot& snapshot, const SocketAddress& dst,
              const std::string& self_uid);

struct ProxyStats {
  uint64_t streams = 0;      // CONNECT requests
  uint64_t refused = 0;      // answered with something other than 200 by the waypoint itself
  uint64_t http1 = 0;        // streams parsed as HTTP/1.1
  uint64_t http2 = 0;        // streams parsed as HTTP/2 (prior knowledge)
  uint64_t passthrough = 0;  // streams passed through as TCP
  uint64_t requests = 0;     // HTTP requests, of finished streams
  uint64_t active = 0;       // joins open now
  uint64_t bytes_in = 0;     // client to upstream, of finished joins
  uint64_t bytes_out = 0;
  H2UpstreamStats h2_upstreams;  // the multiplexed HTTP/2 upstream connections
  PolicyStats policy;            // denials by authorization policy
  JwtStats jwt;                  // RequestAuthentication: tokens verified, 401s by reason
  Http1UpstreamStats upstream;   // HTTP/1.1 upstream connections, mirrors, route timeouts
  // DestinationRule traffic policies: endpoints ejected by outlier detection, requests answered
  // 503 UO by a circuit breaker (connectionPool limits).
  uint64_t outlier_ejections = 0;
  uint64_t upstream_overflow = 0;
  RetryStats retry;  // retries by the routes' retry policies, and those not made
  // Requests answered 429 by a local rate limit, per policy and limit.
  std::vector<RateLimitCounter> rate_limited;
  // DATA bytes the HTTP/2 codecs (client connections and upstreams) delivered and nobody gave
  // back yet: a gauge, 0 when idle (HboneConnStats::unconsumed_bytes is the HBONE layer's).
  uint64_t http2_unconsumed_bytes = 0;
};

class Proxy final : public ConnectAcceptor {
 public:
  explicit Proxy(std::string self_uid) : self_uid_(std::move(self_uid)) {}
  ~Proxy() override = default;
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  void setConnections(HboneConns* conns) { conns_ = conns; }
  // Where finished requests and passthrough connections are reported (metrics, access log).
  void setTelemetry(RequestTelemetry* telemetry) { telemetry_ = telemetry; }
  // How long a request may take to arrive whole before it is answered 408.
  void setRequestTimeout(std::chrono::milliseconds timeout) { request_timeout_ = timeout; }
  // The HTTP/1.1 upstream pool's bounds (before traffic).
  void setUpstreamOptions(const Http1UpstreamPoolOptions& options) {
    upstreams_.setOptions(options);
  }
  // The retry budget of each backend (before traffic).
  void setRetryBudget(const RetryBudgetOptions& options) { retry_budget_ = options; }
  // The routes are compiled once per snapshot.
  void setSnapshot(model::SnapshotPtr snapshot);
  // When the next retry is due (the loop arms a timer for it), and the retries due by `now`.
  std::optional<Clock::time_point> nextRetry() const { return retry_timers_.next(); }
  void runRetries(Clock::time_point now) { retry_timers_.runDue(now); }

  void onConnectRequest(HboneConn& conn, hbone::StreamId stream,
                        const hbone::ConnectRequest& request) override;
  // After each batch of completions: frees what finished.
  void reap();
  // On the loop's tick (100 ms): streams whose client said nothing for a second go on as TCP;
  // route timeouts, idle upstream connections.
  void onTimer();
  ProxyStats stats() const;

  // The endpoint a CONNECT to `dst` would be sent to now (no routes: the destination service's
  // own endpoints).
  UpstreamChoice choose(const SocketAddress& dst);
  // An endpoint of `service` for service port `port`, none of `avoid` (workload uids) if it can.
  UpstreamChoice chooseEndpoint(const model::Service& service, uint16_t port,
                                const std::vector<std::string>& avoid = {});

 private:
  struct Inbound;
  // The first bytes of an answered CONNECT, until the protocol is known.
  struct Sniffer final : StreamOwner {
    Proxy* proxy = nullptr;
    Inbound* inbound = nullptr;
    std::vector<uint8_t> bytes;
    bool ended = false;
    void onStreamData(std::span<const uint8_t> data) override;
    void onStreamEnd() override;
    void onStreamWritable() override {}
    void onStreamClosed(uint32_t error_code, const std::string& why) override;
  };
  // What routing decided for one request of either protocol: the endpoint, or the answer.
  struct Routed {
    int status = 200;  // not 200: the waypoint answers with it (error, response_headers)
    std::string error;
    Headers response_headers;
    std::optional<ResponseFlag> flag;         // of the answer, when not the decision's (RL)
    std::shared_ptr<const RouteTable> table;  // keeps `decision` valid
    std::optional<RouteDecision> decision;    // none for a pod addressed directly
    bool filtered = false;                    // request filters changed the head
    PolicyDecision authz;                     // the request's authorization
    UpstreamChoice choice;
  };
  // Routes the requests of one client connection (its CONNECT's destination).
  struct InboundRouter final : Router, H2Router {
    Proxy* proxy = nullptr;
    SocketAddress dst;
    std::string source_namespace;                 // the client's, from its certificate
    std::string source_principal;                 // its SPIFFE ID
    std::optional<SocketAddress> source_address;  // forwarded: for=, else the agent's address
    RouteResult route(const http1::RequestHead& head, const http1::RequestInfo& info) override;
    H2RouteResult routeH2(const RequestHead& head, bool grpc) override;
    // The part both protocols share: route `head` (request filters applied to it in place) and
    // pick an endpoint of the chosen backend.
    Routed routeToEndpoint(RequestHead& head, bool grpc, bool http2);
    // How an HTTP/2 upstream reaches `choice` (an HBONE connection that checks its identity).
    Result<std::function<HboneConn*(std::string*)>> h2Connect(const UpstreamChoice& choice) const;
    void finished(const EndpointOutcome& outcome) override;
    void requestDone(const ExchangeRecord& x) override;
    Http1UpstreamPool& upstreams() override { return proxy->upstreams_; }
    // Router's and H2Router's retries: the endpoint (retryChoice), then what each protocol's
    // upstreams need to reach it.
    RetryPick retarget(const std::optional<RouteDecision>& decision,
                       const std::vector<std::string>& tried) override;
    H2RetryPick retargetH2(const std::optional<RouteDecision>& decision,
                           const std::vector<std::string>& tried) override;
    UpstreamChoice retryChoice(const std::optional<RouteDecision>& decision,
                               const std::vector<std::string>& tried);
    bool admitRetry(std::string_view service_key) override;
    RetryTimers& retryTimers() override { return proxy->retry_timers_; }
    RetryStats& retryStats() override { return proxy->stats_.retry; }
    RandomSource& retryRandom() override { return proxy->route_random_; }
  };
  struct Inbound {
    HboneConn* conn = nullptr;
    hbone::StreamId stream = 0;
    hbone::ConnectRequest request;
    Clock::time_point since;
    std::unique_ptr<Sniffer> sniffer;
    InboundRouter router;
    std::unique_ptr<Http1Session> http1;
    std::unique_ptr<Http2Session> http2;
    std::unique_ptr<StreamJoin> join;
    std::string endpoint_uid;  // the passthrough's endpoint
    uint16_t endpoint_port = 0;
    bool done = false;
  };

  void detected(Inbound& in);
  void startPassthrough(Inbound& in);
  void startHttp2(Inbound& in);
  // The pooled connection for a chosen endpoint, or why there is none (status, error).
  HboneConn* connectionFor(const UpstreamChoice& choice, std::string* error);
  hbone::ConnectHeaders connectHeaders(const hbone::ConnectRequest& request) const;
  // The load balancer's view of a request (or passthrough connection) to an endpoint: started,
  // then how it ended.
  // `service_key`: the backend service of an HTTP request (empty for a passthrough connection),
  // whose requests in flight the circuit breaker counts.
  void endpointStarted(const std::string& uid, uint16_t port, const std::string& service_key = {},
                       bool http2 = false);
  void endpointDone(const EndpointOutcome& outcome);
  // DestinationRule trafficPolicy (outlier detection and circuit breaking, docs/waypoint.md).
  const model::DestinationRule* ruleFor(const model::Service& service) const;
  std::optional<tunnel::lb::OutlierPolicy> outlierPolicy(const model::Service& service) const;
  // Feeds a response status to outlier detection; logs and counts an ejection.
  void responseSeen(const EndpointOutcome& outcome);
  // Why a new request to `service` must be answered 503 UO (connectionPool limits), or nullopt.
  std::optional<std::string> overflow(const model::Service& service, bool http2) const;
  // The retry budget of the backend `service_key` (made on first use).
  RetryBudget& retryBudget(std::string_view service_key);

  // The passthrough connection's telemetry record (open, or closed with its totals).
  void reportPassthrough(const Inbound& in, bool closing);

  std::string self_uid_;
  HboneConns* conns_ = nullptr;
  RequestTelemetry* telemetry_ = nullptr;
  std::chrono::milliseconds request_timeout_{30000};
  model::SnapshotPtr snapshot_;
  std::shared_ptr<const RouteTable> table_;
  SeededRandom route_random_{std::random_device{}()};
  RetryTimers retry_timers_;     // before inbound_: sessions cancel their retries as they go
  H2Upstreams h2_upstreams_;     // before inbound_: the sessions' calls go first
  Http1UpstreamPool upstreams_;  // before inbound_: sessions release into it when they go
  std::list<Inbound> inbound_;
  // Requests (not connections) are balanced: a pick per request, its outcome reported.
  tunnel::lb::EndpointPicker picker_;
  tunnel::lb::ClientLocality locality_;  // the waypoint's own, for routing preferences
  // Per backend service key: its endpoint count (for maxEjectionPercent), for the services with
  // a DestinationRule; and the HTTP requests in flight to it (circuit breaking).
  struct ClusterLoad {
    uint32_t http1 = 0;  // each holds an upstream HTTP/1.1 connection
    uint32_t total = 0;
  };
  std::map<std::string, size_t, std::less<>> cluster_sizes_;
  std::map<std::string, ClusterLoad, std::less<>> cluster_load_;
  Clock::time_point next_prune_{};
  ProxyStats stats_;
  WaypointPolicy policy_;    // L4 authorization with the original client (policy.h)
  WaypointJwt jwt_;          // RequestAuthentication (jwt_auth.h)
  RateLimiter rate_limits_;  // local rate limits (ratelimit/rate_limiter.h)
  RetryBudgetOptions retry_budget_;
  std::map<std::string, RetryBudget, std::less<>> retry_budgets_;  // per backend service key
};

}  // namespace nodemesh::waypoint
