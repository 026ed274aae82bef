#include "config/local/local_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <span>

#include "config/local/yaml_reader.h"
#include "common/fd.h"

namespace nodemesh::config {
namespace {

using model::Authorization;
using model::GatewayAddress;
using model::Service;
using model::Workload;

// Field names exactly as ztunnel's serde structs spell them (rename_all = "camelCase").
constexpr std::string_view kTopFields[] = {"workloads", "services", "policies"};
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
constexpr std::string_view kGatewayFields[] = {"destination", "hboneMtlsPort"};
constexpr std::string_view kApplicationTunnelFields[] = {"protocol", "port"};
constexpr std::string_view kLocalityFields[] = {"region", "zone", "subzone"};
constexpr std::string_view kServiceFields[] = {
    "name",     "namespace",    "hostname",   "vips",     "ports", "subjectAltNames",
    "waypoint", "loadBalancer", "ipFamilies", "endpoints"};
constexpr std::string_view kLoadBalancerFields[] = {"routingPreferences", "mode", "healthPolicy"};
constexpr std::string_view kEndpointFields[] = {"workloadUid", "port", "status"};
constexpr std::string_view kPolicyFields[] = {"name",   "namespace", "scope",
                                              "action", "rules",     "dryRun"};
// The L4 fields are ztunnel's; the HTTP ones (hosts ... notRemoteIpBlocks) are the attributes of
// Istio's AuthorizationPolicy that istiod's ambient conversion flags as needing a waypoint
// (httpOperations / httpSources). ztunnel's format has no place for them; nodemesh accepts them
// so that a policy written with them gets Istio's treatment instead of a load error.
constexpr std::string_view kMatchFields[] = {
    "namespaces",     "notNamespaces",     "serviceAccounts",   "notServiceAccounts",
    "principals",     "notPrincipals",     "sourceIps",         "notSourceIps",
    "destinationIps", "notDestinationIps", "destinationPorts",  "notDestinationPorts",
    "hosts",          "notHosts",          "methods",           "notMethods",
    "paths",          "notPaths",          "requestPrincipals", "notRequestPrincipals",
    "remoteIpBlocks", "notRemoteIpBlocks"};
constexpr size_t kL4MatchFieldCount = 12;
constexpr std::span<const std::string_view> kL7MatchFields =
    std::span(kMatchFields).subspan(kL4MatchFieldCount);
static_assert(kL7MatchFields.front() == "hosts" && kL7MatchFields.size() == 10);
constexpr std::string_view kServiceAccountMatchFields[] = {"namespace", "serviceAccount"};

// Refuse files beyond this size: the local config describes one node's view of a mesh.
constexpr off_t kMaxFileBytes = 16 * 1024 * 1024;

class LocalConfigParser {
 public:
  LocalConfigParser(std::string_view text, const std::string& file) : r_(file, text), text_(text) {}

  LoadResult run() {
    try {
      parse();
    } catch (const YAML::Exception& e) {
      // Everything is read through const nodes and Scalar(), so this is not expected; still,
      // no exception may escape.
      r_.problemAtLine(e.mark.is_null() ? 0 : e.mark.line + 1, "", e.msg);
    } catch (const std::exception& e) {
      r_.problemAtLine(0, "", std::string("internal error reading config: ") + e.what());
    }
    LoadResult result;
    result.problems = r_.takeProblems();
    result.warnings = r_.takeWarnings();
    auto by_line = [](const ConfigProblem& a, const ConfigProblem& b) { return a.line < b.line; };
    std::stable_sort(result.problems.begin(), result.problems.end(), by_line);
    std::stable_sort(result.warnings.begin(), result.warnings.end(), by_line);
    if (result.problems.empty()) {
      result.snapshot = model::Snapshot::create(std::move(workloads_), std::move(services_),
                                                std::move(policies_));
    }
    return result;
  }

 private:
  struct Reference {
    std::string key;
    YAML::Node node;
    std::string path;
  };

  void parse() {
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAll(std::string(text_));
    } catch (const YAML::ParserException& e) {
      r_.problemAtLine(e.mark.is_null() ? 0 : e.mark.line + 1, "", "YAML syntax error: " + e.msg);
      return;
    }
    if (docs.empty()) return;  // empty file or only comments: an empty snapshot
    if (docs.size() > 1) {
      r_.problem(docs[1], "",
                 "more than one YAML document ('---'); the local config is a single document");
    }
    const YAML::Node& root = docs[0];
    r_.checkUnterminatedQuotes(root);
    if (root.IsNull()) return;
    if (root.IsSequence()) {
      r_.problem(root, "",
                 "expected a map with workloads, services and policies at the top level, got a "
                 "list (list workloads under 'workloads:')");
      return;
    }
    FieldMap top(r_, root, "", "the top level", kTopFields);
    if (!top.valid()) return;

