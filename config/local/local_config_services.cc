// LocalConfigParser: the `services` section.

#include "config/local/local_config_parser.h"

#include <utility>

namespace nodemesh::config::local_internal {

namespace {

// Field names exactly as ztunnel's serde structs spell them (rename_all = "camelCase").
constexpr std::string_view kServiceFields[] = {
    "name",     "namespace",    "hostname",   "vips",     "ports", "subjectAltNames",
    "waypoint", "loadBalancer", "ipFamilies", "endpoints"};
constexpr std::string_view kLoadBalancerFields[] = {"routingPreferences", "mode", "healthPolicy"};
constexpr std::string_view kEndpointFields[] = {"workloadUid", "port", "status"};

}  // namespace

void LocalConfigParser::parseService(const YAML::Node& node, const std::string& path) {
  FieldMap f(r_, node, path, "service", kServiceFields);
  if (!f.valid()) return;
  Service s;
  readRequiredString(f, "name", s.name);
  readRequiredString(f, "namespace", s.namespace_name);
  auto hostname = f.require("hostname");
  if (hostname) {
    if (auto h = r_.readString(*hostname, f.pathOf("hostname"))) {
      s.hostname = *h;
      auto [prev, inserted] = service_lines_.emplace(s.key(), YamlReader::lineOf(*hostname));
      if (!inserted) {
        r_.problem(*hostname, f.pathOf("hostname"),
                   "duplicate service '" + s.key() + "' (first defined at line " +
                       std::to_string(prev->second) + ")");
      }
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
                   });
  }
  if (auto ports = f.require("ports")) {
    readPortMap(*ports, f.pathOf("ports"), /*allow_zero_target=*/true, s.ports);
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
