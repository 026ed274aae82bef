// LocalConfigParser: the `services` section.

#include "config/local/local_config_parser.h"

#include <fmt/format.h>

#include <utility>

namespace nodemesh::config::local_internal {

namespace {

// Field names exactly as ztunnel's serde structs spell them (rename_all = "camelCase").
// `ingressUseWaypoint` is not in ztunnel's struct (ztunnel ignores the xDS field); nodemesh
// keeps it in the model, so the file can say it too.
constexpr std::string_view kServiceFields[] = {"name",
                                               "namespace",
                                               "hostname",
                                               "vips",
                                               "cidrVips",
                                               "ports",
                                               "subjectAltNames",
                                               "waypoint",
                                               "weightedWaypoints",
                                               "loadBalancer",
                                               "ipFamilies",
                                               "canonical",
                                               "visibility",
                                               "ingressUseWaypoint",
                                               "endpoints"};
constexpr std::string_view kNetworkCidrFields[] = {"network", "cidr"};
constexpr std::string_view kWeightedWaypointFields[] = {"destination", "weight"};
constexpr std::string_view kLoadBalancerFields[] = {"routingPreferences", "mode", "healthPolicy"};
constexpr std::string_view kEndpointFields[] = {"workloadUid", "port", "status"};

}  // namespace

void LocalConfigParser::parseService(const YAML::Node& node, const std::string& path) {
  FieldMap f(r_, node, path, "service", kServiceFields);
  if (!f.valid()) return;
  Service s;
  ServiceNodes nodes{Located{node, path}, std::nullopt, {}};
  readRequiredString(f, "name", s.name);
  readRequiredString(f, "namespace", s.namespace_name);
  auto hostname = f.require("hostname");
  if (hostname) {
    if (auto h = r_.readString(*hostname, f.pathOf("hostname"))) {
      s.hostname = *h;
      nodes.key.emplace(Located{*hostname, f.pathOf("hostname")});
    }
  }
  if (auto vips = f.require("vips")) {
    r_.forEachItem(*vips, f.pathOf("vips"),
                   [&](const YAML::Node& item, const std::string& item_path) {
                     auto text = r_.readString(item, item_path);
                     if (!text) return;
                     auto vip = model::NetworkAddress::parse(*text);
                     if (!vip) {
                       r_.problem(item, item_path, "invalid VIP: " + vip.error().message);
                       return;
                     }
                     s.vips.push_back(*vip);
                     nodes.vips.push_back(Located{item, item_path});
                   });
  }
  // ztunnel's NetworkCidr: {network, cidr} (serde's default struct form), cidr as "ip/len".
  if (auto n = f.get("cidrVips")) {
    r_.forEachItem(*n, f.pathOf("cidrVips"),
                   [&](const YAML::Node& item, const std::string& item_path) {
                     FieldMap c(r_, item, item_path, "CIDR VIP", kNetworkCidrFields);
                     if (!c.valid()) return;
                     model::NetworkCidr vip;
                     readRequiredString(c, "network", vip.network);
                     auto cidr_node = c.require("cidr");
                     if (!cidr_node) return;
                     auto text = r_.readString(*cidr_node, c.pathOf("cidr"));
                     if (!text) return;
                     auto cidr = Cidr::parse(*text);
                     if (text->find('/') == std::string::npos) {
                       r_.problem(*cidr_node, c.pathOf("cidr"),
                                  fmt::format("'{}' has no prefix length (write ip/len)", *text));
                     } else if (!cidr) {
                       r_.problem(*cidr_node, c.pathOf("cidr"), cidr.error().message);
                     } else {
                       vip.cidr = *cidr;
                       s.cidr_vips.push_back(std::move(vip));
                     }
                   });
  }
  if (auto ports = f.require("ports")) {
    readPortMap(*ports, f.pathOf("ports"), /*allow_zero_target=*/true, s.ports);
  }
  if (auto n = f.get("weightedWaypoints")) {
    r_.forEachItem(*n, f.pathOf("weightedWaypoints"),
                   [&](const YAML::Node& item, const std::string& item_path) {
                     FieldMap ww(r_, item, item_path, "weighted waypoint", kWeightedWaypointFields);
                     if (!ww.valid()) return;
                     model::WeightedWaypoint out;
                     std::optional<GatewayAddress> dest;
                     if (auto d = ww.require("destination")) {
                       if (d->IsNull()) {
                         r_.problem(*d, ww.pathOf("destination"), "destination is required");
                       } else {
                         dest = readGateway(*d, ww.pathOf("destination"));
                       }
                     }
                     std::optional<uint32_t> weight;
                     if (auto w = ww.require("weight"))
                       weight = r_.readUint32(*w, ww.pathOf("weight"));
                     if (!dest || !weight) return;
                     s.weighted_waypoints.push_back(model::WeightedWaypoint{*dest, *weight});
                   });
  }
  if (auto n = f.get("canonical")) {
    if (auto b = r_.readBool(*n, f.pathOf("canonical"))) s.canonical = *b;
  }
  if (auto n = f.get("ingressUseWaypoint")) {
    if (auto b = r_.readBool(*n, f.pathOf("ingressUseWaypoint"))) s.ingress_use_waypoint = *b;
  }
  if (auto n = f.get("visibility")) {
    if (auto v = r_.readEnum<model::Visibility>(
            *n, f.pathOf("visibility"), "visibility",
            {{"Public", model::Visibility::Public}, {"Namespace", model::Visibility::Namespace}})) {
      s.visibility = *v;
    }
  }
  if (auto n = f.get("subjectAltNames")) {
    readStringList(*n, f.pathOf("subjectAltNames"), s.subject_alt_names);
  }
  if (auto n = f.get("waypoint")) s.waypoint = readGateway(*n, f.pathOf("waypoint"));
  if (auto n = f.get("ipFamilies"); n && !n->IsNull()) {
    if (auto v = r_.readEnum<model::IpFamilies>(*n, f.pathOf("ipFamilies"), "ipFamilies",
                                                {{"Dual", model::IpFamilies::Dual},
                                                 {"IPv4", model::IpFamilies::Ipv4Only},
                                                 {"IPv6", model::IpFamilies::Ipv6Only}})) {
      s.ip_families = *v;
    }
  }
  if (auto n = f.get("loadBalancer"); n && !n->IsNull()) {
    s.load_balancing = readLoadBalancer(*n, f.pathOf("loadBalancer"));
  }
  if (auto n = f.get("endpoints")) {
    r_.forEachEntry(*n, f.pathOf("endpoints"),
                    [&](const YAML::Node&, const std::string&, const YAML::Node& value,
                        const std::string& entry_path) {
                      FieldMap e(r_, value, entry_path, "endpoint", kEndpointFields);
                      if (!e.valid()) return;
                      model::Endpoint ep;
                      readRequiredString(e, "workloadUid", ep.workload_uid);
                      if (auto ports = e.require("port")) {
                        readPortMap(*ports, e.pathOf("port"), false, ep.ports);
                      }
                      if (auto st = e.get("status")) {
                        if (auto v = readStatus(*st, e.pathOf("status"))) ep.status = *v;
                      }
                      s.endpoints.push_back(std::move(ep));
                    });
  }
  services_.push_back(std::move(s));
  service_nodes_.push_back(std::move(nodes));
}

std::optional<model::LoadBalancing> LocalConfigParser::readLoadBalancer(const YAML::Node& node,
                                                                        const std::string& path) {
  FieldMap f(r_, node, path, "load balancer", kLoadBalancerFields);
  if (!f.valid()) return std::nullopt;
  model::LoadBalancing lb;
  if (auto prefs = f.require("routingPreferences")) {
    using Scope = model::LoadBalancingScope;
    r_.forEachItem(*prefs, f.pathOf("routingPreferences"),
                   [&](const YAML::Node& item, const std::string& item_path) {
                     if (auto v = r_.readEnum<Scope>(item, item_path, "routing preference",
                                                     {{"Region", Scope::Region},
                                                      {"Zone", Scope::Zone},
                                                      {"Subzone", Scope::Subzone},
                                                      {"Node", Scope::Node},
                                                      {"Cluster", Scope::Cluster},
                                                      {"Network", Scope::Network}})) {
                       lb.routing_preference.push_back(*v);
                     }
                   });
  }
  if (auto mode = f.require("mode")) {
    using Mode = model::LoadBalancingMode;
    if (auto v = r_.readEnum<Mode>(*mode, f.pathOf("mode"), "load balancing mode",
                                   {{"Standard", Mode::UnspecifiedMode},
                                    {"Strict", Mode::Strict},
                                    {"Failover", Mode::Failover},
                                    {"Passthrough", Mode::Passthrough}})) {
      lb.mode = *v;
    }
  }
  if (auto hp = f.get("healthPolicy")) {
    using Health = model::LoadBalancingHealthPolicy;
    if (auto v = r_.readEnum<Health>(
            *hp, f.pathOf("healthPolicy"), "health policy",
            {{"OnlyHealthy", Health::OnlyHealthy}, {"AllowAll", Health::AllowAll}})) {
      lb.health_policy = *v;
    }
  }
  return lb;
}

}  // namespace nodemesh::config::local_internal
