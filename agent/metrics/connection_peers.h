#pragma once

// Who is on each end of a tunnel connection, as the config knows them: the workload behind the
// source and the destination, and the service when the destination address is a VIP. The
// access log and the Istio metrics label connections with these.

#include "model/service.h"
#include "model/snapshot.h"
#include "model/workload.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent::metrics {

struct ConnectionPeers {
  const model::Workload* source = nullptr;
  const model::Workload* destination = nullptr;
  const model::Service* service = nullptr;  // the destination address is this service's VIP
};

// Outbound: the source is the local pod (record.pod), the destination the workload or service
// at record.dst. Inbound: the destination is the local pod, the source the workload at
// record.src's address (the client pod for HBONE; whoever connected for plaintext).
// Pointers are valid while `snapshot` lives.
ConnectionPeers resolvePeers(const model::Snapshot& snapshot, const tunnel::ConnectionRecord& r);

// The authorization verdict of a finished connection as the access log and metrics report it.
// Inbound: the tunnel's own decision. Outbound: "deny" when the destination refused the HBONE
// CONNECT with 401, else none (the destination decides; its agent logs the verdict).
struct Verdict {
  std::string verdict;  // "allow", "deny", or "" (not decided here)
  std::string policy;   // the deciding policy, "" when none
  std::string reason;
};
Verdict verdictOf(const tunnel::ConnectionRecord& r);

// "namespace/name", or "-" for null.
std::string workloadKey(const model::Workload* w);

}  // namespace nodemesh::agent::metrics
