#include "waypoint/telemetry/request_telemetry.h"

#include <utility>

namespace nodemesh::waypoint {

RequestTelemetry::RequestTelemetry(AccessLogFormat format, LogSink sink,
                                   RequestMetrics::Options options)
    : format_(format), sink_(std::move(sink)), requests_(std::move(options)) {}

void RequestTelemetry::onRequest(const RequestRecord& r) {
  requests_.record(r);
  if (sink_) sink_(formatRequestLog(r, format_));
}

void RequestTelemetry::onPassthroughOpen(const PassthroughRecord& r) {
  recordPassthroughOpen(tcp_, r);
}

void RequestTelemetry::onPassthroughClose(const PassthroughRecord& r) {
  recordPassthroughClose(tcp_, r);
}

void RequestTelemetry::writeMetrics(telemetry::PrometheusText& out) const {
  requests_.write(out);
  tcp_.write(out);
}

}  // namespace nodemesh::waypoint
