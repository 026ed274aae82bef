// GET /metrics of the waypoint: its own counters in the Prometheus text format, then Istio's
// request and TCP metrics (admin.h).
#include <fmt/format.h>

#include "auth/jwt.h"
#include "telemetry/prometheus_text.h"
#include "waypoint/admin.h"
#include "waypoint/ratelimit/rate_limiter.h"

namespace nodemesh::waypoint {

std::string renderWaypointMetrics(const LoopStats& s, const RequestTelemetry* telemetry) {
  std::string out;
  auto counter = [&out](const char* name, const char* help, uint64_t value) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, value);
  };
  auto gauge = [&out](const char* name, const char* help, uint64_t value) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, value);
  };
  counter("nodemesh_waypoint_hbone_accepted_total", "HBONE connections accepted from node agents",
          s.connections.accepted);
  counter("nodemesh_waypoint_hbone_connected_total", "HBONE connections made to endpoints",
          s.connections.connected);
  counter("nodemesh_waypoint_hbone_handshake_failures_total",
          "HBONE connections whose TLS handshake failed or timed out",
          s.connections.handshake_failures);
  gauge("nodemesh_waypoint_hbone_pool_connections",
        "HBONE connections to endpoints open now (pooled)", s.connections.pooled);
  counter("nodemesh_waypoint_streams_total", "CONNECT requests from node agents", s.proxy.streams);
  counter("nodemesh_waypoint_streams_refused_total",
          "CONNECT requests the waypoint answered with an error itself", s.proxy.refused);
  gauge("nodemesh_waypoint_streams_active", "Streams being proxied now", s.proxy.active);
  counter("nodemesh_waypoint_bytes_to_upstream_total",
          "Bytes from clients to endpoints (TCP payload, HTTP bodies), of finished streams",
          s.proxy.bytes_in);
  counter("nodemesh_waypoint_bytes_from_upstream_total",
          "Bytes from endpoints to clients (TCP payload, HTTP bodies), of finished streams",
          s.proxy.bytes_out);
  counter("nodemesh_waypoint_http1_streams_total", "Streams parsed as HTTP/1.1", s.proxy.http1);
  counter("nodemesh_waypoint_http2_streams_total", "Streams parsed as HTTP/2 (prior knowledge)",
          s.proxy.http2);
  counter("nodemesh_waypoint_h2_upstream_connections_total",
          "HTTP/2 connections opened to endpoints (one CONNECT stream each)",
          s.proxy.h2_upstreams.connections_opened);
  gauge("nodemesh_waypoint_h2_upstream_connections", "HTTP/2 connections to endpoints open now",
        s.proxy.h2_upstreams.connections_active);
  counter("nodemesh_waypoint_h2_upstream_retries_total",
          "HTTP/2 requests the endpoint did not process, sent again on a new connection",
          s.proxy.h2_upstreams.retries);
  counter("nodemesh_waypoint_passthrough_streams_total", "Streams passed through as TCP",
          s.proxy.passthrough);
  counter("nodemesh_waypoint_http_requests_total", "HTTP requests, of finished streams",
          s.proxy.requests);
  out += fmt::format(
      "# HELP nodemesh_waypoint_policy_denials_total Connections reset and HTTP requests answered "
      "403 by authorization policy, with the original client's identity\n"
      "# TYPE nodemesh_waypoint_policy_denials_total counter\n"
      "nodemesh_waypoint_policy_denials_total{{subject=\"connection\"}} {}\n"
      "nodemesh_waypoint_policy_denials_total{{subject=\"request\"}} {}\n",
      s.proxy.policy.denied_connections, s.proxy.policy.denied_requests);
  // RequestAuthentication: one series per auth::JwtFailureReason (nine, fixed), so a dashboard
  // sees zeros rather than missing series; never the issuer or principal (unbounded).
  counter("nodemesh_waypoint_jwt_authenticated_total",
          "HTTP requests whose JWT verified (RequestAuthentication)", s.proxy.jwt.authenticated);
  out +=
      "# HELP nodemesh_waypoint_jwt_failures_total HTTP requests answered 401 because their JWT "
      "did not verify, by reason\n"
      "# TYPE nodemesh_waypoint_jwt_failures_total counter\n";
  for (size_t i = 0; i < s.proxy.jwt.failures.size(); ++i) {
    out += fmt::format("nodemesh_waypoint_jwt_failures_total{{reason=\"{}\"}} {}\n",
                       auth::toString(static_cast<auth::JwtFailureReason>(i)),
                       s.proxy.jwt.failures[i]);
  }
  // Labels: the policy ("namespace/name", bounded by the config) and which of its limits
  // rejected (total, identity, override, header: four values). Never the client identity or the
  // header value: those are unbounded, and the access log has them.
  out +=
      "# HELP nodemesh_waypoint_rate_limited_total HTTP requests answered 429 by a local rate "
      "limit, by policy and the limit that rejected them\n"
      "# TYPE nodemesh_waypoint_rate_limited_total counter\n";
  for (const RateLimitCounter& c : s.proxy.rate_limited) {
    out += fmt::format("nodemesh_waypoint_rate_limited_total{{policy=\"{}\",limit=\"{}\"}} {}\n",
                       telemetry::PrometheusText::escapeLabelValue(c.policy),
                       rateLimitKindName(c.kind), c.rejected);
  }
  counter("nodemesh_waypoint_outlier_ejections_total",
          "Endpoints ejected by outlier detection (DestinationRule outlierDetection)",
          s.proxy.outlier_ejections);
  counter("nodemesh_waypoint_upstream_overflow_total",
          "HTTP requests answered 503 UO by a circuit breaker (DestinationRule connectionPool)",
          s.proxy.upstream_overflow);
  // Envoy's upstream_rq_retry, upstream_rq_retry_overflow, upstream_rq_retry_limit_exceeded.
  out += fmt::format(
      "# HELP nodemesh_waypoint_retries_total Requests sent again by a route's retry policy (or "
      "the default), by what the attempt before got\n"
      "# TYPE nodemesh_waypoint_retries_total counter\n"
      "nodemesh_waypoint_retries_total{{cause=\"status\"}} {}\n"
      "nodemesh_waypoint_retries_total{{cause=\"failure\"}} {}\n",
      s.proxy.retry.on_status, s.proxy.retry.on_failure);
  counter("nodemesh_waypoint_retry_budget_exhausted_total",
          "Retries not made because the backend's retry budget was spent",
          s.proxy.retry.budget_exhausted);
  counter("nodemesh_waypoint_retry_limit_exceeded_total",
          "Requests still failing when their retry attempts ran out (flag URX)",
          s.proxy.retry.limit_exceeded);
  const Http1UpstreamStats& up = s.proxy.upstream;
  counter("nodemesh_waypoint_upstream_http1_connects_total",
          "HTTP/1.1 connections opened to endpoints (CONNECT streams)", up.connects);
  counter("nodemesh_waypoint_upstream_http1_reuses_total",
          "Requests sent on a kept-alive HTTP/1.1 connection from the pool", up.reuses);
  counter("nodemesh_waypoint_upstream_http1_retries_total",
          "Requests sent again after a reused connection failed before responding", up.retries);
  gauge("nodemesh_waypoint_upstream_http1_idle", "Idle HTTP/1.1 connections in the pool now",
        up.idle);
  counter("nodemesh_waypoint_mirrors_total", "Requests mirrored (RequestMirror copies started)",
          up.mirrors);
  counter("nodemesh_waypoint_mirrors_failed_total", "Mirror copies that got no whole response",
          up.mirrors_failed);
  counter("nodemesh_waypoint_mirrors_cancelled_total",
          "Mirror copies cancelled (body over the limit, timeout, client gone)",
          up.mirrors_cancelled);
  counter("nodemesh_waypoint_route_timeouts_total",
          "Requests ended by a route timeout (request or backendRequest)", up.request_timeouts);
  if (telemetry) {
    telemetry::PrometheusText text;
    telemetry->writeMetrics(text);
    out += text.take();
  }
  return out;
}

}  // namespace nodemesh::waypoint
