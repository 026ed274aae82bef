#pragma once

// What the waypoint does when a request or passthrough connection finishes: count it in Istio's
// metrics and hand its access log line to a sink. The waypoint owns one instance for all its
// workers; the /metrics page renders it. No I/O of its own: the sink decides where lines go.

#include <functional>
#include <string>

#include "telemetry/prometheus_text.h"
#include "telemetry/tcp_metrics.h"
#include "waypoint/telemetry/access_log.h"
#include "waypoint/telemetry/passthrough_metrics.h"
#include "waypoint/telemetry/request_metrics.h"
#include "waypoint/telemetry/request_record.h"

namespace nodemesh::waypoint {

class RequestTelemetry {
 public:
  // Receives each access log line (no trailing newline) on the worker that finished the
  // request; it must be thread-safe. Empty: no access log.
  using LogSink = std::function<void(const std::string& line)>;

  RequestTelemetry(AccessLogFormat format, LogSink sink, RequestMetrics::Options options = {});

  // Once per finished request (after the last byte or the reset). Thread-safe.
  void onRequest(const RequestRecord& r);
  // A passthrough (non-HTTP) connection. Thread-safe.
  void onPassthroughOpen(const PassthroughRecord& r);
  void onPassthroughClose(const PassthroughRecord& r);

  // Istio's request and TCP families, for the waypoint's /metrics page.
  void writeMetrics(telemetry::PrometheusText& out) const;

  const RequestMetrics& requests() const { return requests_; }
  const telemetry::TcpMetrics& tcp() const { return tcp_; }

 private:
  AccessLogFormat format_;
  LogSink sink_;
  RequestMetrics requests_;
  telemetry::TcpMetrics tcp_;
};

}  // namespace nodemesh::waypoint
