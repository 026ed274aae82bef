#pragma once

// A workload (a pod, VM or other endpoint) as Istio's workload API describes it
// (istio.workload.Workload; ztunnel's state::workload::Workload).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ip_address.h"
#include "model/address.h"

namespace nodemesh::model {

// How traffic reaches the workload: HBONE (the workload is in the mesh) or plain TCP.
enum class Protocol { Tcp, Hbone };
enum class NetworkMode { Standard, HostNetwork };
enum class HealthStatus { Healthy, Unhealthy };

std::string_view toString(Protocol protocol);    // "TCP", "HBONE" (the config spellings)
std::string_view toString(NetworkMode mode);     // "Standard", "HostNetwork"
std::string_view toString(HealthStatus status);  // "Healthy", "Unhealthy"

struct Locality {
  std::string region;
  std::string zone;
  std::string subzone;

  bool operator==(const Locality&) const = default;
};

// A workload that terminates a tunnel itself (for example a sidecar speaking PROXY protocol).
struct ApplicationTunnel {
  enum class Protocol { None, Proxy };
  Protocol protocol = Protocol::None;
  std::optional<uint16_t> port;

  bool operator==(const ApplicationTunnel&) const = default;
};

// Service port -> target port.
using PortMap = std::map<uint16_t, uint16_t>;

// The application protocol istiod detected for a port (istio.workload.AppProtocol). nodemesh
// does not act on it yet; it is kept for the config dump.
enum class AppProtocol { Unknown, Http11, Http2, Grpc, Tcp, Tls };
std::string_view toString(AppProtocol protocol);  // "UNKNOWN", "HTTP11", "HTTP2", "GRPC", ...
// Service port -> application protocol, listing only ports whose protocol is known.
using AppProtocolMap = std::map<uint16_t, AppProtocol>;

struct Workload {
  std::string uid;  // unique key, e.g. "cluster1//v1/Pod/shop/cart-v1-5c2a"
  std::string name;
  std::string namespace_name;
  std::string service_account = "default";
  std::string trust_domain = "cluster.local";
  std::vector<IpAddress> workload_ips;
  std::string hostname;  // for workloads reached by DNS name instead of an address
  std::string node;
  std::string network;
  std::string cluster_id;
  Protocol protocol = Protocol::Tcp;
  NetworkMode network_mode = NetworkMode::Standard;
  std::optional<GatewayAddress> waypoint;
  std::optional<GatewayAddress> network_gateway;
  bool native_tunnel = false;
  std::optional<ApplicationTunnel> application_tunnel;
  std::string canonical_name;
  std::string canonical_revision;
  std::string workload_name;
  std::string workload_type;
  Locality locality;
  HealthStatus status = HealthStatus::Healthy;
  // Keys ("namespace/name") of the WorkloadSelector policies that select this workload.
  std::vector<std::string> authorization_policies;
  // The services this workload backs: "namespace/hostname" -> port map.
  std::map<std::string, PortMap> services;
  // Per service key, the application protocol of each service port that has one (xDS only).
  std::map<std::string, AppProtocolMap> service_app_protocols;
  uint32_t capacity = 1;
  std::vector<Extension> extensions;

  // "spiffe://<trust domain>/ns/<namespace>/sa/<service account>".
  std::string identity() const;
  bool operator==(const Workload&) const = default;
};

}  // namespace nodemesh::model
