#include "agent/metrics/agent_metrics.h"

#include <string>

namespace nodemesh::agent::metrics {

namespace {

void single(PrometheusText& out, const char* name, const char* type, const char* help,
            uint64_t value) {
  out.family(name, type, help);
  out.sample(name, {}, value);
}

}  // namespace

std::string renderAgentMetrics(const AgentMetricsInput& in) {
  PrometheusText out;
  if (in.tcp) in.tcp->write(out);

  single(out, "nodemesh_ready", "gauge",
         "1 when the capture programs are attached and a config is loaded (/healthz/ready)",
         in.ready ? 1 : 0);
  single(out, "nodemesh_enrolled_pods", "gauge", "Pods of this node whose traffic is captured",
         in.enrolled_pods);
  out.family("nodemesh_config_objects", "gauge", "Objects in the config in force");
  out.sample("nodemesh_config_objects", {{"kind", "workload"}}, in.config_workloads);
  out.sample("nodemesh_config_objects", {{"kind", "service"}}, in.config_services);
  out.sample("nodemesh_config_objects", {{"kind", "policy"}}, in.config_policies);

  if (in.capture_counters) {
    out.family("nodemesh_capture_decisions_total", "counter",
               "Decisions of the capture programs, node-wide, by reason (docs/agent.md)");
    for (const auto& [reason, count] : *in.capture_counters) {
      out.sample("nodemesh_capture_decisions_total", {{"reason", reason}}, count);
    }
  }

  const auto& t = in.tunnel;
  out.family("nodemesh_tunnel_connections_accepted_total", "counter",
             "Connections accepted by the tunnel, by listener");
  out.sample("nodemesh_tunnel_connections_accepted_total", {{"listener", "outbound"}},
             t.accepted_outbound);
  out.sample("nodemesh_tunnel_connections_accepted_total", {{"listener", "inbound"}},
             t.accepted_inbound);
  out.sample("nodemesh_tunnel_connections_accepted_total", {{"listener", "hbone"}},
             t.accepted_hbone);
  single(out, "nodemesh_tunnel_connections_completed_total", "counter",
         "Relayed connections that finished cleanly in both directions", t.completed);
  single(out, "nodemesh_tunnel_connections_active", "gauge", "Relayed connections open now",
         t.active);
  out.family("nodemesh_tunnel_connection_failures_total", "counter",
             "Relayed connections that failed, by cause");
  out.sample("nodemesh_tunnel_connection_failures_total", {{"reason", "connect"}},
             t.failed_connect);
  out.sample("nodemesh_tunnel_connection_failures_total", {{"reason", "no_orig_dst"}},
             t.failed_no_orig_dst);
  out.sample("nodemesh_tunnel_connection_failures_total", {{"reason", "io"}}, t.failed_io);
  out.family("nodemesh_tunnel_bytes_total", "counter",
             "Bytes relayed by the tunnel (live, unlike istio_tcp_*_bytes_total)");
  out.sample("nodemesh_tunnel_bytes_total", {{"direction", "to_destination"}}, t.bytes_to_dst);
  out.sample("nodemesh_tunnel_bytes_total", {{"direction", "from_destination"}}, t.bytes_from_dst);
  out.family("nodemesh_tls_handshakes_total", "counter", "Completed TLS handshakes, by role");
  out.sample("nodemesh_tls_handshakes_total", {{"role", "client"}}, t.tls_handshakes_client);
  out.sample("nodemesh_tls_handshakes_total", {{"role", "server"}}, t.tls_handshakes_server);
  single(out, "nodemesh_tls_handshake_failures_total", "counter",
         "TLS handshakes that failed or timed out", t.tls_handshake_failures);
  out.family("nodemesh_hbone_streams_total", "counter",
             "HBONE CONNECT streams: opened as client, accepted (200) or rejected as server");
  out.sample("nodemesh_hbone_streams_total", {{"event", "opened"}}, t.hbone_streams_opened);
  out.sample("nodemesh_hbone_streams_total", {{"event", "accepted"}}, t.hbone_streams_accepted);
  out.sample("nodemesh_hbone_streams_total", {{"event", "rejected"}}, t.hbone_streams_rejected);
  single(out, "nodemesh_hbone_pool_connections", "gauge",
         "Pooled HBONE client connections open (one TLS connection each)", t.hbone_pool_size);
  out.family("nodemesh_tunnel_busy_polls_total", "counter",
             "Tunnel workers' busy polls (--busy-poll-us): found work (hit) or slept (miss)");
  out.sample("nodemesh_tunnel_busy_polls_total", {{"result", "hit"}}, t.busy_poll_hits);
  out.sample("nodemesh_tunnel_busy_polls_total", {{"result", "miss"}}, t.busy_poll_misses);

  out.family("nodemesh_certificate_expiration_timestamp_seconds", "gauge",
             "When each workload certificate of this node expires (Unix time)");
  for (const auto& c : in.certificates) {
    auto seconds =
        std::chrono::duration_cast<std::chrono::seconds>(c.not_after.time_since_epoch()).count();
    out.sample("nodemesh_certificate_expiration_timestamp_seconds", {{"identity", c.identity}},
               static_cast<uint64_t>(seconds < 0 ? 0 : seconds));
  }
  single(out, "nodemesh_certificate_rotation_failures_total", "counter",
         "Certificate renewals that failed (retried at the next rotation pass)",
         in.certificate_rotation_failures);
  return out.take();
}

}  // namespace nodemesh::agent::metrics
