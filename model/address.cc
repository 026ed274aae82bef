#include "model/address.h"

#include <fmt/format.h>

namespace nodemesh::model {

// Messages are built with fmt: "'" + std::string(...) trips GCC 12's false -Wrestrict at -O3
// (PR 105329).

std::string NamespacedHostname::toString() const {
  return namespace_name + "/" + hostname;
}

Result<NamespacedHostname> NamespacedHostname::parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Error::invalid(fmt::format("'{}' is not of the form namespace/hostname", text));
  }
  return NamespacedHostname{std::string(text.substr(0, slash)),
                            std::string(text.substr(slash + 1))};
}

std::string NetworkAddress::toString() const {
  return network + "/" + address.toString();
}

Result<NetworkAddress> NetworkAddress::parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Error::invalid(fmt::format(
        "'{}' is not of the form network/IP (the network may be empty: '/{}')", text, text));
  }
  auto ip = IpAddress::parse(text.substr(slash + 1));
  if (!ip) {
    return Error::invalid(
        fmt::format("'{}' is not of the form network/IP: {}", text, ip.error().message));
  }
  return NetworkAddress{std::string(text.substr(0, slash)), *ip};
}

std::string NetworkCidr::toString() const {
  return fmt::format("{}/{}", network, cidr.toString());
}

Result<std::variant<NetworkAddress, NamespacedHostname>> GatewayAddress::parseDestination(
    std::string_view text) {
  if (auto address = NetworkAddress::parse(text)) {
    return std::variant<NetworkAddress, NamespacedHostname>(std::move(address).value());
  }
  auto host = NamespacedHostname::parse(text);
  if (!host) {
    return Error::invalid(fmt::format("'{}' is neither network/IP nor namespace/hostname", text));
  }
  return std::variant<NetworkAddress, NamespacedHostname>(std::move(host).value());
}

std::string GatewayAddress::toString() const {
  std::string where = std::visit([](const auto& d) { return d.toString(); }, destination);
  return where + ":" + std::to_string(hbone_mtls_port);
}

}  // namespace nodemesh::model
