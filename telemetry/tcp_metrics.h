#pragma once

// Istio's TCP metrics, with Istio's names and labels, so that existing dashboards (Kiali, the
// Istio Grafana dashboards) read nodemesh as they read ztunnel and Istio's waypoints:
//   istio_tcp_connections_opened_total   when a connection's peers are known
//   istio_tcp_connections_closed_total   when it finished
//   istio_tcp_received_bytes_total       bytes from the client to the destination (request)
//   istio_tcp_sent_bytes_total           bytes from the destination to the client (response)
// Bytes are added when the connection closes, as ztunnel does. The node agent reports with
// reporter="source"/"destination", the waypoint's passthrough connections with "waypoint"; each
// builds the labels from its own connection record (makeTcpLabels) and records them here.
//
// Recording runs on data-path threads: labels and key are built before the mutex is taken,
// which then covers one hash-map update (no I/O, no formatting). A scrape copies (shared label
// pointer, four counters) per series under the same mutex and sorts and formats outside it, so
// a slow scraper never holds a worker for more than that copy.

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "telemetry/istio_labels.h"
#include "telemetry/prometheus_text.h"

namespace nodemesh::telemetry {

// Label names in ztunnel's order.
inline constexpr std::array<std::string_view, 23> kTcpLabelNames = {
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_service",
    "destination_service_namespace",
    "destination_service_name",
    "destination_workload",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_cluster",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
};

using TcpLabels = std::array<std::string, kTcpLabelNames.size()>;

// Everything a TCP series is labelled with; request_protocol is always "tcp".
struct TcpLabelInput {
  std::string_view reporter;
  WorkloadLabels source;
  std::string_view source_principal = kUnknown;
  WorkloadLabels destination;
  std::string_view destination_principal = kUnknown;
  ServiceLabels service;
  std::string_view response_flags = "-";
  std::string_view connection_security_policy = kUnknown;
};
TcpLabels makeTcpLabels(const TcpLabelInput& in);

class TcpMetrics {
 public:
  void recordOpen(TcpLabels labels);
  // received: client -> destination; sent: destination -> client.
  void recordClose(TcpLabels labels, uint64_t received_bytes, uint64_t sent_bytes);

  struct Series {
    // Immutable once made and shared with every copy: a scrape copies pointers and four
    // counters per series under the mutex, never the 23 label strings.
    std::shared_ptr<const TcpLabels> labels;
    uint64_t opened = 0;
    uint64_t closed = 0;
    uint64_t received_bytes = 0;  // to the destination
    uint64_t sent_bytes = 0;      // from the destination
  };
  // A copy, sorted by labels.
  std::vector<Series> series() const;
  // The four families.
  void write(PrometheusText& out) const;

 private:
  Series& slot(std::string key, TcpLabels labels);  // mu_ held

  mutable std::mutex mu_;
  std::unordered_map<std::string, Series> series_;
};

}  // namespace nodemesh::telemetry
