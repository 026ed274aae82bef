#pragma once

// Inbound authorization: every connection to an enrolled pod (plaintext on 15006, HBONE on
// 15008) is checked against the policies in force before anything reaches the application,
// and a policy change closes the open connections the new policies deny.

#include <string>

#include "tunnel/mesh_state.h"
#include "tunnel/tunnel.h"
#include "tunnel/tunnel_stats.h"

namespace nodemesh::tunnel {

class TcpRelay;
class StreamBridges;

class InboundAuthorizer {
 public:
  InboundAuthorizer(const MeshState& mesh, TunnelCounters& counters)
      : mesh_(mesh), counters_(counters) {}

  // A connection to `r.dst` from `r.src` whose client proved `peer_identity` (empty for a
  // plaintext client): fills the record's verdict (denied, policy, reason) and returns whether
  // it may proceed. Counts denials; logs what dry-run policies would have decided.
  bool authorize(ConnectionRecord& r, const std::string& peer_identity);

  // After a policy change: closes the open inbound connections the new policies deny (counted
  // as closed_by_policy instead of denied).
  void revokeDenied(TcpRelay& relay, StreamBridges& bridges);

 private:
  // The verdict for `r` without counting it; false when denied.
  bool check(ConnectionRecord& r, const std::string& peer_identity);

  const MeshState& mesh_;
  TunnelCounters& counters_;
};

}  // namespace nodemesh::tunnel
