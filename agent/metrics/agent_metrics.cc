#include "agent/metrics/agent_metrics.h"

#include <string>
#include <string_view>

namespace nodemesh::agent::metrics {

namespace {

void single(telemetry::PrometheusText& out, const char* name, const char* type, const char* help,
            uint64_t value) {
  out.family(name, type, help);
  out.sample(name, {}, value);
}

}  // namespace

std::string renderAgentMetrics(const AgentMetricsInput& in) {
  telemetry::PrometheusText out;
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

  // Every tunnel counter, as tunnel_stats.h lists it: a family per run of entries.
  const char* family = "";
  for (const tunnel::TunnelStatInfo& stat : tunnel::kTunnelStatInfo) {
    if (std::string_view(stat.family) != family) {
      family = stat.family;
      out.family(family, stat.gauge ? "gauge" : "counter", stat.help);
    }
    if (*stat.label == '\0') {
      out.sample(family, {}, in.tunnel.*stat.value);
    } else {
      out.sample(family, {{stat.label, stat.label_value}}, in.tunnel.*stat.value);
    }
  }

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
  single(out, "nodemesh_certificate_requests_total", "counter",
         "Certificates asked of the CA (first issue and renewals)", in.certificate_requests);
  single(out, "nodemesh_certificate_request_failures_total", "counter",
         "Certificate requests the CA failed or whose answer was refused (retried with backoff)",
         in.certificate_request_failures);
  if (in.xds_connected) {
    single(out, "nodemesh_xds_connected", "gauge",
           "1 while a stream to istiod is open and answered, else 0", *in.xds_connected ? 1 : 0);
    single(out, "nodemesh_xds_connects_total", "counter", "Streams to istiod started",
           in.xds_connects);
    out.family("nodemesh_xds_pushes_total", "counter", "Responses (pushes) from istiod, by type");
    for (const auto& t : in.xds_types) {
      out.sample("nodemesh_xds_pushes_total", {{"type", t.type}}, t.responses);
    }
    out.family("nodemesh_xds_nacks_total", "counter",
               "Pushes from istiod rejected (NACKed) because a resource was invalid, by type");
    for (const auto& t : in.xds_types) {
      out.sample("nodemesh_xds_nacks_total", {{"type", t.type}}, t.nacks);
    }
  }
  return out.take();
}

}  // namespace nodemesh::agent::metrics
