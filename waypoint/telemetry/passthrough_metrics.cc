#include "waypoint/telemetry/passthrough_metrics.h"

#include <string>

#include "telemetry/istio_labels.h"

namespace nodemesh::waypoint {

telemetry::TcpLabels passthroughTcpLabels(const PassthroughRecord& r, bool closing) {
  telemetry::TcpLabelInput in;
  in.reporter = "waypoint";
  in.source = telemetry::workloadLabels(r.source_workload);
  in.source_principal = r.mutual_tls ? r.source_principal : telemetry::kUnknown;
  in.destination = telemetry::workloadLabels(r.destination_workload);
  in.destination_principal = r.destination_principal;
  in.service = telemetry::serviceLabels(r.destination_service);
  const std::string flags = closing ? r.response_flags.toString() : std::string("-");
  in.response_flags = flags;
  in.connection_security_policy = r.mutual_tls ? "mutual_tls" : "none";
  return telemetry::makeTcpLabels(in);
}

void recordPassthroughOpen(telemetry::TcpMetrics& metrics, const PassthroughRecord& r) {
  metrics.recordOpen(passthroughTcpLabels(r, false));
}

void recordPassthroughClose(telemetry::TcpMetrics& metrics, const PassthroughRecord& r) {
  metrics.recordClose(passthroughTcpLabels(r, true), r.bytes_from_client, r.bytes_to_client);
}

}  // namespace nodemesh::waypoint
