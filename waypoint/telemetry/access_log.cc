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

// A JSON object, field by field. Written by hand rather than through nlohmann::json: building a
// json object costs several microseconds per line, and this runs for every request.
class JsonFields {
 public:
  JsonFields() {
    out_.reserve(1024);
    out_ += '{';
  }
  // A JSON string, or null when empty (Envoy's JSON logs write null for an absent value).
  void text(std::string_view name, std::string_view value) {
    key(name);
    if (value.empty()) {
      out_.append("null");
    } else {
      telemetry::appendJsonString(out_, value);
    }
  }
  void number(std::string_view name, int64_t value) {
    key(name);
    fmt::format_to(std::back_inserter(out_), "{}", std::max<int64_t>(value, 0));
  }
  std::string finish() {
    out_ += '}';
    return std::move(out_);
  }

 private:
  void key(std::string_view name) {
    if (out_.size() > 1) out_ += ',';
    out_ += '"';
    out_.append(name);
    out_.append("\":");
  }
  std::string out_;
};

// A text line: `<time> access key=value ...`, `-` for an absent value.
class TextFields {
 public:
  explicit TextFields(std::string_view time) {
    out_.reserve(1024);
    out_.append(time);
    out_.append(" access");
  }
  void text(std::string_view name, std::string_view value) {
    out_ += ' ';
    out_.append(name);
    out_ += '=';
    telemetry::appendLogTextValue(out_, value);
  }
  void number(std::string_view name, int64_t value) {
    out_ += ' ';
    out_.append(name);
    out_ += '=';
    fmt::format_to(std::back_inserter(out_), "{}", value);
  }
  std::string finish() { return std::move(out_); }

 private:
  std::string out_;
};

// Every field of a request's line, in order, for either format.
template <typename Fields>
void writeFields(const RequestRecord& r, Fields& f) {
  const auto duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.duration);
  f.text("reporter", "waypoint");
  f.text("method", r.method);
  f.text("path", r.path);
  f.text("protocol", toString(r.http_version));
  f.number("response_code", r.response_code);
  f.text("response_flags", r.response_flags.toString());
  if (r.grpc_status) {
    f.number("grpc_status", *r.grpc_status);
  } else {
    f.text("grpc_status", "");
  }
  f.number("bytes_received", static_cast<int64_t>(r.request_bytes));
  f.number("bytes_sent", static_cast<int64_t>(r.response_bytes));
  f.number("duration_ms", duration_ms.count());
  f.text("upstream_host", addressText(r.upstream_host));
  f.number("upstream_attempts", r.upstream_attempts);
  f.text("route_name", r.route_name);
  f.text("authz", r.authz_result);
  f.text("authz_policy", r.authz_policy);
  if (r.authz_rule) {
    f.number("authz_rule", static_cast<int64_t>(*r.authz_rule));
  } else {
    f.text("authz_rule", "");
  }
  f.text("jwt", r.jwt);
  f.text("authority", r.authority);
  f.text("request_id", r.request_id);
  f.text("user_agent", r.user_agent);
  f.text("trace_id", r.trace_id);
  f.text("span_id", r.span_id);
  f.text("src", addressText(r.source_address));
  // Only what mutual TLS proved is an identity.
  f.text("src_identity", r.mutual_tls ? r.source_principal : std::string_view());
  f.text("src_workload", workloadKey(r.source_workload));
  std::string_view dst_service;
  if (r.destination_service) dst_service = r.destination_service->hostname;
  f.text("dst_service", dst_service);
  f.text("dst_workload", workloadKey(r.destination_workload));
  f.text("dst_identity", r.destination_principal);
}

}  // namespace

std::string formatRequestLog(const RequestRecord& r, AccessLogFormat format) {
  if (format == AccessLogFormat::kJson) {
    JsonFields f;
    f.text("start_time", telemetry::logTimestamp(r.start_time));
    writeFields(r, f);
    return f.finish();
  }
  TextFields f(telemetry::logTimestamp(r.start_time));
  writeFields(r, f);
  return f.finish();
}

}  // namespace nodemesh::waypoint
