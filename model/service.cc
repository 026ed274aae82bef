#include "model/service.h"

namespace nodemesh::model {

std::string_view toString(LoadBalancingScope scope) {
  switch (scope) {
    case LoadBalancingScope::Region:
      return "Region";
    case LoadBalancingScope::Zone:
      return "Zone";
    case LoadBalancingScope::Subzone:
      return "Subzone";
    case LoadBalancingScope::Node:
      return "Node";
    case LoadBalancingScope::Cluster:
      return "Cluster";
    case LoadBalancingScope::Network:
      return "Network";
  }
  return "unknown";
}

std::string_view toString(LoadBalancingMode mode) {
  switch (mode) {
    case LoadBalancingMode::UnspecifiedMode:
      return "Standard";
    case LoadBalancingMode::Strict:
      return "Strict";
    case LoadBalancingMode::Failover:
      return "Failover";
    case LoadBalancingMode::Passthrough:
      return "Passthrough";
  }
  return "unknown";
}

std::string_view toString(LoadBalancingHealthPolicy policy) {
  switch (policy) {
    case LoadBalancingHealthPolicy::OnlyHealthy:
      return "OnlyHealthy";
    case LoadBalancingHealthPolicy::AllowAll:
      return "AllowAll";
  }
  return "unknown";
}

std::string_view toString(IpFamilies families) {
  switch (families) {
    case IpFamilies::Automatic:
      return "Automatic";
    case IpFamilies::Ipv4Only:
      return "IPv4";
    case IpFamilies::Ipv6Only:
      return "IPv6";
    case IpFamilies::Dual:
      return "Dual";
  }
  return "unknown";
}

std::string_view toString(Visibility visibility) {
  switch (visibility) {
    case Visibility::Public:
      return "Public";
    case Visibility::Namespace:
      return "Namespace";
  }
  return "unknown";
}

}  // namespace nodemesh::model
