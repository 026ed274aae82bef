// LocalConfigParser: the `workloads` section.

#include "config/local/local_config_parser.h"

#include <utility>

namespace nodemesh::config::local_internal {

namespace {

// Field names exactly as ztunnel's serde structs spell them (rename_all = "camelCase").
constexpr std::string_view kWorkloadFields[] = {"uid",
                                                "name",
                                                "namespace",
                                                "serviceAccount",
                                                "workloadIps",
                                                "protocol",
                                                "node",
                                                "network",
                                                "hostname",
                                                "waypoint",
                                                "networkGateway",
                                                "networkMode",
                                                "trustDomain",
                                                "clusterId",
                                                "canonicalName",
                                                "canonicalRevision",
                                                "workloadName",
                                                "workloadType",
                                                "locality",
                                                "status",
                                                "nativeTunnel",
                                                "applicationTunnel",
                                                "authorizationPolicies",
                                                "services",
                                                "capacity"};
constexpr std::string_view kApplicationTunnelFields[] = {"protocol", "port"};
constexpr std::string_view kLocalityFields[] = {"region", "zone", "subzone"};

}  // namespace

void LocalConfigParser::parseWorkload(const YAML::Node& node, const std::string& path) {
  FieldMap f(r_, node, path, "workload", kWorkloadFields);
  if (!f.valid()) return;
  Workload w;

  WorkloadNodes nodes{Located{node, path}, std::nullopt, {}, {}, {}};
  if (auto uid = f.get("uid")) {
    auto s = r_.readString(*uid, f.pathOf("uid"));
    if (s && s->empty()) {
      r_.problem(*uid, f.pathOf("uid"), "workload has an empty uid; every workload needs one");
    } else if (s) {
      w.uid = *s;
      nodes.key.emplace(Located{*uid, f.pathOf("uid")});
    }
  } else {
    r_.problem(node, path, "workload has no uid; every workload needs a unique uid");
  }
  readString(f, "name", w.name);
  readRequiredString(f, "namespace", w.namespace_name);
  std::string service_account;
  readString(f, "serviceAccount", service_account);
  if (!service_account.empty()) w.service_account = service_account;
  std::string trust_domain;
  readString(f, "trustDomain", trust_domain);
  if (!trust_domain.empty()) w.trust_domain = trust_domain;

  if (auto ips = f.require("workloadIps")) {
    r_.forEachItem(*ips, f.pathOf("workloadIps"),
                   [&](const YAML::Node& item, const std::string& item_path) {
                     if (auto ip = r_.readIp(item, item_path)) {
                       w.workload_ips.push_back(*ip);
                       nodes.addresses.push_back(Located{item, item_path});
                     }
                   });
  }
  readString(f, "hostname", w.hostname);
  readString(f, "node", w.node);
  readString(f, "network", w.network);
  readString(f, "clusterId", w.cluster_id);
  readString(f, "canonicalName", w.canonical_name);
  readString(f, "canonicalRevision", w.canonical_revision);
  readString(f, "workloadName", w.workload_name);
  readString(f, "workloadType", w.workload_type);

  if (auto n = f.get("protocol")) {
    if (auto p = r_.readEnum<model::Protocol>(
            *n, f.pathOf("protocol"), "protocol",
            {{"TCP", model::Protocol::Tcp}, {"HBONE", model::Protocol::Hbone}})) {
      w.protocol = *p;
    }
  }
  if (auto n = f.get("networkMode")) {
    if (auto m =
            r_.readEnum<model::NetworkMode>(*n, f.pathOf("networkMode"), "networkMode",
                                            {{"Standard", model::NetworkMode::Standard},
                                             {"HostNetwork", model::NetworkMode::HostNetwork}})) {
      w.network_mode = *m;
    }
  }
  if (auto n = f.get("status")) {
    if (auto s = readStatus(*n, f.pathOf("status"))) w.status = *s;
  }
  if (auto n = f.get("waypoint")) w.waypoint = readGateway(*n, f.pathOf("waypoint"));
  if (auto n = f.get("networkGateway")) {
    w.network_gateway = readGateway(*n, f.pathOf("networkGateway"));
  }
  if (auto n = f.get("nativeTunnel")) {
    if (auto b = r_.readBool(*n, f.pathOf("nativeTunnel"))) w.native_tunnel = *b;
  }
  if (auto n = f.get("applicationTunnel"); n && !n->IsNull()) {
    FieldMap t(r_, *n, f.pathOf("applicationTunnel"), "application tunnel",
               kApplicationTunnelFields);
    if (t.valid()) {
      model::ApplicationTunnel tunnel;
      if (auto p = t.require("protocol")) {
        using TunnelProtocol = model::ApplicationTunnel::Protocol;
        if (auto v = r_.readEnum<TunnelProtocol>(
                *p, t.pathOf("protocol"), "application tunnel protocol",
                {{"NONE", TunnelProtocol::None}, {"PROXY", TunnelProtocol::Proxy}})) {
          tunnel.protocol = *v;
        }
      }
      if (auto port = t.get("port"); port && !port->IsNull()) {
        tunnel.port = r_.readPort(*port, t.pathOf("port"));
      }
      w.application_tunnel = tunnel;
    }
  }
  if (auto n = f.get("locality"); n && !n->IsNull()) {
    FieldMap l(r_, *n, f.pathOf("locality"), "locality", kLocalityFields);
    if (l.valid()) {
      readString(l, "region", w.locality.region);
      readString(l, "zone", w.locality.zone);
      readString(l, "subzone", w.locality.subzone);
    }
  }
  if (auto n = f.get("authorizationPolicies")) {
    r_.forEachItem(*n, f.pathOf("authorizationPolicies"),
                   [&](const YAML::Node& item, const std::string& item_path) {
                     auto key = r_.readString(item, item_path);
                     if (!key) return;
                     nodes.policy_refs.push_back(Located{item, item_path});
                     w.authorization_policies.push_back(std::move(*key));
                   });
  }
  if (auto n = f.get("services")) {
    r_.forEachEntry(
        *n, f.pathOf("services"),
        [&](const YAML::Node& key, const std::string& key_text, const YAML::Node& value,
            const std::string& entry_path) {
          if (!model::NamespacedHostname::parse(key_text)) {
            r_.problem(key, entry_path,
                       "service key '" + key_text + "' is not of the form namespace/hostname");
            return;
          }
          nodes.service_refs.emplace(key_text, Located{key, entry_path});
          readPortMap(value, entry_path, /*allow_zero_target=*/false, w.services[key_text]);
        });
  }
  if (auto n = f.get("capacity")) {
    if (auto c = r_.readUint32(*n, f.pathOf("capacity"))) w.capacity = *c;
  }
  workloads_.push_back(std::move(w));
  workload_nodes_.push_back(std::move(nodes));
}

}  // namespace nodemesh::config::local_internal