    if (auto node = top.get("policies")) {
      policies_ok_ = r_.forEachItem(
          *node, "policies",
          [&](const YAML::Node& item, const std::string& path) { parsePolicy(item, path); });
    }
    if (auto node = top.get("services")) {
      r_.forEachItem(*node, "services", [&](const YAML::Node& item, const std::string& path) {
        parseService(item, path);
      });
    }
    if (auto node = top.get("workloads")) {
      r_.forEachItem(*node, "workloads", [&](const YAML::Node& item, const std::string& path) {
        parseWorkload(item, path);
      });
    }
    checkReferences();
  }

  // ---- helpers for optional fields ----

  void readString(const FieldMap& f, std::string_view key, std::string& out) {
    if (auto node = f.get(key)) {
      if (auto s = r_.readString(*node, f.pathOf(key))) out = std::move(*s);
    }
  }

  void readRequiredString(FieldMap& f, std::string_view key, std::string& out) {
    if (auto node = f.require(key)) {
      if (auto s = r_.readString(*node, f.pathOf(key))) out = std::move(*s);
    }
  }

  void readStringList(const YAML::Node& node, const std::string& path,
                      std::vector<std::string>& out) {
    r_.forEachItem(node, path, [&](const YAML::Node& item, const std::string& item_path) {
      if (auto s = r_.readString(item, item_path)) out.push_back(std::move(*s));
    });
  }

  // service port -> target port. A service may map to target port 0 ("the endpoint says").
  void readPortMap(const YAML::Node& node, const std::string& path, bool allow_zero_target,
                   model::PortMap& out) {
    r_.forEachEntry(node, path,
                    [&](const YAML::Node& key, const std::string&, const YAML::Node& value,
                        const std::string& entry_path) {
                      auto port = r_.readPort(key, entry_path);
                      auto target = r_.readPort(value, entry_path, allow_zero_target);
                      if (!port || !target) return;
                      if (!out.emplace(*port, *target).second) {
                        r_.problem(key, entry_path, "duplicate port " + std::to_string(*port));
                      }
                    });
  }

