#include "agent/metrics/tcp_metrics.h"

#include "agent/metrics/connection_peers.h"
#include "telemetry/istio_labels.h"

namespace nodemesh::agent::metrics {

TcpLabels tcpLabels(const model::Snapshot* snapshot, const tunnel::ConnectionRecord& r,
                    bool closing) {
  ConnectionPeers peers;
  if (snapshot) peers = resolvePeers(*snapshot, r);
  const bool outbound = r.direction == tunnel::Direction::kOutbound;
  // HBONE's mutual TLS, or both pods on this node (the fast path): the same principals.
  const bool mtls = tunnel::identitiesProven(r.transport);
  telemetry::TcpLabelInput in;
  in.reporter = outbound ? "source" : "destination";
  in.source = telemetry::workloadLabels(peers.source);
  in.destination = telemetry::workloadLabels(peers.destination);
  // Principals are what mutual TLS proved (HBONE), unknown for plaintext.
  if (mtls) {
    in.source_principal = r.src_identity;
    in.destination_principal = r.dst_identity;
  }
  const model::Service* service = peers.service;
  if (!service && snapshot) service = telemetry::impliedService(*snapshot, peers.destination);
  in.service = telemetry::serviceLabels(service);
  if (closing && verdictOf(r).verdict == "deny") {
    in.response_flags = "DENY";
  } else if (closing && !r.error.empty() && r.bytes_to_dst == 0 && r.bytes_from_dst == 0) {
    in.response_flags = "CONNECT";
  }
  in.connection_security_policy = mtls ? "mutual_tls" : telemetry::kUnknown;
  return telemetry::makeTcpLabels(in);
}

}  // namespace nodemesh::agent::metrics
