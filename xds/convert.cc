// istiod's resources -> the model. Each rule follows ztunnel's TryFrom impls
// (src/state/workload.rs, src/state/service.rs, src/rbac.rs), with two deliberate differences that
// make a resource fail (and be NACKed) where ztunnel would silently narrow or widen it:
//   - a port above 65535 is an error (ztunnel truncates it to 16 bits, which names another port);
//   - in a policy match, an address that is not 4 or 16 bytes, a prefix length beyond the
//     address, or a StringMatch without a kind is an error (ztunnel drops the value, and dropping
//     the only value of a field removes that condition from the match: an ALLOW policy would
//     then allow more).

#include "xds/convert.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <array>
#include <cstring>
#include <string_view>
#include <utility>

#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"

namespace nodemesh::xds {
namespace {

namespace pb = istio::workload;
namespace pbsec = istio::security;

// Errors say "<kind> <name>: <field path>: <reason>"; the resource prefix is added once, at the
// top, so the helpers only know the field path.
Error fieldError(std::string_view field, std::string_view reason) {
  return Error::invalid(fmt::format("{}: {}", field, reason));
}

Error withResource(std::string_view kind, std::string_view name, const Error& error) {
  return Error{error.code, fmt::format("{} {}: {}", kind, name, error.message)};
}

// Addresses on the wire are raw bytes in network order: 4 for IPv4, 16 for IPv6.
Result<IpAddress> toIp(const std::string& bytes, std::string_view field) {
  if (bytes.size() == 4) {
    in_addr v4{};
    std::memcpy(&v4.s_addr, bytes.data(), 4);
    return IpAddress::fromV4(v4);
  }
  if (bytes.size() == 16) {
    std::array<uint8_t, 16> v6{};
    std::memcpy(v6.data(), bytes.data(), 16);
    return IpAddress::fromBytes(v6);
  }
  return fieldError(field, fmt::format("{} bytes, want 4 or 16", bytes.size()));
}

Result<uint16_t> toPort(uint32_t value, std::string_view field) {
  if (value > 65535) return fieldError(field, fmt::format("port {} is above 65535", value));
  return static_cast<uint16_t>(value);
}

Result<model::AppProtocol> toAppProtocol(int value, std::string_view field) {
  switch (value) {
    case pb::UNKNOWN:
      return model::AppProtocol::Unknown;
    case pb::HTTP11:
      return model::AppProtocol::Http11;
    case pb::HTTP2:
      return model::AppProtocol::Http2;
    case pb::GRPC:
      return model::AppProtocol::Grpc;
    case pb::TCP:
      return model::AppProtocol::Tcp;
    case pb::TLS:
      return model::AppProtocol::Tls;
    default:
      return fieldError(field, fmt::format("unknown value {}", value));
  }
}

// The application protocols of a PortList, ports with UNKNOWN left out.
Result<model::AppProtocolMap> toAppProtocols(
    const google::protobuf::RepeatedPtrField<pb::Port>& ports, std::string_view field) {
  model::AppProtocolMap out;
  for (int i = 0; i < ports.size(); ++i) {
    auto protocol = toAppProtocol(static_cast<int>(ports.Get(i).app_protocol()),
                                  fmt::format("{}[{}].app_protocol", field, i));
    if (!protocol) return protocol.error();
    // toPortMap already refused ports above 65535.
    if (*protocol != model::AppProtocol::Unknown) {
      out[static_cast<uint16_t>(ports.Get(i).service_port())] = *protocol;
    }
  }
  return out;
}

std::vector<model::Extension> toExtensions(
    const google::protobuf::RepeatedPtrField<pb::Extension>& in) {
  std::vector<model::Extension> out;
  for (const pb::Extension& e : in) {
    out.push_back(model::Extension{e.name(), e.config().type_url(), e.config().value()});
  }
  return out;
}

// A PortList -> service port -> target port. A target port of 0 means "the endpoint says" (a
// named target port). The same service port listed twice with different targets is ambiguous.
Result<model::PortMap> toPortMap(const google::protobuf::RepeatedPtrField<pb::Port>& ports,
                                 std::string_view field) {
  model::PortMap out;
  for (int i = 0; i < ports.size(); ++i) {
    const pb::Port& port = ports.Get(i);
    auto service_port = toPort(port.service_port(), fmt::format("{}[{}].service_port", field, i));
    if (!service_port) return service_port.error();
    auto target_port = toPort(port.target_port(), fmt::format("{}[{}].target_port", field, i));
    if (!target_port) return target_port.error();
    auto [it, inserted] = out.emplace(*service_port, *target_port);
    if (!inserted && it->second != *target_port) {
      return fieldError(fmt::format("{}[{}]", field, i),
                        fmt::format("service port {} is listed twice, with target ports {} and {}",
                                    *service_port, it->second, *target_port));
    }
  }
  return out;
}

Result<model::NetworkAddress> toNetworkAddress(const pb::NetworkAddress& address,
                                               std::string_view field) {
  auto ip = toIp(address.address(), fmt::format("{}.address", field));
  if (!ip) return ip.error();
  return model::NetworkAddress{address.network(), *ip};
}

Result<model::GatewayAddress> toGateway(const pb::GatewayAddress& gateway, std::string_view field) {
  model::GatewayAddress out;
  switch (gateway.destination_case()) {
    case pb::GatewayAddress::kAddress: {
      auto address = toNetworkAddress(gateway.address(), fmt::format("{}.address", field));
      if (!address) return address.error();
      out.destination = std::move(address).value();
      break;
    }
    case pb::GatewayAddress::kHostname:
      if (gateway.hostname().hostname().empty()) {
        return fieldError(fmt::format("{}.hostname.hostname", field), "empty");
      }
      out.destination =
          model::NamespacedHostname{gateway.hostname().namespace_(), gateway.hostname().hostname()};
      break;
    case pb::GatewayAddress::DESTINATION_NOT_SET:
      return fieldError(field, "neither address nor hostname is set");
  }
  auto port = toPort(gateway.hbone_mtls_port(), fmt::format("{}.hbone_mtls_port", field));
  if (!port) return port.error();
  if (*port == 0) return fieldError(fmt::format("{}.hbone_mtls_port", field), "not set (0)");
  out.hbone_mtls_port = *port;
  return out;
}

// ztunnel's workload_type is the enum's name in lower case.
Result<std::string> toWorkloadType(int type) {
  switch (type) {
    case pb::DEPLOYMENT:
      return std::string("deployment");
    case pb::CRONJOB:
      return std::string("cronjob");
    case pb::POD:
      return std::string("pod");
    case pb::JOB:
      return std::string("job");
    default:
      return fieldError("workload_type", fmt::format("unknown value {}", type));
  }
}

Result<model::Workload> convertWorkload(const pb::Workload& in) {
  model::Workload w;
  if (in.uid().empty()) return fieldError("uid", "required (the workload's unique key)");
  w.uid = in.uid();
  w.name = in.name();
  w.namespace_name = in.namespace_();
  if (!in.service_account().empty()) w.service_account = in.service_account();
  if (!in.trust_domain().empty()) w.trust_domain = in.trust_domain();
  for (int i = 0; i < in.addresses_size(); ++i) {
    auto ip = toIp(in.addresses(i), fmt::format("addresses[{}]", i));
    if (!ip) return ip.error();
    w.workload_ips.push_back(*ip);
  }
  w.hostname = in.hostname();
  w.node = in.node();
  w.network = in.network();
  // As ztunnel: an empty cluster id is Kubernetes' default cluster name.
  w.cluster_id = in.cluster_id().empty() ? "Kubernetes" : in.cluster_id();

  switch (static_cast<int>(in.tunnel_protocol())) {
    case pb::HBONE:
      w.protocol = model::Protocol::Hbone;
      break;
    case pb::NONE:
      w.protocol = model::Protocol::Tcp;
      break;
    case pb::LEGACY_ISTIO_MTLS:
      return fieldError("tunnel_protocol", "LEGACY_ISTIO_MTLS is not supported");
    default:
      return fieldError("tunnel_protocol",
                        fmt::format("unknown value {}", static_cast<int>(in.tunnel_protocol())));
  }
  switch (static_cast<int>(in.network_mode())) {
    case pb::STANDARD:
      w.network_mode = model::NetworkMode::Standard;
      break;
    case pb::HOST_NETWORK:
      w.network_mode = model::NetworkMode::HostNetwork;
      break;
    default:
      return fieldError("network_mode",
                        fmt::format("unknown value {}", static_cast<int>(in.network_mode())));
  }
  switch (static_cast<int>(in.status())) {
    case pb::HEALTHY:
      w.status = model::HealthStatus::Healthy;
      break;
    case pb::UNHEALTHY:
      w.status = model::HealthStatus::Unhealthy;
      break;
    default:
      return fieldError("status", fmt::format("unknown value {}", static_cast<int>(in.status())));
  }

  if (in.has_waypoint()) {
    auto gw = toGateway(in.waypoint(), "waypoint");
    if (!gw) return gw.error();
    w.waypoint = std::move(gw).value();
  }
  if (in.has_network_gateway()) {
    auto gw = toGateway(in.network_gateway(), "network_gateway");
    if (!gw) return gw.error();
    w.network_gateway = std::move(gw).value();
  }
  w.native_tunnel = in.native_tunnel();
  if (in.has_application_tunnel()) {
    model::ApplicationTunnel tunnel;
    switch (static_cast<int>(in.application_tunnel().protocol())) {
      case pb::ApplicationTunnel::NONE:
        tunnel.protocol = model::ApplicationTunnel::Protocol::None;
        break;
      case pb::ApplicationTunnel::PROXY:
        tunnel.protocol = model::ApplicationTunnel::Protocol::Proxy;
        break;
      default:
        return fieldError(
            "application_tunnel.protocol",
            fmt::format("unknown value {}", static_cast<int>(in.application_tunnel().protocol())));
    }
    auto port = toPort(in.application_tunnel().port(), "application_tunnel.port");
    if (!port) return port.error();
    if (*port != 0) tunnel.port = *port;
    w.application_tunnel = tunnel;
  }

  w.canonical_name = in.canonical_name();
  w.canonical_revision = in.canonical_revision();
  w.workload_name = in.workload_name();
  auto type = toWorkloadType(static_cast<int>(in.workload_type()));
  if (!type) return type.error();
  w.workload_type = std::move(type).value();
  if (in.has_locality()) {
    w.locality =
        model::Locality{in.locality().region(), in.locality().zone(), in.locality().subzone()};
  }
  for (const std::string& policy : in.authorization_policies()) {
    w.authorization_policies.push_back(policy);
  }
  for (const auto& [key, ports] : in.services()) {
    std::string field = fmt::format("services[\"{}\"]", key);
    if (!model::NamespacedHostname::parse(key)) {
      return fieldError(field, "key is not of the form namespace/hostname");
    }
    auto map = toPortMap(ports.ports(), fmt::format("{}.ports", field));
    if (!map) return map.error();
    w.services[key] = std::move(map).value();
    auto protocols = toAppProtocols(ports.ports(), fmt::format("{}.ports", field));
    if (!protocols) return protocols.error();
    if (!protocols->empty()) w.service_app_protocols[key] = std::move(protocols).value();
  }
  w.capacity = in.has_capacity() ? in.capacity().value() : 1;
  w.extensions = toExtensions(in.extensions());
  return w;
}

Result<model::LoadBalancing> toLoadBalancing(const pb::LoadBalancing& in) {
  model::LoadBalancing lb;
  for (int i = 0; i < in.routing_preference_size(); ++i) {
    int scope = in.routing_preference(i);
    switch (scope) {
      case pb::LoadBalancing::REGION:
        lb.routing_preference.push_back(model::LoadBalancingScope::Region);
        break;
      case pb::LoadBalancing::ZONE:
        lb.routing_preference.push_back(model::LoadBalancingScope::Zone);
        break;
      case pb::LoadBalancing::SUBZONE:
        lb.routing_preference.push_back(model::LoadBalancingScope::Subzone);
        break;
      case pb::LoadBalancing::NODE:
        lb.routing_preference.push_back(model::LoadBalancingScope::Node);
        break;
      case pb::LoadBalancing::CLUSTER:
        lb.routing_preference.push_back(model::LoadBalancingScope::Cluster);
        break;
      case pb::LoadBalancing::NETWORK:
        lb.routing_preference.push_back(model::LoadBalancingScope::Network);
        break;
      default:
        return fieldError(fmt::format("load_balancing.routing_preference[{}]", i),
                          scope == pb::LoadBalancing::UNSPECIFIED_SCOPE
                              ? std::string("UNSPECIFIED_SCOPE is not a scope")
                              : fmt::format("unknown value {}", scope));
    }
  }
  switch (static_cast<int>(in.mode())) {
    case pb::LoadBalancing::UNSPECIFIED_MODE:
      lb.mode = model::LoadBalancingMode::UnspecifiedMode;
      break;
    case pb::LoadBalancing::STRICT:
      lb.mode = model::LoadBalancingMode::Strict;
      break;
    case pb::LoadBalancing::FAILOVER:
      lb.mode = model::LoadBalancingMode::Failover;
      break;
    case pb::LoadBalancing::PASSTHROUGH:
      lb.mode = model::LoadBalancingMode::Passthrough;
      break;
    default:
      return fieldError("load_balancing.mode",
                        fmt::format("unknown value {}", static_cast<int>(in.mode())));
  }
  switch (static_cast<int>(in.health_policy())) {
    case pb::LoadBalancing::ONLY_HEALTHY:
      lb.health_policy = model::LoadBalancingHealthPolicy::OnlyHealthy;
      break;
    case pb::LoadBalancing::ALLOW_ALL:
      lb.health_policy = model::LoadBalancingHealthPolicy::AllowAll;
      break;
    default:
      return fieldError("load_balancing.health_policy",
                        fmt::format("unknown value {}", static_cast<int>(in.health_policy())));
  }
  return lb;
}

Result<model::Service> convertService(const pb::Service& in) {
  model::Service s;
  if (in.namespace_().empty()) return fieldError("namespace", "required");
  if (in.hostname().empty()) return fieldError("hostname", "required");
  s.name = in.name();
  s.namespace_name = in.namespace_();
  s.hostname = in.hostname();
  for (int i = 0; i < in.addresses_size(); ++i) {
    const pb::NetworkAddress& address = in.addresses(i);
    std::string field = fmt::format("addresses[{}]", i);
    auto vip = toNetworkAddress(address, field);
    if (!vip) return vip.error();
    uint32_t max_len = vip->address.isV4() ? 32 : 128;
    if (address.has_length() && address.length() > max_len) {
      return fieldError(fmt::format("{}.length", field),
                        fmt::format("prefix length {} is longer than the address ({} bits)",
                                    address.length(), max_len));
    }
    // As ztunnel: a prefix shorter than the address makes a CIDR VIP; absent or full, a VIP.
    if (address.has_length() && address.length() != max_len) {
      int prefix = static_cast<int>(address.length()) + (vip->address.isV4() ? 96 : 0);
      s.cidr_vips.push_back(model::NetworkCidr{vip->network, Cidr(vip->address, prefix)});
    } else {
      s.vips.push_back(std::move(vip).value());
    }
  }
  auto ports = toPortMap(in.ports(), "ports");
  if (!ports) return ports.error();
  s.ports = std::move(ports).value();
  auto protocols = toAppProtocols(in.ports(), "ports");
  if (!protocols) return protocols.error();
  s.app_protocols = std::move(protocols).value();
  for (const std::string& san : in.subject_alt_names()) s.subject_alt_names.push_back(san);
  if (in.has_waypoint()) {
    auto gw = toGateway(in.waypoint(), "waypoint");
    if (!gw) return gw.error();
    s.waypoint = std::move(gw).value();
  }
  for (int i = 0; i < in.weighted_waypoints_size(); ++i) {
    const pb::WeightedWaypoint& ww = in.weighted_waypoints(i);
    std::string field = fmt::format("weighted_waypoints[{}].destination", i);
    if (!ww.has_destination()) return fieldError(field, "required");
    auto gw = toGateway(ww.destination(), field);
    if (!gw) return gw.error();
    s.weighted_waypoints.push_back(model::WeightedWaypoint{std::move(gw).value(), ww.weight()});
  }
  s.canonical = in.canonical();
  s.ingress_use_waypoint = in.ingress_use_waypoint();
  // As ztunnel: an unknown visibility falls back to PUBLIC rather than dropping the service
  // (a newer istiod may add levels; refusing the service would break it for every client).
  s.visibility = in.visibility() == pb::Service::NAMESPACE ? model::Visibility::Namespace
                                                           : model::Visibility::Public;
  s.extensions = toExtensions(in.extensions());
  if (in.has_load_balancing()) {
    auto lb = toLoadBalancing(in.load_balancing());
    if (!lb) return lb.error();
    s.load_balancing = std::move(lb).value();
  }
  switch (static_cast<int>(in.ip_families())) {
    case pb::AUTOMATIC:
      s.ip_families = model::IpFamilies::Automatic;
      break;
    case pb::IPV4_ONLY:
      s.ip_families = model::IpFamilies::Ipv4Only;
      break;
    case pb::IPV6_ONLY:
      s.ip_families = model::IpFamilies::Ipv6Only;
      break;
    case pb::DUAL:
      s.ip_families = model::IpFamilies::Dual;
      break;
    default:
      return fieldError("ip_families",
                        fmt::format("unknown value {}", static_cast<int>(in.ip_families())));
  }
  return s;
}

Result<std::vector<model::StringMatch>> toStringMatches(
    const google::protobuf::RepeatedPtrField<pbsec::StringMatch>& in, std::string_view field) {
  std::vector<model::StringMatch> out;
  for (int i = 0; i < in.size(); ++i) {
    const pbsec::StringMatch& m = in.Get(i);
    switch (m.match_type_case()) {
      case pbsec::StringMatch::kExact:
        out.push_back(model::StringMatch::exact(m.exact()));
        break;
      case pbsec::StringMatch::kPrefix:
        out.push_back(model::StringMatch::prefix(m.prefix()));
        break;
      case pbsec::StringMatch::kSuffix:
        out.push_back(model::StringMatch::suffix(m.suffix()));
        break;
      case pbsec::StringMatch::kPresence:
        out.push_back(model::StringMatch::presence());
        break;
      case pbsec::StringMatch::MATCH_TYPE_NOT_SET:
        return fieldError(fmt::format("{}[{}]", field, i),
                          "none of exact, prefix, suffix or presence is set");
    }
  }
  return out;
}

std::vector<model::ServiceAccountMatch> toServiceAccounts(
    const google::protobuf::RepeatedPtrField<pbsec::ServiceAccountMatch>& in) {
  std::vector<model::ServiceAccountMatch> out;
  for (const pbsec::ServiceAccountMatch& m : in) {
    out.push_back(model::ServiceAccountMatch{m.namespace_(), m.serviceaccount()});
  }
  return out;
}

Result<std::vector<Cidr>> toCidrs(const google::protobuf::RepeatedPtrField<pbsec::Address>& in,
                                  std::string_view field) {
  std::vector<Cidr> out;
  for (int i = 0; i < in.size(); ++i) {
    std::string item = fmt::format("{}[{}]", field, i);
    auto ip = toIp(in.Get(i).address(), fmt::format("{}.address", item));
    if (!ip) return ip.error();
    uint32_t max_len = ip->isV4() ? 32 : 128;
    uint32_t length = in.Get(i).length();
    if (length > max_len) {
      return fieldError(
          fmt::format("{}.length", item),
          fmt::format("prefix length {} is longer than the address ({} bits)", length, max_len));
    }
    // Cidr counts the prefix on the 128-bit (v4-mapped) form.
    int prefix = static_cast<int>(length) + (ip->isV4() ? 96 : 0);
    out.emplace_back(*ip, prefix);
  }
  return out;
}

Result<std::vector<uint16_t>> toPorts(const google::protobuf::RepeatedField<uint32_t>& in,
                                      std::string_view field) {
  std::vector<uint16_t> out;
  for (int i = 0; i < in.size(); ++i) {
    auto port = toPort(in.Get(i), fmt::format("{}[{}]", field, i));
    if (!port) return port.error();
    out.push_back(*port);
  }
  return out;
}

Result<model::Match> toMatch(const pbsec::Match& in, const std::string& field) {
  model::Match m;
  // Each field converts into its own member; the first failure is returned with its path.
  auto strings = [&](const auto& list, std::string_view name,
                     std::vector<model::StringMatch>& out) -> Status {
    auto r = toStringMatches(list, fmt::format("{}.{}", field, name));
    if (!r) return r.error();
    out = std::move(r).value();
    return okStatus();
  };
  auto cidrs = [&](const auto& list, std::string_view name, std::vector<Cidr>& out) -> Status {
    auto r = toCidrs(list, fmt::format("{}.{}", field, name));
    if (!r) return r.error();
    out = std::move(r).value();
    return okStatus();
  };
  auto ports = [&](const auto& list, std::string_view name, std::vector<uint16_t>& out) -> Status {
    auto r = toPorts(list, fmt::format("{}.{}", field, name));
    if (!r) return r.error();
    out = std::move(r).value();
    return okStatus();
  };
  for (const Status& s :
       {strings(in.namespaces(), "namespaces", m.namespaces),
        strings(in.not_namespaces(), "not_namespaces", m.not_namespaces),
        strings(in.principals(), "principals", m.principals),
        strings(in.not_principals(), "not_principals", m.not_principals),
        cidrs(in.source_ips(), "source_ips", m.source_ips),
        cidrs(in.not_source_ips(), "not_source_ips", m.not_source_ips),
        cidrs(in.destination_ips(), "destination_ips", m.destination_ips),
        cidrs(in.not_destination_ips(), "not_destination_ips", m.not_destination_ips),
        ports(in.destination_ports(), "destination_ports", m.destination_ports),
        ports(in.not_destination_ports(), "not_destination_ports", m.not_destination_ports)}) {
    if (!s) return s.error();
  }
  m.service_accounts = toServiceAccounts(in.service_accounts());
  m.not_service_accounts = toServiceAccounts(in.not_service_accounts());
  m.extensions = toExtensions(in.extensions());
  return m;
}

Result<model::Authorization> convertAuthorization(const pbsec::Authorization& in) {
  model::Authorization a;
  if (in.name().empty()) return fieldError("name", "required");
  a.name = in.name();
  a.namespace_name = in.namespace_();
  switch (static_cast<int>(in.scope())) {
    case pbsec::GLOBAL:
      a.scope = model::PolicyScope::Global;
      break;
    case pbsec::NAMESPACE:
      a.scope = model::PolicyScope::Namespace;
      break;
    case pbsec::WORKLOAD_SELECTOR:
      a.scope = model::PolicyScope::WorkloadSelector;
      break;
    default:
      return fieldError("scope", fmt::format("unknown value {}", static_cast<int>(in.scope())));
  }
  switch (static_cast<int>(in.action())) {
    case pbsec::ALLOW:
      a.action = model::PolicyAction::Allow;
      break;
    case pbsec::DENY:
      a.action = model::PolicyAction::Deny;
      break;
    default:
      return fieldError("action", fmt::format("unknown value {}", static_cast<int>(in.action())));
  }
  a.dry_run = in.dry_run();
  for (int r = 0; r < in.rules_size(); ++r) {
    model::Rule rule;
    for (int c = 0; c < in.rules(r).clauses_size(); ++c) {
      model::Clause clause;
      const pbsec::Clause& pc = in.rules(r).clauses(c);
      for (int m = 0; m < pc.matches_size(); ++m) {
        auto match =
            toMatch(pc.matches(m), fmt::format("rules[{}].clauses[{}].matches[{}]", r, c, m));
        if (!match) return match.error();
        clause.push_back(std::move(match).value());
      }
      rule.push_back(std::move(clause));
    }
    a.rules.push_back(std::move(rule));
  }
  a.extensions = toExtensions(in.extensions());
  return a;
}

}  // namespace

Result<model::Workload> toWorkload(const istio::workload::Workload& workload) {
  auto out = convertWorkload(workload);
  if (!out) {
    std::string name = workload.uid().empty()
                           ? fmt::format("(no uid) {}/{}", workload.namespace_(), workload.name())
                           : workload.uid();
    return withResource("workload", name, out.error());
  }
  return out;
}

Result<model::Service> toService(const istio::workload::Service& service) {
  auto out = convertService(service);
  if (!out) {
    return withResource("service", fmt::format("{}/{}", service.namespace_(), service.hostname()),
                        out.error());
  }
  return out;
}

Result<model::Authorization> toAuthorization(const istio::security::Authorization& policy) {
  auto out = convertAuthorization(policy);
  if (!out) {
    return withResource("authorization", fmt::format("{}/{}", policy.namespace_(), policy.name()),
                        out.error());
  }
  return out;
}

}  // namespace nodemesh::xds
