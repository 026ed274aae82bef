#include "agent/admin/config_dump.h"

#include <variant>

namespace nodemesh::agent::admin {

namespace {

using nlohmann::json;

json stringMatchJson(const model::StringMatch& m) {
  switch (m.kind) {
    case model::StringMatch::Kind::Exact:
      return {{"Exact", m.value}};
    case model::StringMatch::Kind::Prefix:
      return {{"Prefix", m.value}};
    case model::StringMatch::Kind::Suffix:
      return {{"Suffix", m.value}};
    case model::StringMatch::Kind::Presence:
      return {{"Presence", json::array()}};
  }
  return nullptr;
}

// Extensions are opaque: their name, type and size show, not their bytes.
json extensions(const std::vector<model::Extension>& v) {
  json out = json::array();
  for (const auto& e : v) {
    out.push_back({{"name", e.name}, {"typeUrl", e.type_url}, {"bytes", e.value.size()}});
  }
  return out;
}

json stringMatches(const std::vector<model::StringMatch>& v) {
  json out = json::array();
  for (const auto& m : v) out.push_back(stringMatchJson(m));
  return out;
}

json cidrs(const std::vector<Cidr>& v) {
  json out = json::array();
  for (const auto& c : v) out.push_back(c.toString());
  return out;
}

json accounts(const std::vector<model::ServiceAccountMatch>& v) {
  json out = json::array();
  for (const auto& a : v) {
    out.push_back({{"namespace", a.namespace_name}, {"serviceAccount", a.service_account}});
  }
  return out;
}

json matchJson(const model::Match& m) {
  json out = json::object();
  auto put = [&](const char* key, json value, bool empty) {
    if (!empty) out[key] = std::move(value);
  };
  put("namespaces", stringMatches(m.namespaces), m.namespaces.empty());
  put("notNamespaces", stringMatches(m.not_namespaces), m.not_namespaces.empty());
  put("serviceAccounts", accounts(m.service_accounts), m.service_accounts.empty());
  put("notServiceAccounts", accounts(m.not_service_accounts), m.not_service_accounts.empty());
  put("principals", stringMatches(m.principals), m.principals.empty());
  put("notPrincipals", stringMatches(m.not_principals), m.not_principals.empty());
  put("sourceIps", cidrs(m.source_ips), m.source_ips.empty());
  put("notSourceIps", cidrs(m.not_source_ips), m.not_source_ips.empty());
  put("destinationIps", cidrs(m.destination_ips), m.destination_ips.empty());
  put("notDestinationIps", cidrs(m.not_destination_ips), m.not_destination_ips.empty());
  put("destinationPorts", m.destination_ports, m.destination_ports.empty());
  put("notDestinationPorts", m.not_destination_ports, m.not_destination_ports.empty());
  put("extensions", extensions(m.extensions), m.extensions.empty());
  return out;
}

json portMap(const model::PortMap& ports) {
  json out = json::object();
  for (const auto& [port, target] : ports) out[std::to_string(port)] = target;
  return out;
}

json gateway(const std::optional<model::GatewayAddress>& g) {
  if (!g) return nullptr;
  return g->toString();
}

json appProtocols(const model::AppProtocolMap& protocols) {
  json out = json::object();
  for (const auto& [port, protocol] : protocols)
    out[std::to_string(port)] = model::toString(protocol);
  return out;
}

json applicationTunnel(const std::optional<model::ApplicationTunnel>& t) {
  if (!t) return nullptr;
  json out = {
      {"protocol", t->protocol == model::ApplicationTunnel::Protocol::Proxy ? "PROXY" : "NONE"}};
  out["port"] = t->port ? json(*t->port) : json(nullptr);
  return out;
}

}  // namespace

json workloadJson(const model::Workload& w) {
  json ips = json::array();
  for (const auto& ip : w.workload_ips) ips.push_back(ip.toString());
  json services = json::object();
  for (const auto& [key, ports] : w.services) services[key] = portMap(ports);
  json service_protocols = json::object();
  for (const auto& [key, protocols] : w.service_app_protocols) {
    service_protocols[key] = appProtocols(protocols);
  }
  json out = {
      {"uid", w.uid},
      {"name", w.name},
      {"namespace", w.namespace_name},
      {"serviceAccount", w.service_account},
      {"trustDomain", w.trust_domain},
      {"identity", w.identity()},
      {"workloadIps", ips},
      {"node", w.node},
      {"network", w.network},
      {"clusterId", w.cluster_id},
      {"protocol", model::toString(w.protocol)},
      {"networkMode", model::toString(w.network_mode)},
      {"status", model::toString(w.status)},
      {"canonicalName", w.canonical_name},
      {"canonicalRevision", w.canonical_revision},
      {"workloadName", w.workload_name},
      {"workloadType", w.workload_type},
      {"hostname", w.hostname},
      {"waypoint", gateway(w.waypoint)},
      {"networkGateway", gateway(w.network_gateway)},
      {"nativeTunnel", w.native_tunnel},
      {"applicationTunnel", applicationTunnel(w.application_tunnel)},
      {"locality",
       {{"region", w.locality.region}, {"zone", w.locality.zone}, {"subzone", w.locality.subzone}}},
      {"authorizationPolicies", w.authorization_policies},
      {"services", services},
      {"serviceAppProtocols", service_protocols},
      {"capacity", w.capacity},
      {"extensions", extensions(w.extensions)},
  };
  return out;
}

json serviceJson(const model::Snapshot& snapshot, const model::Service& s) {
  json vips = json::array();
  for (const auto& vip : s.vips) vips.push_back(vip.toString());
  json cidr_vips = json::array();
  for (const auto& cidr : s.cidr_vips) cidr_vips.push_back(cidr.toString());
  json weighted = json::array();
  for (const auto& ww : s.weighted_waypoints) {
    weighted.push_back({{"destination", ww.destination.toString()}, {"weight", ww.weight}});
  }
  json endpoints = json::array();
  for (const auto& ep : snapshot.endpoints(s)) {
    endpoints.push_back({{"workloadUid", ep.workload_uid},
                         {"ports", portMap(ep.ports)},
                         {"status", model::toString(ep.status)}});
  }
  json out = {
      {"name", s.name},
      {"namespace", s.namespace_name},
      {"hostname", s.hostname},
      {"vips", vips},
      {"cidrVips", cidr_vips},
      {"ports", portMap(s.ports)},
      {"appProtocols", appProtocols(s.app_protocols)},
      {"subjectAltNames", s.subject_alt_names},
      {"waypoint", gateway(s.waypoint)},
      {"weightedWaypoints", weighted},
      {"ipFamilies", model::toString(s.ip_families)},
      {"canonical", s.canonical},
      {"ingressUseWaypoint", s.ingress_use_waypoint},
      {"visibility", model::toString(s.visibility)},
      {"extensions", extensions(s.extensions)},
      {"endpoints", endpoints},
  };
  if (s.load_balancing) {
    json prefs = json::array();
    for (auto p : s.load_balancing->routing_preference) prefs.push_back(model::toString(p));
    out["loadBalancer"] = {{"mode", model::toString(s.load_balancing->mode)},
                           {"routingPreference", prefs},
                           {"healthPolicy", model::toString(s.load_balancing->health_policy)}};
  } else {
    out["loadBalancer"] = nullptr;
  }
  return out;
}

json policyJson(const model::Authorization& p) {
  json rules = json::array();
  for (const auto& rule : p.rules) {
    json clauses = json::array();
    for (const auto& clause : rule) {
      json matches = json::array();
      for (const auto& m : clause) matches.push_back(matchJson(m));
      clauses.push_back(std::move(matches));
    }
    rules.push_back(std::move(clauses));
  }
  return {{"name", p.name},
          {"namespace", p.namespace_name},
          {"scope", model::toString(p.scope)},
          {"action", model::toString(p.action)},
          {"dryRun", p.dry_run},
          {"rules", rules},
          {"extensions", extensions(p.extensions)}};
}

}  // namespace nodemesh::agent::admin
