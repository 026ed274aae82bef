#pragma once

// Small value types shared by workloads and services, shaped like Istio's workload API
// (istio.workload.NetworkAddress, NamespacedHostname, GatewayAddress).

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "common/ip_address.h"
#include "common/result.h"

namespace nodemesh::model {

// The key of a service: "namespace/hostname".
struct NamespacedHostname {
  std::string namespace_name;
  std::string hostname;

  std::string toString() const;  // "shop/cart.shop.svc.cluster.local"
  // Splits at the first '/', as ztunnel does; fails when there is no '/'.
  static Result<NamespacedHostname> parse(std::string_view text);
  auto operator<=>(const NamespacedHostname&) const = default;
};

// An IP address qualified by its network, written "network/ip"; the network may be empty
// ("/10.96.0.20"), meaning the default network.
struct NetworkAddress {
  std::string network;
  IpAddress address;

  std::string toString() const;
  // Splits at the first '/'; the rest must be an IP address.
  static Result<NetworkAddress> parse(std::string_view text);
  // clang-tidy 14 reads the 0 a defaulted <=> compares with as a null pointer (see IpAddress).
  // NOLINTNEXTLINE(modernize-use-nullptr)
  auto operator<=>(const NetworkAddress&) const = default;
};

// A range of addresses qualified by its network: a CIDR VIP of a service ("network/10.96.0.0/16",
// ztunnel's NetworkCidr). The prefix length counts on the 128-bit form (see common/ip_address.h).
struct NetworkCidr {
  std::string network;
  Cidr cidr;

  std::string toString() const;  // "net1/10.96.0.0/16", "/fd00::/64"
  // clang-tidy 14 reads the 0 a defaulted <=> compares with as a null pointer (see IpAddress).
  // NOLINTNEXTLINE(modernize-use-nullptr)
  auto operator<=>(const NetworkCidr&) const = default;
};

// An opaque extension istiod may attach to a resource (istio.workload.Extension): a name and a
// google.protobuf.Any. nodemesh does not interpret any extension; it keeps them so they show in
// the config dump.
struct Extension {
  std::string name;
  std::string type_url;  // the Any's type, "type.googleapis.com/..."; empty when it had none
  std::string value;     // the Any's serialized bytes

  bool operator==(const Extension&) const = default;
};

// Where a waypoint or network gateway is: an address or a service hostname, plus the port that
// accepts HBONE (mTLS) there.
struct GatewayAddress {
  std::variant<NetworkAddress, NamespacedHostname> destination;
  uint16_t hbone_mtls_port = 15008;

  // "network/ip" is read as an address when the part after the first '/' is an IP address,
  // otherwise as "namespace/hostname" (ztunnel's untagged enum tries the address first).
  static Result<std::variant<NetworkAddress, NamespacedHostname>> parseDestination(
      std::string_view text);

  std::string toString() const;  // "/10.0.0.9:15008", "shop/waypoint.shop.svc.cluster.local:15008"
  bool operator==(const GatewayAddress&) const = default;
};

}  // namespace nodemesh::model
