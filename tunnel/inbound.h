#pragma once

// Inbound delivery: connections to an enrolled pod, plaintext on its 15006 (steered there by
// sk_lookup, the original destination being the accepted socket's local address) or CONNECT
// streams on its 15008, are authorized and then delivered to the application from inside the
// pod, from the client's address (IP_TRANSPARENT; docs/capture.md).

#include <string>

#include "common/fd.h"
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
          InboundAuthorizer& authorizer)
      : ctx_(ctx), options_(options), relay_(relay), bridges_(bridges), authorizer_(authorizer) {}

  // A plaintext connection accepted on the pod's 15006.
  void acceptPlaintext(Pod& pod, UniqueFd fd);
  // A CONNECT request on a connection accepted on a pod's 15008.
  void onConnectRequest(HboneConnection& conn, hbone::StreamId stream,
                        const hbone::ConnectRequest& request) override;

 private:
  // Ports of the tunnel's own listeners: never a delivery target.
  bool tunnelPort(uint16_t port) const;

  RelayContext ctx_;
  const TunnelOptions& options_;
  TcpRelay& relay_;
  StreamBridges& bridges_;
  InboundAuthorizer& authorizer_;
};

}  // namespace nodemesh::tunnel
