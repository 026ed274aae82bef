#pragma once

// Istio's TCP metrics for connections the waypoint passes through without parsing HTTP (a
// service port that is not HTTP), with reporter="waypoint": the series and their rendering are
// the node agent's (telemetry/tcp_metrics.h); this file only labels a waypoint connection.

#include <cstdint>
#include <string_view>

#include "model/service.h"
#include "model/workload.h"
#include "telemetry/tcp_metrics.h"
#include "waypoint/telemetry/response_flags.h"

namespace nodemesh::waypoint {

// One passthrough connection. Pointers and views as in RequestRecord: valid during the call.
struct PassthroughRecord {
  const model::Workload* source_workload = nullptr;
  std::string_view source_principal;  // what the client's certificate proved
  bool mutual_tls = true;             // arrived over HBONE
  const model::Service* destination_service = nullptr;
  const model::Workload* destination_workload = nullptr;  // the endpoint it was relayed to
  std::string_view destination_principal;
  uint64_t bytes_from_client = 0;  // istio_tcp_received_bytes_total
  uint64_t bytes_to_client = 0;    // istio_tcp_sent_bytes_total
  ResponseFlags response_flags;    // why it ended early (UF, UH, DC, ...); only at close
};

// `closing` selects response_flags: always "-" while open, the record's flags when closed (as
// Envoy's tcp_proxy reports them).
telemetry::TcpLabels passthroughTcpLabels(const PassthroughRecord& r, bool closing);

// The calls the waypoint makes when a passthrough connection opens and closes.
void recordPassthroughOpen(telemetry::TcpMetrics& metrics, const PassthroughRecord& r);
void recordPassthroughClose(telemetry::TcpMetrics& metrics, const PassthroughRecord& r);

}  // namespace nodemesh::waypoint
