#include "agent/access_log.h"

#include <unistd.h>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "telemetry/access_log_format.h"

namespace nodemesh::agent {

std::string formatAccessLog(const tunnel::ConnectionRecord& r,
                            const metrics::ConnectionPeers& peers, AccessLogFormat format,
                            std::chrono::system_clock::time_point now) {
  const char* direction = r.direction == tunnel::Direction::kOutbound ? "outbound" : "inbound";
  const bool proven = tunnel::identitiesProven(r.transport);
  const char* transport = tunnel::transportName(r.transport);
  const std::string src_workload = metrics::workloadKey(peers.source);
  const std::string dst_workload = metrics::workloadKey(peers.destination);
  const metrics::Verdict verdict = metrics::verdictOf(r);
  if (format == AccessLogFormat::kJson) {
    nlohmann::ordered_json j = {
        {"time", telemetry::logTimestamp(now)},
        {"direction", direction},
        {"pod", r.pod},
        {"src", r.src.toString()},
        {"dst", r.dst.toString()},
        {"src_workload", peers.source ? src_workload : ""},
        {"dst_workload", peers.destination ? dst_workload : ""},
        {"src_identity", r.src_identity},
        {"dst_identity", r.dst_identity},
        {"transport", transport},
        {"bytes_to_dst", r.bytes_to_dst},
        {"bytes_from_dst", r.bytes_from_dst},
        {"duration_ms", r.duration.count()},
        {"result", r.error.empty() ? "ok" : "error"},
        {"error", r.error},
        {"verdict", verdict.verdict.empty() ? nlohmann::ordered_json(nullptr)
                                            : nlohmann::ordered_json(verdict.verdict)},
        {"policy", verdict.policy},
        {"reason", verdict.reason},
        {"dst_service", r.dst_service},
        {"service_addr", r.service_addr ? r.service_addr->toString() : ""},
        {"attempts", r.attempts},
        {"waypoint", r.waypoint},
    };
    // Replacement of invalid UTF-8: an error text can quote anything.
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }
  std::string line = fmt::format(
      "{} access direction={} pod={} src={} dst={} bytes_to_dst={} bytes_from_dst={} "
      "duration_ms={} result={} transport={}",
      telemetry::logTimestamp(now), direction, r.pod, r.src.toString(), r.dst.toString(),
      r.bytes_to_dst, r.bytes_from_dst, r.duration.count(),
      r.error.empty() ? "ok" : "\"" + r.error + "\"", transport);
  if (proven) {
    line += fmt::format(" src_identity={} dst_identity={}", telemetry::logTextValue(r.src_identity),
                        telemetry::logTextValue(r.dst_identity));
  }
  // A service connection, as the tunnel reports it (docs/agent.md).
  if (!r.dst_service.empty()) {
    line += fmt::format(" service={} service_addr={} attempts={}", r.dst_service,
                        r.service_addr ? r.service_addr->toString() : "-", r.attempts);
  }
  if (!r.waypoint.empty()) line += " waypoint=" + r.waypoint;
  line += fmt::format(" src_workload={} dst_workload={}", src_workload, dst_workload);
  if (!verdict.verdict.empty()) {
    line += fmt::format(" verdict={} policy={}", verdict.verdict,
                        telemetry::logTextValue(verdict.policy));
    if (verdict.verdict == "deny" && !verdict.reason.empty()) {
      line += " reason=" + telemetry::logTextValue(verdict.reason);
    }
  }
  return line;
}

ConnectionTelemetry::ConnectionTelemetry(AccessLogFormat format, Sink sink,
                                         std::chrono::milliseconds flush_interval)
    : format_(format), sink_(std::move(sink)) {
  if (!sink_) {
    telemetry::AccessLogWriterOptions options;
    options.flush_interval = flush_interval;
    writer_ = std::make_unique<telemetry::AccessLogWriter>(STDOUT_FILENO, options);
    sink_ = [writer = writer_.get()](const std::string& line) { writer->write(line); };
  }
}

void ConnectionTelemetry::setSnapshot(model::SnapshotPtr snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_ = std::move(snapshot);
}

model::SnapshotPtr ConnectionTelemetry::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

void ConnectionTelemetry::onOpen(const tunnel::ConnectionRecord& r) {
  auto snap = snapshot();
  tcp_.recordOpen(metrics::tcpLabels(snap.get(), r, false));
}

void ConnectionTelemetry::onClose(const tunnel::ConnectionRecord& r) {
  auto snap = snapshot();
  tcp_.recordClose(metrics::tcpLabels(snap.get(), r, true), r.bytes_to_dst, r.bytes_from_dst);
  metrics::ConnectionPeers peers;
  if (snap) peers = metrics::resolvePeers(*snap, r);
  sink_(formatAccessLog(r, peers, format_, std::chrono::system_clock::now()));
}

}  // namespace nodemesh::agent
