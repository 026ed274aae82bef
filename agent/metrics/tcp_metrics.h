#pragma once

// The node agent's Istio TCP metrics: the labels of a tunnel connection as ztunnel reports them
// (reporter="source" for outbound, "destination" for inbound). The series themselves, their
// storage and rendering live in telemetry/tcp_metrics.h, shared with the waypoint.

#include "model/snapshot.h"
#include "telemetry/tcp_metrics.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent::metrics {

using telemetry::kTcpLabelNames;
using telemetry::TcpLabels;
using telemetry::TcpMetrics;

// The labels of a connection. `closing` selects response_flags: "-" while open; when closed
// "DENY" (denied by policy), "CONNECT" (failed before a byte was relayed), else "-".
TcpLabels tcpLabels(const model::Snapshot* snapshot, const tunnel::ConnectionRecord& r,
                    bool closing);

}  // namespace nodemesh::agent::metrics
