// LocalConfigParser: the `policies` section (rules, matches, string matches).

#include "config/local/local_config_parser.h"

#include <span>
#include <utility>

namespace nodemesh::config::local_internal {

namespace {

// Field names exactly as ztunnel's serde structs spell them (rename_all = "camelCase").
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
