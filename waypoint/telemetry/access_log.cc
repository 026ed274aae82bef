#include "waypoint/telemetry/access_log.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace nodemesh::waypoint {

namespace {

using telemetry::logTextValue;

std::string workloadKey(const model::Workload* w) {
  return w ? w->namespace_name + "/" + w->name : std::string();
}

std::string addressText(const std::optional<SocketAddress>& a) {
  return a ? a->toString() : std::string();
}

// A JSON string, or null when empty (Envoy's JSON logs write null for an absent value).
nlohmann::ordered_json stringOrNull(std::string_view v) {
  return v.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(std::string(v));
}

}  // namespace

std::string formatRequestLog(const RequestRecord& r, AccessLogFormat format) {
  const auto duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.duration);
  const std::string flags = r.response_flags.toString();
  const std::string src = addressText(r.source_address);
  const std::string upstream = addressText(r.upstream_host);
  const std::string src_workload = workloadKey(r.source_workload);
  const std::string dst_workload = workloadKey(r.destination_workload);
  std::string_view dst_service;
  if (r.destination_service) dst_service = r.destination_service->hostname;
  // Only what mutual TLS proved is an identity.
  const std::string_view src_identity = r.mutual_tls ? r.source_principal : "";

  if (format == AccessLogFormat::kJson) {
    nlohmann::ordered_json j = {
        {"start_time", telemetry::logTimestamp(r.start_time)},
        {"reporter", "waypoint"},
        {"method", stringOrNull(r.method)},
        {"path", stringOrNull(r.path)},
        {"protocol", std::string(toString(r.http_version))},
        {"response_code", r.response_code},
        {"response_flags", flags},
        {"grpc_status",
         r.grpc_status ? nlohmann::ordered_json(*r.grpc_status) : nlohmann::ordered_json(nullptr)},
        {"bytes_received", r.request_bytes},
        {"bytes_sent", r.response_bytes},
        {"duration_ms", duration_ms.count()},
        {"upstream_host", stringOrNull(upstream)},
        {"route_name", stringOrNull(r.route_name)},
        {"authority", stringOrNull(r.authority)},
        {"request_id", stringOrNull(r.request_id)},
        {"user_agent", stringOrNull(r.user_agent)},
        {"trace_id", stringOrNull(r.trace_id)},
        {"span_id", stringOrNull(r.span_id)},
        {"src", stringOrNull(src)},
        {"src_identity", stringOrNull(src_identity)},
        {"src_workload", stringOrNull(src_workload)},
        {"dst_service", stringOrNull(dst_service)},
        {"dst_workload", stringOrNull(dst_workload)},
        {"dst_identity", stringOrNull(r.destination_principal)},
    };
    // Invalid UTF-8 in a header (path, user agent) is replaced, never an error.
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }

  std::string line = fmt::format(
      "{} access reporter=waypoint method={} path={} protocol={} response_code={} "
      "response_flags={} grpc_status={} bytes_received={} bytes_sent={} duration_ms={}",
      telemetry::logTimestamp(r.start_time), logTextValue(r.method), logTextValue(r.path),
      toString(r.http_version), r.response_code, flags,
      r.grpc_status ? std::to_string(*r.grpc_status) : "-", r.request_bytes, r.response_bytes,
      duration_ms.count());
  fmt::format_to(std::back_inserter(line),
                 " upstream_host={} route_name={} authority={} request_id={} user_agent={}"
                 " trace_id={} span_id={}",
                 logTextValue(upstream), logTextValue(r.route_name), logTextValue(r.authority),
                 logTextValue(r.request_id), logTextValue(r.user_agent), logTextValue(r.trace_id),
                 logTextValue(r.span_id));
  fmt::format_to(std::back_inserter(line),
                 " src={} src_identity={} src_workload={} dst_service={} dst_workload={}"
                 " dst_identity={}",
                 logTextValue(src), logTextValue(src_identity), logTextValue(src_workload),
                 logTextValue(dst_service), logTextValue(dst_workload),
                 logTextValue(r.destination_principal));
  return line;
}

}  // namespace nodemesh::waypoint
