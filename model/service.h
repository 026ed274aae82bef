#pragma once

// A service (a set of VIPs and ports in front of workloads) as Istio's workload API describes it
// (istio.workload.Service; ztunnel's state::service::Service).

#include <string>
#include <string_view>
#include <vector>

#include "model/address.h"
#include "model/workload.h"

namespace nodemesh::model {

// Locality levels that load balancing can prefer to match between client and endpoint.
enum class LoadBalancingScope { Region, Zone, Subzone, Node, Cluster, Network };
// UnspecifiedMode ignores routing preferences (ztunnel spells it "Standard"); Strict only uses
// endpoints that match all of them; Failover prefers those that match most; Passthrough sends
// traffic to the original destination address without picking an endpoint.
enum class LoadBalancingMode { UnspecifiedMode, Strict, Failover, Passthrough };
enum class LoadBalancingHealthPolicy { OnlyHealthy, AllowAll };
enum class IpFamilies { Automatic, Ipv4Only, Ipv6Only, Dual };
// Which clients may resolve and route to a service: every client (Public, the default), or only
// clients in the service's namespace.
enum class Visibility { Public, Namespace };

std::string_view toString(LoadBalancingScope scope);
std::string_view toString(LoadBalancingMode mode);
std::string_view toString(LoadBalancingHealthPolicy policy);
std::string_view toString(IpFamilies families);
std::string_view toString(Visibility visibility);  // "Public", "Namespace"

struct LoadBalancing {
  std::vector<LoadBalancingScope> routing_preference;
  LoadBalancingMode mode = LoadBalancingMode::UnspecifiedMode;
  LoadBalancingHealthPolicy health_policy = LoadBalancingHealthPolicy::OnlyHealthy;

  bool operator==(const LoadBalancing&) const = default;
};

// One backend of a service: a workload and the ports it serves the service on.
struct Endpoint {
  std::string workload_uid;
  PortMap ports;  // service port -> target port on the workload
  HealthStatus status = HealthStatus::Healthy;

  bool operator==(const Endpoint&) const = default;
};

// A candidate waypoint and its relative weight: clients pick one per connection in proportion
// to the weights (a canary between waypoints). When a service has none, `waypoint` applies.
struct WeightedWaypoint {
  GatewayAddress destination;
  uint32_t weight = 0;

  bool operator==(const WeightedWaypoint&) const = default;
};

struct Service {
  std::string name;
  std::string namespace_name;
  std::string hostname;
  std::vector<NetworkAddress> vips;
  // VIPs that are whole ranges (a ServiceEntry with CIDR addresses); an exact VIP wins over them.
  std::vector<NetworkCidr> cidr_vips;
  // Service port -> target port. A target port of 0 means "the endpoint says" (a named target
  // port that each workload resolves differently).
  PortMap ports;
  // The application protocol of each service port that has one (xDS only).
  AppProtocolMap app_protocols;
  std::vector<std::string> subject_alt_names;
  std::optional<GatewayAddress> waypoint;
  std::vector<WeightedWaypoint> weighted_waypoints;
  std::optional<LoadBalancing> load_balancing;
  IpFamilies ip_families = IpFamilies::Automatic;
  // Preferred when several services share a VIP (after the client's own namespace).
  bool canonical = false;
  // Traffic entering the mesh through an ingress gateway also goes through the waypoint.
  bool ingress_use_waypoint = false;
  Visibility visibility = Visibility::Public;
  std::vector<Extension> extensions;
  // Endpoints given with the service itself. Workloads that list the service in their
  // `services` add more; Snapshot::endpoints() merges both.
  std::vector<Endpoint> endpoints;

  // "namespace/hostname", the service's key.
  std::string key() const { return namespace_name + "/" + hostname; }
  bool operator==(const Service&) const = default;
};

}  // namespace nodemesh::model
