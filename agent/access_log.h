#pragma once

// The access log: one line per finished connection, on stdout, as text (the default) or JSON
// (--access-log-format json). The fields are the same in both; see docs/observability.md.
//
//   text: 2026-11-24T04:59:46.450Z access direction=outbound pod=shop/frontend-7d9f
//         src=127.0.0.1:40290 dst=10.244.2.20:8080 bytes_to_dst=16 bytes_from_dst=16
//         duration_ms=5 result=ok transport=hbone src_identity=spiffe://... dst_identity=...
//         src_workload=shop/frontend-7d9f dst_workload=shop/cart-v1-5c2a verdict=allow policy=-
//   json: {"time":"2026-...","direction":"outbound","pod":"shop/frontend-7d9f",...}

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "agent/metrics/connection_peers.h"
#include "agent/metrics/tcp_metrics.h"
#include "model/snapshot.h"
#include "telemetry/access_log_format.h"
#include "telemetry/access_log_writer.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent {

using telemetry::AccessLogFormat;

// One access log line (without the trailing newline).
std::string formatAccessLog(const tunnel::ConnectionRecord& r,
                            const metrics::ConnectionPeers& peers, AccessLogFormat format,
                            std::chrono::system_clock::time_point now);

// What the agent does with the tunnel's connection events: Istio metrics at open and close, and
// the access log line at close. Both hooks run on the tunnel's worker threads.
class ConnectionTelemetry {
 public:
  using Sink = std::function<void(const std::string& line)>;
  // Without a sink, lines go to stdout through an AccessLogWriter flushed every
  // `flush_interval` (0: a write per line); never interleaved.
  explicit ConnectionTelemetry(AccessLogFormat format, Sink sink = {},
                               std::chrono::milliseconds flush_interval = kAccessLogFlush);
  static constexpr std::chrono::milliseconds kAccessLogFlush{200};

  void setSnapshot(model::SnapshotPtr snapshot);
  void onOpen(const tunnel::ConnectionRecord& r);
  void onClose(const tunnel::ConnectionRecord& r);

  const metrics::TcpMetrics& tcpMetrics() const { return tcp_; }

 private:
  model::SnapshotPtr snapshot() const;

  AccessLogFormat format_;
  std::unique_ptr<telemetry::AccessLogWriter> writer_;  // without a sink of the caller's
  Sink sink_;
  mutable std::mutex mu_;
  model::SnapshotPtr snapshot_;
  metrics::TcpMetrics tcp_;
};

}  // namespace nodemesh::agent