  std::optional<GatewayAddress> readGateway(const YAML::Node& node, const std::string& path) {
    if (node.IsNull()) return std::nullopt;  // Option<GatewayAddress>: null is "none"
    FieldMap f(r_, node, path, "gateway address", kGatewayFields);
    if (!f.valid()) return std::nullopt;
    GatewayAddress gateway;
    bool ok = true;
    if (auto dest = f.require("destination")) {
      auto text = r_.readString(*dest, f.pathOf("destination"));
      if (text) {
        auto parsed = GatewayAddress::parseDestination(*text);
        if (parsed) {
          gateway.destination = std::move(parsed).value();
        } else {
          r_.problem(*dest, f.pathOf("destination"),
                     "invalid destination: " + parsed.error().message);
          ok = false;
        }
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    if (auto port = f.require("hboneMtlsPort")) {
      if (auto p = r_.readPort(*port, f.pathOf("hboneMtlsPort"))) {
        gateway.hbone_mtls_port = *p;
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    return ok ? std::optional<GatewayAddress>(std::move(gateway)) : std::nullopt;
  }

  std::optional<model::HealthStatus> readStatus(const YAML::Node& node, const std::string& path) {
    return r_.readEnum<model::HealthStatus>(
        node, path, "status",
        {{"Healthy", model::HealthStatus::Healthy}, {"Unhealthy", model::HealthStatus::Unhealthy}});
  }

  // ---- workloads ----

  void parseWorkload(const YAML::Node& node, const std::string& path) {
    FieldMap f(r_, node, path, "workload", kWorkloadFields);
    if (!f.valid()) return;
    Workload w;

    if (auto uid = f.get("uid")) {
      auto s = r_.readString(*uid, f.pathOf("uid"));
      if (s && s->empty()) {
        r_.problem(*uid, f.pathOf("uid"), "workload has an empty uid; every workload needs one");
      } else if (s) {
        w.uid = *s;
        auto [prev, inserted] = workload_lines_.emplace(w.uid, YamlReader::lineOf(*uid));
        if (!inserted) {
          r_.problem(*uid, f.pathOf("uid"),
                     "duplicate workload uid '" + w.uid + "' (first defined at line " +
                         std::to_string(prev->second) + ")");
        }
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
                       if (auto ip = r_.readIp(item, item_path)) w.workload_ips.push_back(*ip);
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
                       policy_refs_.push_back(Reference{*key, item, item_path});
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
            service_refs_.push_back(Reference{key_text, key, entry_path});
            readPortMap(value, entry_path, /*allow_zero_target=*/false, w.services[key_text]);
          });
    }
    if (auto n = f.get("capacity")) {
      if (auto c = r_.readUint32(*n, f.pathOf("capacity"))) w.capacity = *c;
    }
    workloads_.push_back(std::move(w));
  }

  // ---- services ----

  void parseService(const YAML::Node& node, const std::string& path) {
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

  std::optional<model::LoadBalancing> readLoadBalancer(const YAML::Node& node,
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

  // ---- policies ----

  void parsePolicy(const YAML::Node& node, const std::string& path) {
    FieldMap f(r_, node, path, "policy", kPolicyFields);
    if (!f.valid()) return;
    Authorization p;
    auto name = f.require("name");
    if (name) {
      if (auto s = r_.readString(*name, f.pathOf("name"))) p.name = *s;
    }
    readRequiredString(f, "namespace", p.namespace_name);
    if (name) {
      auto [prev, inserted] = policy_lines_.emplace(p.key(), YamlReader::lineOf(*name));
      if (!inserted) {
        r_.problem(*name, f.pathOf("name"),
                   "duplicate policy '" + p.key() + "' (first defined at line " +
                       std::to_string(prev->second) + ")");
      }
    }
    if (auto n = f.require("scope")) {
      using Scope = model::PolicyScope;
      if (auto v = r_.readEnum<Scope>(*n, f.pathOf("scope"), "scope",
                                      {{"Global", Scope::Global},
                                       {"Namespace", Scope::Namespace},
                                       {"WorkloadSelector", Scope::WorkloadSelector}})) {
        p.scope = *v;
      }
    }
    if (auto n = f.require("action")) {
      using Action = model::PolicyAction;
      if (auto v = r_.readEnum<Action>(*n, f.pathOf("action"), "action",
                                       {{"Allow", Action::Allow}, {"Deny", Action::Deny}})) {
        p.action = *v;
      }
    }
    if (auto n = f.get("dryRun")) {
      if (auto b = r_.readBool(*n, f.pathOf("dryRun"))) p.dry_run = *b;
    }
    std::optional<YAML::Node> l7_at;  // the first match naming an L7 attribute
    std::set<std::string> l7_names;
    if (auto rules = f.require("rules")) {
      // rules -> clauses -> matches: Vec<Vec<Vec<RbacMatch>>> in ztunnel.
      r_.forEachItem(*rules, f.pathOf("rules"),
                     [&](const YAML::Node& rule_node, const std::string& rule_path) {
                       model::Rule& rule = p.rules.emplace_back();
                       r_.forEachItem(
                           rule_node, rule_path,
                           [&](const YAML::Node& clause_node, const std::string& clause_path) {
                             model::Clause& clause = rule.emplace_back();
                             r_.forEachItem(
                                 clause_node, clause_path,
                                 [&](const YAML::Node& m, const std::string& m_path) {
                                   model::Match& match = clause.emplace_back(parseMatch(m, m_path));
                                   // emplace: assigning a YAML::Node writes through to the
                                   // document.
                                   if (!match.l7_fields.empty() && !l7_at) {
                                     l7_at.emplace(m);
                                   }
                                   l7_names.insert(match.l7_fields.begin(), match.l7_fields.end());
                                 });
                           });
                     });
    }
    if (l7_at) warnL7(*l7_at, path, p, l7_names);
    policies_.push_back(std::move(p));
  }

  // Istio reports the same through the policy's status ("ztunnel does not support HTTP
  // attributes"); the semantics are policy/'s (docs/policy.md).
  void warnL7(const YAML::Node& at, const std::string& path, const Authorization& p,
              const std::set<std::string>& names) {
    std::string list;
    for (const std::string& name : names) {
      if (!list.empty()) list += ", ";
      list += name;
    }
    std::string text = "policy '" + p.key() + "' names HTTP attributes (" + list +
                       ") that an L4 data plane cannot check; ";
    if (p.action == model::PolicyAction::Allow) {
      text +=
          "in an ALLOW policy a rule naming them never matches, so the policy allows less than "
          "written (a policy with only such rules allows nothing)";
    } else {
      text +=
          "in a DENY policy they count as matched, so the policy denies more than written (all "
          "traffic its L4 fields match)";
    }
    r_.warning(at, path, text + "; enforce HTTP rules in a waypoint");
  }

  model::Match parseMatch(const YAML::Node& node, const std::string& path) {
    model::Match m;
    FieldMap f(r_, node, path, "policy match", kMatchFields);
    if (!f.valid()) return m;
    auto strings = [&](std::string_view key, std::vector<model::StringMatch>& out) {
      if (auto n = f.get(key)) {
        r_.forEachItem(*n, f.pathOf(key), [&](const YAML::Node& item, const std::string& p) {
          if (auto sm = readStringMatch(item, p)) out.push_back(std::move(*sm));
        });
      }
    };
    auto accounts = [&](std::string_view key, std::vector<model::ServiceAccountMatch>& out) {
      if (auto n = f.get(key)) {
        r_.forEachItem(*n, f.pathOf(key), [&](const YAML::Node& item, const std::string& p) {
          FieldMap sa(r_, item, p, "service account match", kServiceAccountMatchFields);
          if (!sa.valid()) return;
          model::ServiceAccountMatch match;
          readRequiredString(sa, "namespace", match.namespace_name);
          readRequiredString(sa, "serviceAccount", match.service_account);
          out.push_back(std::move(match));
        });
      }
    };
    auto cidrs = [&](std::string_view key, std::vector<Cidr>& out) {
      if (auto n = f.get(key)) {
        r_.forEachItem(*n, f.pathOf(key), [&](const YAML::Node& item, const std::string& p) {
          if (auto c = r_.readCidr(item, p)) out.push_back(*c);
        });
      }
    };
    auto ports = [&](std::string_view key, std::vector<uint16_t>& out) {
      if (auto n = f.get(key)) {
        r_.forEachItem(*n, f.pathOf(key), [&](const YAML::Node& item, const std::string& p) {
          if (auto port = r_.readPort(item, p)) out.push_back(*port);
        });
      }
    };
    strings("namespaces", m.namespaces);
    strings("notNamespaces", m.not_namespaces);
    accounts("serviceAccounts", m.service_accounts);
    accounts("notServiceAccounts", m.not_service_accounts);
    strings("principals", m.principals);
    strings("notPrincipals", m.not_principals);
    for (const auto* list : {&m.principals, &m.not_principals}) {
      for (const auto& sm : *list) {
        if (sm.value.starts_with("spiffe://")) {
          r_.warning(node, path,
                     "principal '" + sm.value +
                         "' includes the spiffe:// scheme; principals are written without it "
                         "(e.g. cluster.local/ns/default/sa/app), so this one never matches");
        }
      }
    }
    cidrs("sourceIps", m.source_ips);
    cidrs("notSourceIps", m.not_source_ips);
    cidrs("destinationIps", m.destination_ips);
    cidrs("notDestinationIps", m.not_destination_ips);
    ports("destinationPorts", m.destination_ports);
    ports("notDestinationPorts", m.not_destination_ports);
    // Only the names are kept: the values cannot be checked at L4. An empty list names nothing
    // (istiod flags a field only when it has values).
    for (std::string_view key : kL7MatchFields) {
      if (auto n = f.get(key)) {
        std::vector<std::string> values;
        readStringList(*n, f.pathOf(key), values);
        if (!values.empty()) m.l7_fields.emplace_back(key);
      }
    }
    return m;
  }

  // ztunnel's StringMatch is an externally tagged enum: {Exact: v}, {Prefix: v}, {Suffix: v},
  // {Presence: []}; serde_yaml also reads the tag form (!Exact v).
  std::optional<model::StringMatch> readStringMatch(const YAML::Node& node,
                                                    const std::string& path) {
    static constexpr std::string_view kKinds = "Exact, Prefix, Suffix, Presence";
    // Never assign to a YAML::Node: assignment writes through to the document.
    if (node.IsMap() && node.size() == 1) {
      const auto& entry = *node.begin();
      if (!entry.first.IsScalar()) {
        r_.problem(entry.first, path, "expected a string match key (" + std::string(kKinds) + ")");
        return std::nullopt;
      }
      return readStringMatchValue(entry.first, entry.first.Scalar(), entry.second, path);
    }
    if (node.Tag().size() > 1 && node.Tag()[0] == '!') {
      return readStringMatchValue(node, node.Tag().substr(1), node, path);
    }
    if (node.IsMap()) {
      r_.problem(node, path,
                 "a string match has exactly one key (" + std::string(kKinds) + "), got " +
                     std::to_string(node.size()));
      return std::nullopt;
    }
    r_.problem(node, path,
               "expected a string match such as {Exact: value}, {Prefix: value}, "
               "{Suffix: value} or {Presence: []}, got " +
                   YamlReader::describe(node));
    return std::nullopt;
  }

  std::optional<model::StringMatch> readStringMatchValue(const YAML::Node& kind_node,
                                                         const std::string& kind,
                                                         const YAML::Node& value,
                                                         const std::string& path) {
    using Kind = model::StringMatch::Kind;
    if (kind == "Presence") {
      // A tuple variant without fields: serde_yaml reads it from an empty list.
      if (value.IsNull() || (value.IsSequence() && value.size() == 0)) {
        return model::StringMatch::presence();
      }
      r_.problem(value, path, "Presence takes no value: write {Presence: []}");
      return std::nullopt;
    }
    std::optional<Kind> k;
    if (kind == "Exact") k = Kind::Exact;
    if (kind == "Prefix") k = Kind::Prefix;
    if (kind == "Suffix") k = Kind::Suffix;
    if (!k) {
      r_.problem(
          kind_node, path,
          "unknown string match '" + kind + "'; expected one of: Exact, Prefix, Suffix, Presence");
      return std::nullopt;
    }
    if (!value.IsScalar()) {
      r_.problem(value, path, kind + " expects a string, got " + YamlReader::describe(value));
      return std::nullopt;
    }
    return model::StringMatch{*k, value.Scalar()};
  }

  // ---- cross references ----

  void checkReferences() {
    if (policies_ok_) {
      for (const Reference& ref : policy_refs_) {
        if (policy_lines_.count(ref.key) == 0) {
          r_.problem(ref.node, ref.path,
                     "workload references policy '" + ref.key +
                         "', which is not defined (policies are named namespace/name)");
        }
      }
    }
    // ztunnel keeps endpoints of services it has not seen yet (staged until the service
    // arrives), so this is only a warning.
    for (const Reference& ref : service_refs_) {
      if (service_lines_.count(ref.key) == 0) {
        r_.warning(ref.node, ref.path,
                   "workload backs service '" + ref.key + "', which this file does not define");
      }
    }
  }

  YamlReader r_;
  std::string_view text_;
  std::vector<Workload> workloads_;
  std::vector<Service> services_;
  std::vector<Authorization> policies_;
  std::map<std::string, int, std::less<>> workload_lines_;
  std::map<std::string, int, std::less<>> service_lines_;
  std::map<std::string, int, std::less<>> policy_lines_;
  std::vector<Reference> policy_refs_;
  std::vector<Reference> service_refs_;
  bool policies_ok_ = true;
};

}  // namespace

std::string ConfigProblem::toString() const {
  return file + ":" + std::to_string(line) + ": " + reason;
}

std::string LoadResult::problemsText() const {
  std::string out;
  for (const ConfigProblem& p : problems) {
    if (!out.empty()) out += '\n';
    out += p.toString();
  }
  return out;
}

LoadResult parseLocalConfig(std::string_view yaml_text, const std::string& file_name_for_messages) {
  return LocalConfigParser(yaml_text, file_name_for_messages).run();
}

Result<std::string> readLocalConfigFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::fromErrno("cannot open config file");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::fromErrno("cannot stat config file");
  if (!S_ISREG(st.st_mode)) return Error::invalid("not a regular file");
  if (st.st_size > kMaxFileBytes) {
    return Error{EFBIG, "config file is " + std::to_string(st.st_size) + " bytes; the limit is " +
                            std::to_string(kMaxFileBytes)};
  }
  std::string text;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::fromErrno("cannot read config file");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > static_cast<size_t>(kMaxFileBytes)) {
      return Error{EFBIG, "config file grew beyond " + std::to_string(kMaxFileBytes) + " bytes"};
    }
  }
  return text;
}

LoadResult loadLocalConfigFile(const std::string& path) {
  auto text = readLocalConfigFile(path);
  if (!text) {
    LoadResult result;
    result.problems.push_back(ConfigProblem{path, 0, text.error().message});
    return result;
  }
  return parseLocalConfig(*text, path);
}

}  // namespace nodemesh::config
