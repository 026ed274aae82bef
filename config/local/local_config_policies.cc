// LocalConfigParser: the `policies` section (rules, matches, string matches).

#include "config/local/local_config_parser.h"

#include <algorithm>
#include <cctype>
#include <span>
#include <utility>

namespace nodemesh::config::local_internal {

namespace {

// Field names exactly as ztunnel's serde structs spell them (rename_all = "camelCase").
constexpr std::string_view kPolicyFields[] = {"name",   "namespace", "scope",
                                              "action", "rules",     "dryRun"};
// The L4 fields are ztunnel's; the HTTP ones (hosts ... when) are the attributes of Istio's
// AuthorizationPolicy that istiod's ambient conversion flags as needing a waypoint
// (httpOperations / httpSources, conditions). ztunnel's format has no place for them; nodemesh
// keeps them for the waypoint, and the node agent gives them Istio's L4 treatment.
// Four per row (clang-format would put one per line).
// clang-format off
constexpr std::string_view kMatchFields[] = {
    "namespaces",     "notNamespaces",     "serviceAccounts",   "notServiceAccounts",
    "principals",     "notPrincipals",     "sourceIps",         "notSourceIps",
    "destinationIps", "notDestinationIps", "destinationPorts",  "notDestinationPorts",
    "hosts",          "notHosts",          "methods",           "notMethods",
    "paths",          "notPaths",          "requestPrincipals", "notRequestPrincipals",
    "remoteIpBlocks", "notRemoteIpBlocks", "when"};
// clang-format on
constexpr size_t kL4MatchFieldCount = 12;
constexpr std::span<const std::string_view> kL7MatchFields =
    std::span(kMatchFields).subspan(kL4MatchFieldCount);
static_assert(kL7MatchFields.front() == "hosts" && kL7MatchFields.size() == 11);
constexpr std::string_view kServiceAccountMatchFields[] = {"namespace", "serviceAccount"};
constexpr std::string_view kConditionFields[] = {"key", "values", "notValues"};

using Key = model::Condition::Key;

// The `when` keys Istio documents for AuthorizationPolicy conditions that nodemesh checks
// (https://istio.io/latest/docs/reference/config/security/conditions/), without brackets.
constexpr std::pair<std::string_view, Key> kConditionKeys[] = {
    {"request.auth.principal", Key::kAuthPrincipal},
    {"request.auth.audiences", Key::kAuthAudiences},
    {"request.auth.presenter", Key::kAuthPresenter},
    {"source.principal", Key::kSourcePrincipal},
    {"source.namespace", Key::kSourceNamespace},
    {"source.ip", Key::kSourceIp},
    {"remote.ip", Key::kRemoteIp},
    {"destination.ip", Key::kDestinationIp},
    {"destination.port", Key::kDestinationPort},
};

// "[a][b]" -> {"a", "b"}; nullopt when malformed (no brackets, an empty or unclosed one).
std::optional<std::vector<std::string>> bracketPath(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    if (text.front() != '[') return std::nullopt;
    size_t close = text.find(']');
    if (close == std::string_view::npos || close == 1) return std::nullopt;
    out.emplace_back(text.substr(1, close - 1));
    text.remove_prefix(close + 1);
  }
  if (out.empty()) return std::nullopt;
  return out;
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

void LocalConfigParser::parsePolicy(const YAML::Node& node, const std::string& path) {
  FieldMap f(r_, node, path, "policy", kPolicyFields);
  if (!f.valid()) return;
  Authorization p;
  auto name = f.require("name");
  if (name) {
    if (auto s = r_.readString(*name, f.pathOf("name"))) p.name = *s;
  }
  readRequiredString(f, "namespace", p.namespace_name);
  Located located = name ? Located{*name, f.pathOf("name")} : Located{node, path};
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
    r_.forEachItem(
        *rules, f.pathOf("rules"), [&](const YAML::Node& rule_node, const std::string& rule_path) {
          model::Rule& rule = p.rules.emplace_back();
          r_.forEachItem(rule_node, rule_path,
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
  policy_nodes_.push_back(std::move(located));
}

// Istio reports the same through the policy's status ("ztunnel does not support HTTP
// attributes"); the semantics are policy/'s (docs/policy.md).
void LocalConfigParser::warnL7(const YAML::Node& at, const std::string& path,
                               const Authorization& p, const std::set<std::string>& names) {
  std::string list;
  for (const std::string& name : names) {
    if (!list.empty()) list += ", ";
    list += name;
  }
  std::string text = "policy '" + p.key() + "' names HTTP attributes (" + list +
                     ") that the node agent (L4) cannot check; ";
  if (p.action == model::PolicyAction::Allow) {
    text +=
        "in an ALLOW policy a rule naming them never matches, so the policy allows less than "
        "written (a policy with only such rules allows nothing)";
  } else {
    text +=
        "in a DENY policy they count as matched, so the policy denies more than written (all "
        "traffic its L4 fields match)";
  }
  r_.warning(at, path,
             text + "; a waypoint checks them per request for the services that have one");
}

model::Match LocalConfigParser::parseMatch(const YAML::Node& node, const std::string& path) {
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
  // HTTP attributes in Istio's string form ("*", "x*", "*x", exact). Their names go in
  // l7_fields for the L4 evaluator; an empty list names nothing (istiod flags a field only when
  // it has values).
  auto http = [&](std::string_view key, std::vector<model::StringMatch>& out, bool lower) {
    auto n = f.get(key);
    if (!n) return;
    std::vector<std::string> values;
    readStringList(*n, f.pathOf(key), values);
    for (const std::string& v : values) {
      if (v.empty()) {
        r_.problem(*n, f.pathOf(key), "an empty " + std::string(key) + " value matches nothing");
        continue;
      }
      out.push_back(model::istioStringMatch(lower ? lowercase(v) : v));
    }
    if (!values.empty()) m.l7_fields.emplace_back(key);
  };
  http("hosts", m.hosts, /*lower=*/true);
  http("notHosts", m.not_hosts, /*lower=*/true);
  http("methods", m.methods, false);
  http("notMethods", m.not_methods, false);
  http("paths", m.paths, false);
  http("notPaths", m.not_paths, false);
  http("requestPrincipals", m.request_principals, false);
  http("notRequestPrincipals", m.not_request_principals, false);
  for (auto [key, out] : {std::pair{"remoteIpBlocks", &m.remote_ip_blocks},
                          std::pair{"notRemoteIpBlocks", &m.not_remote_ip_blocks}}) {
    cidrs(key, *out);
    if (!out->empty()) m.l7_fields.emplace_back(key);
  }
  if (auto n = f.get("when")) {
    r_.forEachItem(*n, f.pathOf("when"), [&](const YAML::Node& item, const std::string& p) {
      if (auto c = parseCondition(item, p)) m.when.push_back(std::move(*c));
    });
    if (std::any_of(m.when.begin(), m.when.end(), [](const auto& c) { return c.isL7(); })) {
      m.l7_fields.emplace_back("when");
    }
  }
  return m;
}

std::optional<model::Condition> LocalConfigParser::parseCondition(const YAML::Node& node,
                                                                  const std::string& path) {
  FieldMap f(r_, node, path, "when condition", kConditionFields);
  if (!f.valid()) return std::nullopt;
  model::Condition c;
  auto key_node = f.require("key");
  if (!key_node) return std::nullopt;
  auto key = r_.readString(*key_node, f.pathOf("key"));
  if (!key) return std::nullopt;
  c.key_text = *key;
  auto bad_key = [&](const std::string& why) {
    r_.problem(*key_node, f.pathOf("key"), "when key '" + *key + "': " + why);
    return std::nullopt;
  };
  std::string_view k = *key;
  if (k.starts_with("request.headers")) {
    auto names = bracketPath(k.substr(std::string_view("request.headers").size()));
    if (!names || names->size() != 1) return bad_key("expected request.headers[<name>]");
    c.key = Key::kRequestHeader;
    c.header = lowercase(names->front());
  } else if (k.starts_with("request.auth.claims")) {
    auto names = bracketPath(k.substr(std::string_view("request.auth.claims").size()));
    if (!names) return bad_key("expected request.auth.claims[<name>] or [<a>][<b>]...");
    c.key = Key::kAuthClaim;
    c.claim_path = std::move(*names);
  } else {
    auto it = std::find_if(std::begin(kConditionKeys), std::end(kConditionKeys),
                           [&](const auto& e) { return e.first == k; });
    if (it == std::end(kConditionKeys)) {
      return bad_key(
          "unknown or unsupported key; supported: request.headers[<name>], "
          "request.auth.principal, request.auth.audiences, request.auth.presenter, "
          "request.auth.claims[<name>], source.principal, source.namespace, source.ip, "
          "remote.ip, destination.ip, destination.port");
    }
    c.key = it->second;
  }
  const bool ip_key =
      c.key == Key::kSourceIp || c.key == Key::kRemoteIp || c.key == Key::kDestinationIp;
  auto values = [&](std::string_view field, std::vector<model::StringMatch>& strings,
                    std::vector<Cidr>& ips, std::vector<uint16_t>& ports) {
    auto n = f.get(field);
    if (!n) return;
    if (ip_key) {
      r_.forEachItem(*n, f.pathOf(field), [&](const YAML::Node& item, const std::string& p) {
        if (auto cidr = r_.readCidr(item, p)) ips.push_back(*cidr);
      });
    } else if (c.key == Key::kDestinationPort) {
      r_.forEachItem(*n, f.pathOf(field), [&](const YAML::Node& item, const std::string& p) {
        if (auto port = r_.readPort(item, p)) ports.push_back(*port);
      });
    } else {
      std::vector<std::string> list;
      readStringList(*n, f.pathOf(field), list);
      for (const std::string& v : list) strings.push_back(model::istioStringMatch(v));
    }
  };
  values("values", c.values, c.ips, c.ports);
  values("notValues", c.not_values, c.not_ips, c.not_ports);
  if (!f.get("values") && !f.get("notValues")) {
    r_.problem(node, path, "a when condition needs values or notValues (Istio requires one)");
    return std::nullopt;
  }
  return c;
}

// ztunnel's StringMatch is an externally tagged enum: {Exact: v}, {Prefix: v}, {Suffix: v},
// {Presence: []}; serde_yaml also reads the tag form (!Exact v).
std::optional<model::StringMatch> LocalConfigParser::readStringMatch(const YAML::Node& node,
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

std::optional<model::StringMatch> LocalConfigParser::readStringMatchValue(
    const YAML::Node& kind_node, const std::string& kind, const YAML::Node& value,
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

}  // namespace nodemesh::config::local_internal
