#pragma once

// Outbound: a connection an enrolled pod's application made, captured to the pod's 15001, is
// routed by its original destination (model::routeOutbound, the rule `nodemeshctl explain`
// applies too): a service VIP goes to the load balancer (ServiceDialer), a workload in the mesh
// gets an HBONE stream to its 15008 (or, with the same-node fast path and a pod of this node,
// is delivered in that pod directly), a destination with a waypoint an HBONE stream to the
// waypoint's 15008 asking for the original destination, anything else plain TCP.

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "common/fd.h"
#include "model/mesh.h"
#include "tunnel/hbone_pool.h"
#include "tunnel/inbound.h"
#include "tunnel/mesh_state.h"
#include "tunnel/relay_context.h"
#include "tunnel/service_dialer.h"
#include "tunnel/stream_bridge.h"
#include "tunnel/tcp_relay.h"

namespace nodemesh::tunnel {

class Outbound final : public ServiceDialer::Connector {
 public:
  Outbound(RelayContext ctx, const TunnelOptions& options, OrigDstResolver& resolver,
           const MeshState& mesh, TcpRelay& relay, StreamBridges& bridges, HbonePool* pool,
           ServiceDialer& dialer, PodListeners& pods, Inbound& inbound)
      : ctx_(ctx),
        options_(options),
        resolver_(resolver),
        mesh_(mesh),
        relay_(relay),
        bridges_(bridges),
        pool_(pool),
        dialer_(dialer),
        pods_(pods),
        inbound_(inbound) {}

  // A connection accepted on the pod's 15001.
  void accept(Pod& pod, UniqueFd fd);

  void relayTcp(Pod& pod, UniqueFd app, ConnectionRecord record,
                std::unique_ptr<ServiceTarget> target, bool count_opened) override;
  void relayHbone(Pod& pod, UniqueFd app, const SocketAddress& app_addr, const SocketAddress& dst,
                  const model::Workload& dst_workload,
                  std::unique_ptr<ServiceTarget> target) override;
  void refuse(Pod& pod, UniqueFd app, ConnectionRecord record, bool count_opened,
              const std::string& why) override;

 private:
  // One HBONE stream: CONNECT `authority` on a connection to `connect_to`, whose peer must
  // prove `peer`'s identity. `waypoint` ("namespace/name") when the peer is a waypoint.
  struct HboneHop {
    SocketAddress authority;
    SocketAddress connect_to;
    const model::Workload* peer = nullptr;
    std::string waypoint;
  };
  void relayToWaypoint(Pod& pod, UniqueFd app, const SocketAddress& app_addr,
                       const SocketAddress& dst, const model::OutboundDecision& route);
  void openStream(Pod& pod, UniqueFd app, const SocketAddress& app_addr, const HboneHop& hop,
                  std::unique_ptr<ServiceTarget> target);
  // The same-node fast path: `server` is enrolled on this node; no HBONE stream, the
  // connection is delivered in it as Inbound::deliverOnNode says.
  void deliverOnNode(Pod& pod, Pod& server, UniqueFd app, const SocketAddress& app_addr,
                     const HboneHop& hop, std::unique_ptr<ServiceTarget> target);
  // W3C trace context for a new connection: a new trace, sampled.
  std::string newTraceparent();
  // Who the client is, as ztunnel's baggage says it (W3C baggage, OpenTelemetry k8s names).
  std::string baggageFor(const Pod& pod) const;

  RelayContext ctx_;
  const TunnelOptions& options_;
  OrigDstResolver& resolver_;
  const MeshState& mesh_;
  TcpRelay& relay_;
  StreamBridges& bridges_;
  HbonePool* pool_;  // null without TLS: no pod has an identity then
  ServiceDialer& dialer_;
  PodListeners& pods_;
  Inbound& inbound_;                             // the same-node fast path delivers through it
  std::mt19937_64 rng_{std::random_device{}()};  // trace ids
};

}  // namespace nodemesh::tunnel
