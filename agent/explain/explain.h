#pragma once

// `nodemeshctl explain SRC DST:PORT`: the whole story of a would-be connection, computed from
// the config and this node's capture state, without sending a packet:
//   1. outbound capture at the source: captured or not, and why (the capture programs'
//      reason names: out_captured, out_skip_excluded, out_skip_loopback, or why the source is
//      not enrolled);
//   2. the destination: a workload, a service VIP (port mapping and every endpoint), or an
//      address outside the mesh;
//   2b. a destination with a waypoint: the waypoint's instances instead of the endpoints;
//   3. per destination (path): how the connection travels (HBONE, within this node by the
//      same-node fast path, plain TCP from the tunnel, or passthrough when nothing captured it),
//      inbound capture at the destination (15008, 15006, the agent itself, or none), and the
//      authorization verdict with the deciding policy and rule.
// Served by the admin API (/explain?src=IP&dst=IP:PORT). What only another node's agent knows
// (its enrolled pods and exclusions) is assumed from the config and flagged `observed: false`.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/explain/policy_check.h"
#include "common/ip_address.h"
#include "model/snapshot.h"

namespace nodemesh::agent::explain {

struct EnrolledPodView {
  std::string workload_uid;
  std::string name;  // "namespace/name"
  std::string netns;
  uint64_t netns_cookie = 0;
};

// This node's capture configuration and state.
struct CaptureView {
  std::string node;
  std::vector<uint16_t> exclude_outbound_ports;
  std::vector<uint16_t> exclude_inbound_ports;
  std::vector<Cidr> exclude_cidrs;
  std::vector<EnrolledPodView> enrolled;
  // The same-node fast path (tunnel::TunnelOptions): a captured connection between two pods
  // enrolled on this node, with no waypoint, is joined by the agent itself instead of HBONE.
  bool same_node_fast_path = true;
};

struct WorkloadRef {
  std::string key;  // "namespace/name"
  std::string uid;
  std::string node;
  std::string protocol;  // "HBONE", "TCP"
  std::string identity;  // SPIFFE ID
};

struct Capture {
  bool captured = false;
  std::string reason;  // out_captured, out_skip_excluded, out_skip_loopback, not_enrolled,
                       // source_not_in_mesh, host_network
  std::string detail;
  bool observed = true;  // decided from this node's own state (false: another node's agent)
};

struct Inbound {
  bool captured = false;
  uint16_t listener = 0;  // 15008 (HBONE), 15006 (plaintext), 0 (not captured, or same_node)
  std::string reason;     // in_hbone_steered, in_steered, same_node, in_skip_excluded,
                          // not_in_mesh, not_enrolled
  std::string detail;
  bool observed = true;
};

struct Path {
  std::optional<WorkloadRef> endpoint;  // null: an address outside the config
  SocketAddress address;                // where the connection is delivered
  std::string transport;                // "hbone", "local" (same node), "tcp", "passthrough"
  std::string transport_detail;
  Inbound inbound;
  bool policy_enforced = false;
  std::optional<std::string> source_identity;  // what the destination can verify
  std::vector<std::string> applicable_policies;
  PolicyVerdict verdict;  // allowed=true when not enforced
  std::string skipped;    // non-empty: the endpoint is not used, and why
};

struct ServiceRef {
  std::string key;  // "namespace/hostname"
  std::string name;
  std::string namespace_name;
  std::string hostname;
  uint16_t port = 0;
  std::optional<uint16_t> target_port;  // nullopt: the port is not one of the service's
};

struct Explanation {
  IpAddress src;
  SocketAddress dst;
  std::string node;
  std::optional<WorkloadRef> source;
  std::optional<std::string> source_netns;  // enrolled on this node
  Capture capture;
  std::optional<ServiceRef> service;
  // The destination's waypoint (its GatewayAddress), when the connection is sent to one: then
  // `paths` are the waypoint's instances, and `waypoint_error` says why there are none.
  std::optional<std::string> waypoint;
  std::string waypoint_error;
  std::vector<Path> paths;
  // "allow" (every used path allowed), "deny" (every used path denied), "mixed", or
  // "no_endpoint" (a service with nothing to send to).
  std::string verdict;
  std::vector<std::string> story;  // one sentence per step, for humans
};

Explanation explainConnection(const model::Snapshot& snapshot, const CaptureView& view,
                              const PolicyChecker& policies, const IpAddress& src,
                              const SocketAddress& dst);

nlohmann::json toJson(const Explanation& e);

}  // namespace nodemesh::agent::explain
