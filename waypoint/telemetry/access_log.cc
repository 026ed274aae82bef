#include "waypoint/telemetry/access_log.h"

#include <algorithm>

#include <fmt/format.h>

namespace nodemesh::waypoint {

namespace {

std::string workloadKey(const model::Workload* w) {
  return w ? w->namespace_name + "/" + w->name : std::string();
}

std::string addressText(const std::optional<SocketAddress>& a) {
  return a ? a->toString() : std::string();
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
    // Written by hand rather than through nlohmann::json: building a json object costs several
    // microseconds per line, and this runs for every request.
    std::string j = "{";
    const auto key = [&j](const char* name) {
      if (j.size() > 1) j += ',';
      j += '"';
      j += name;
      j += "\":";
    };
    // A JSON string, or null when empty (Envoy's JSON logs write null for an absent value).
    const auto text = [&](const char* name, std::string_view v) {
      key(name);
      if (v.empty()) {
        j += "null";
      } else {
        telemetry::appendJsonString(j, v);
      }
    };
    const auto number = [&](const char* name, uint64_t v) {
      key(name);
      fmt::format_to(std::back_inserter(j), "{}", v);
    };
    text("start_time", telemetry::logTimestamp(r.start_time));
    text("reporter", "waypoint");
    text("method", r.method);
    text("path", r.path);
    text("protocol", toString(r.http_version));
    number("response_code", r.response_code);
    text("response_flags", flags);
    if (r.grpc_status) {
      number("grpc_status", *r.grpc_status);
    } else {
      text("grpc_status", "");
    }
    number("bytes_received", r.request_bytes);
    number("bytes_sent", r.response_bytes);
    number("duration_ms", static_cast<uint64_t>(std::max<int64_t>(duration_ms.count(), 0)));
    text("upstream_host", upstream);
    text("route_name", r.route_name);
    text("authority", r.authority);
    text("request_id", r.request_id);
    text("user_agent", r.user_agent);
    text("trace_id", r.trace_id);
    text("span_id", r.span_id);
    text("src", src);
    text("src_identity", src_identity);
    text("src_workload", src_workload);
    text("dst_service", dst_service);
    text("dst_workload", dst_workload);
    text("dst_identity", r.destination_principal);
    j += '}';
    return j;
  }

  // Appended field by field into one reserved string: a fmt::format per field and the
  // quoted copies cost a few percent of the waypoint's CPU at its maximum request rate.
  std::string line;
  line.reserve(1024);
  line += telemetry::logTimestamp(r.start_time);
  line.append(" access reporter=waypoint");
  const auto field = [&line](std::string_view name, std::string_view value) {
    line += ' ';
    line.append(name);
    line += '=';
    telemetry::appendLogTextValue(line, value);
  };
  const auto number = [&line](std::string_view name, auto value) {
    line += ' ';
    line.append(name);
    line += '=';
    fmt::format_to(std::back_inserter(line), "{}", value);
  };
  field("method", r.method);
  field("path", r.path);
  field("protocol", toString(r.http_version));
  number("response_code", r.response_code);
  field("response_flags", flags);
  if (r.grpc_status) {
    number("grpc_status", *r.grpc_status);
  } else {
    field("grpc_status", "");
  }
  number("bytes_received", r.request_bytes);
  number("bytes_sent", r.response_bytes);
  number("duration_ms", duration_ms.count());
  field("upstream_host", upstream);
  field("route_name", r.route_name);
  field("authority", r.authority);
  field("request_id", r.request_id);
  field("user_agent", r.user_agent);
  field("trace_id", r.trace_id);
  field("span_id", r.span_id);
  field("src", src);
  field("src_identity", src_identity);
  field("src_workload", src_workload);
  field("dst_service", dst_service);
  field("dst_workload", dst_workload);
  field("dst_identity", r.destination_principal);
  return line;
}

}  // namespace nodemesh::waypoint
