#pragma once

// Inbound delivery: connections to an enrolled pod, plaintext on its 15006 (steered there by
// sk_lookup, the original destination being the accepted socket's local address) or CONNECT
// streams on its 15008, are authorized and then delivered to the application from inside the
// pod, from the client's address (IP_TRANSPARENT; docs/capture.md).

#include <chrono>
#include <optional>
#include <string>

#include "common/fd.h"
#include "tunnel/connection_limits.h"
#include "tunnel/hbone_pool.h"
#include "tunnel/inbound_authorizer.h"
#include "tunnel/relay_context.h"
#include "tunnel/stream_bridge.h"
#include "tunnel/tcp_relay.h"

namespace nodemesh::tunnel {

struct Pod;

class Inbound final : public InboundStreams {
 public:
  Inbound(RelayContext ctx, const TunnelOptions& options, TcpRelay& relay, StreamBridges& bridges,
          InboundAuthorizer& authorizer, ConnectionLimits* limits)
      : ctx_(ctx),
        options_(options),
        relay_(relay),
        bridges_(bridges),
        authorizer_(authorizer),
        limits_(limits) {}

  // A plaintext connection accepted on the pod's 15006.
  void acceptPlaintext(Pod& pod, UniqueFd fd);
  // The same-node fast path: `c`, an outbound connection of a pod of this node to `server`
  // (c->record.dst), is checked as a CONNECT from `client` with c->record.src_identity would
  // be (the target port, the server's policy and caps), gets the server's inbound record
  // (c->delivery) and is connected in the server pod from the client's address. A refusal
  // resets the client's connection.
  void deliverOnNode(TcpConnection* c, Pod& server, const SocketAddress& client);
  // A CONNECT request on a connection accepted on a pod's 15008.
  void onConnectRequest(HboneConnection& conn, hbone::StreamId stream,
                        const hbone::ConnectRequest& request) override;

 private:
  // Ports of the tunnel's own listeners: never a delivery target.
  bool tunnelPort(uint16_t port) const;
  // The pod's caps (connection_limits.h): on admission `slot` holds the connection's place;
  // a refusal is counted, logged at most once per kRefusalLogInterval per worker, and its
  // words returned for the access log.
  std::optional<std::string> admit(Pod& pod, ConnectionSlot* slot);

  RelayContext ctx_;
  const TunnelOptions& options_;
  TcpRelay& relay_;
  StreamBridges& bridges_;
  InboundAuthorizer& authorizer_;
  ConnectionLimits* limits_;  // null: no caps
  // Refusals are logged in summary: a flood over a cap must not become a flood of log lines.
  static constexpr std::chrono::seconds kRefusalLogInterval{10};
  Clock::time_point next_refusal_log_{};
  uint64_t refusals_unlogged_ = 0;
};

}  // namespace nodemesh::tunnel
