#include "waypoint/admin.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

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
  counter("nodemesh_waypoint_passthrough_streams_total", "Streams passed through as TCP",
          s.proxy.passthrough);
  counter("nodemesh_waypoint_http_requests_total", "HTTP requests, of finished streams",
          s.proxy.requests);
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

Result<std::unique_ptr<AdminServers>> AdminServers::start(const AdminInfo& info, AdminPorts ports,
                                                          const StatsFn& stats,
                                                          const SnapshotFn& snapshot,
                                                          const RequestTelemetry* telemetry) {
  std::unique_ptr<AdminServers> s(new AdminServers());
  AdminServers* self = s.get();
  std::vector<http::Route> readiness{{"GET", "/healthz/ready", [self](const http::HttpRequest&) {
                                        http::HttpResponse r;
                                        if (self->stopping_) {
                                          r.status = 503;
                                          r.body = "not ready: stopping\n";
                                        } else {
                                          r.body = "ready\n";
                                        }
                                        return r;
                                      }}};
  std::vector<http::Route> metrics{
      {"GET", "/metrics", [stats, telemetry](const http::HttpRequest&) {
         http::HttpResponse r;
         r.content_type = "text/plain; version=0.0.4";
         r.body = renderWaypointMetrics(stats(), telemetry);
         return r;
       }}};
  std::vector<http::Route> admin{{"GET", "/stats",
                                  [stats, info](const http::HttpRequest&) {
                                    LoopStats st = stats();
                                    nlohmann::json j{
                                        {"workload", info.workload},
                                        {"identity", info.identity},
                                        {"config", info.config},
                                        {"hbone",
                                         {{"accepted", st.connections.accepted},
                                          {"connected", st.connections.connected},
                                          {"handshake_failures", st.connections.handshake_failures},
                                          {"pooled", st.connections.pooled}}},
                                        {"streams",
                                         {{"total", st.proxy.streams},
                                          {"refused", st.proxy.refused},
                                          {"active", st.proxy.active}}},
                                        {"http1_upstream",
                                         {{"connects", st.proxy.upstream.connects},
                                          {"reuses", st.proxy.upstream.reuses},
                                          {"retries", st.proxy.upstream.retries},
                                          {"idle", st.proxy.upstream.idle},
                                          {"idle_closed", st.proxy.upstream.idle_closed}}},
                                        {"mirrors",
                                         {{"started", st.proxy.upstream.mirrors},
                                          {"failed", st.proxy.upstream.mirrors_failed},
                                          {"cancelled", st.proxy.upstream.mirrors_cancelled}}},
                                        {"route_timeouts", st.proxy.upstream.request_timeouts}};
                                    http::HttpResponse r;
                                    r.content_type = "application/json";
                                    r.body = j.dump(2) + "\n";
                                    return r;
                                  }},
                                 {"GET", "/config_dump", [snapshot](const http::HttpRequest&) {
                                    http::HttpResponse r;
                                    model::SnapshotPtr snap = snapshot();
                                    r.body = snap ? snap->summary() + "\n" : "no config\n";
                                    return r;
                                  }}};
  auto serve = [](const char* name, const char* address, uint16_t port, size_t threads,
                  std::vector<http::Route> routes) {
    http::HttpServerOptions o;
    o.name = name;
    o.address = address;
    o.port = port;
    o.threads = threads;
    return http::HttpServer::start(o, std::move(routes));
  };
  auto a = serve("admin", "127.0.0.1", ports.admin, 1, std::move(admin));
  if (!a) return a.error();
  s->admin_ = std::move(*a);
  auto m = serve("metrics", "0.0.0.0", ports.metrics, 1, std::move(metrics));
  if (!m) return m.error();
  s->metrics_ = std::move(*m);
  auto r = serve("readiness", "0.0.0.0", ports.readiness, 1, std::move(readiness));
  if (!r) return r.error();
  s->readiness_ = std::move(*r);
  return s;
}

}  // namespace nodemesh::waypoint
