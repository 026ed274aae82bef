#include "policy/authorizer.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <utility>

namespace nodemesh::policy {
namespace {

using model::Authorization;
using model::Match;
using model::PolicyAction;
using model::PolicyScope;

constexpr std::string_view kSpiffeScheme = "spiffe://";

// What the policies can know about the peer, parsed once per check without allocating.
struct Peer {
  // The identity without "spiffe://", which is how Istio writes principals. Principals cannot
  // match when the peer has no identity or it lacks the scheme (as in ztunnel).
  std::optional<std::string_view> principal;
  // From "<td>/ns/<ns>/sa/<sa>"; empty when there is no identity or it has another shape, so a
  // plaintext client has namespace "" (ztunnel's unwrap_or_default) and no service account.
  std::string_view namespace_name;
  std::string_view service_account;
  bool has_service_account = false;
};

Peer parsePeer(const std::optional<std::string_view>& identity) {
  Peer peer;
  if (!identity || !identity->starts_with(kSpiffeScheme)) return peer;
  std::string_view rest = identity->substr(kSpiffeScheme.size());
  peer.principal = rest;
  // <td>/ns/<ns>/sa/<sa>: exactly five segments.
  std::string_view segments[5];
  size_t count = 0;
  while (count < 5) {
    size_t slash = rest.find('/');
    segments[count++] = rest.substr(0, slash);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
    if (count == 5) return peer;  // a sixth segment follows
  }
  if (count != 5 || segments[1] != "ns" || segments[3] != "sa") return peer;
  peer.namespace_name = segments[2];
  peer.service_account = segments[4];
  peer.has_service_account = true;
  return peer;
}

// One field pair of a match: at least one positive value must match (when any is given) and no
// negative value may match.
template <typename T, typename Pred>
bool fieldMatches(const std::vector<T>& positive, const std::vector<T>& negative, Pred pred) {
  if (!positive.empty() && std::none_of(positive.begin(), positive.end(), pred)) return false;
  return std::none_of(negative.begin(), negative.end(), pred);
}

// A string-valued attribute against a positive and a negative list. Absent (nullopt): no value
// matches, so a positive list fails and a negative list passes (as Envoy's matchers do).
bool stringField(const std::vector<model::StringMatch>& positive,
                 const std::vector<model::StringMatch>& negative,
                 const std::optional<std::string_view>& value) {
  auto one = [&](const model::StringMatch& s) { return value && s.matches(*value); };
  return fieldMatches(positive, negative, one);
}

// A multi-valued attribute (JWT audiences, a list claim): a pattern matches when one value does.
bool listField(const std::vector<model::StringMatch>& positive,
               const std::vector<model::StringMatch>& negative,
               const std::vector<std::string>* values) {
  auto one = [&](const model::StringMatch& s) {
    return values && std::any_of(values->begin(), values->end(),
                                 [&](const std::string& v) { return s.matches(v); });
  };
  return fieldMatches(positive, negative, one);
}

bool conditionMatches(const model::Condition& c, const Peer& peer,
                      const ConnectionAttributes& conn) {
  using Key = model::Condition::Key;
  const RequestAttributes* req = conn.request;
  const RequestAuth* auth = req ? req->auth : nullptr;
  auto ip = [&](const IpAddress& address) {
    return fieldMatches(c.ips, c.not_ips, [&](const Cidr& cidr) { return cidr.contains(address); });
  };
  switch (c.key) {
    case Key::kRequestHeader: {
      std::optional<std::string> value = req && req->header ? req->header(c.header) : std::nullopt;
      std::optional<std::string_view> view;
      if (value) view = *value;
      return stringField(c.values, c.not_values, view);
    }
    case Key::kAuthPrincipal:
      return stringField(c.values, c.not_values,
                         auth ? std::optional<std::string_view>(auth->principal) : std::nullopt);
    case Key::kAuthPresenter:
      return stringField(c.values, c.not_values,
                         auth && !auth->presenter.empty()
                             ? std::optional<std::string_view>(auth->presenter)
                             : std::nullopt);
    case Key::kAuthAudiences:
      return listField(c.values, c.not_values, auth ? &auth->audiences : nullptr);
    case Key::kAuthClaim: {
      const std::vector<std::string>* values = nullptr;
      if (auth) {
        auto it = auth->claims.find(c.claim_path);
        if (it != auth->claims.end()) values = &it->second;
      }
      return listField(c.values, c.not_values, values);
    }
    case Key::kSourcePrincipal:
      return stringField(c.values, c.not_values, peer.principal);
    case Key::kSourceNamespace:
      return stringField(c.values, c.not_values, peer.namespace_name);
    case Key::kSourceIp:
    case Key::kRemoteIp:
      return ip(conn.source_ip);
    case Key::kDestinationIp:
      return ip(conn.destination_ip);
    case Key::kDestinationPort:
      return fieldMatches(c.ports, c.not_ports,
                          [&](uint16_t p) { return p == conn.destination_port; });
  }
  return false;
}

// The HTTP attributes of a match against one request (the waypoint's check).
bool httpMatches(const Match& m, const RequestAttributes& req, const ConnectionAttributes& conn) {
  std::optional<std::string_view> principal;
  if (req.auth) principal = req.auth->principal;
  auto remote = [&](const Cidr& c) { return c.contains(conn.source_ip); };
  return stringField(m.methods, m.not_methods, req.method) &&
         stringField(m.paths, m.not_paths, req.path) &&
         stringField(m.hosts, m.not_hosts, req.host) &&
         stringField(m.request_principals, m.not_request_principals, principal) &&
         fieldMatches(m.remote_ip_blocks, m.not_remote_ip_blocks, remote);
}

// Without request facts (L4), L7 attributes are not looked at here: a rule naming them in an
// ALLOW policy was dropped before (Compiled::rule_dropped), and in a DENY policy they count as
// matched. With them (the waypoint), they are checked like the L4 fields.
bool matchMatches(const Match& m, const Peer& peer, const ConnectionAttributes& conn) {
  if (m.empty()) return false;  // ztunnel skips a match with no fields
  if (conn.request && !httpMatches(m, *conn.request, conn)) return false;
  for (const model::Condition& c : m.when) {
    if (c.isL7() && !conn.request) continue;
    if (!conditionMatches(c, peer, conn)) return false;
  }
  auto principal = [&](const model::StringMatch& s) {
    return peer.principal && s.matches(*peer.principal);
  };
  auto namespace_name = [&](const model::StringMatch& s) { return s.matches(peer.namespace_name); };
  auto service_account = [&](const model::ServiceAccountMatch& s) {
    return peer.has_service_account && s.namespace_name == peer.namespace_name &&
           s.service_account == peer.service_account;
  };
  auto source = [&](const Cidr& c) { return c.contains(conn.source_ip); };
  auto destination = [&](const Cidr& c) { return c.contains(conn.destination_ip); };
  auto port = [&](uint16_t p) { return p == conn.destination_port; };
  return fieldMatches(m.destination_ips, m.not_destination_ips, destination) &&
         fieldMatches(m.source_ips, m.not_source_ips, source) &&
         fieldMatches(m.destination_ports, m.not_destination_ports, port) &&
         fieldMatches(m.service_accounts, m.not_service_accounts, service_account) &&
         fieldMatches(m.principals, m.not_principals, principal) &&
         fieldMatches(m.namespaces, m.not_namespaces, namespace_name);
}

// Matches OR'd within a clause (an empty clause matches), clauses AND'd within a rule (an empty
// rule matches).
bool ruleMatches(const model::Rule& rule, const Peer& peer, const ConnectionAttributes& conn) {
  return std::all_of(rule.begin(), rule.end(), [&](const model::Clause& clause) {
    return clause.empty() || std::any_of(clause.begin(), clause.end(), [&](const Match& m) {
             return matchMatches(m, peer, conn);
           });
  });
}

// The first rule of `p` that matches, if any, skipping the dropped ones. No rules: never
// matches (an ALLOW with no rules is Istio's allow-nothing).
std::optional<size_t> firstMatchingRule(const Authorization& p,
                                        const std::vector<bool>& rule_dropped, const Peer& peer,
                                        const ConnectionAttributes& conn) {
  for (size_t i = 0; i < p.rules.size(); ++i) {
    if (rule_dropped[i] && !conn.request) continue;  // the waypoint checks L7 rules itself
    if (ruleMatches(p.rules[i], peer, conn)) return i;
  }
  return std::nullopt;
}

bool namesL7(const model::Rule& rule) {
  return std::any_of(rule.begin(), rule.end(), [](const model::Clause& clause) {
    return std::any_of(clause.begin(), clause.end(),
                       [](const Match& m) { return !m.l7_fields.empty(); });
  });
}

}  // namespace

std::string_view toString(Outcome outcome) {
  switch (outcome) {
    case Outcome::NoPolicy:
      return "NoPolicy";
    case Outcome::NoDenyMatched:
      return "NoDenyMatched";
    case Outcome::Denied:
      return "Denied";
    case Outcome::Allowed:
      return "Allowed";
    case Outcome::NoAllowMatched:
      return "NoAllowMatched";
  }
  return "unknown";
}

std::string Verdict::reason() const {
  auto rule_text = [this] { return rule ? " rule " + std::to_string(*rule) : std::string(); };
  switch (outcome) {
    case Outcome::NoPolicy:
      return "no policy applies";
    case Outcome::NoDenyMatched:
      return "no DENY policy matched and no ALLOW policy applies";
    case Outcome::Denied:
      return "denied by DENY policy " + std::string(policy) + rule_text();
    case Outcome::Allowed:
      return "allowed by ALLOW policy " + std::string(policy) + rule_text();
    case Outcome::NoAllowMatched: {
      std::string text = "no ALLOW policy matched (";
      for (size_t i = 0; i < unmatched_allow.size(); ++i) {
        if (i > 0) text += ", ";
        text += unmatched_allow[i];
      }
      return text + ")";
    }
  }
  return "unknown";
}

void Authorizer::PolicySet::add(const Compiled* c) {
  if (std::find(all.begin(), all.end(), c) != all.end()) return;  // listed twice
  all.push_back(c);
  bool is_deny = c->policy->action == PolicyAction::Deny;
  if (c->policy->dry_run) {
    (is_deny ? dry_run_deny : dry_run_allow).push_back(c);
  } else {
    (is_deny ? deny : allow).push_back(c);
  }
}

Authorizer::Authorizer(model::SnapshotPtr snapshot) : snapshot_(std::move(snapshot)) {
  if (!snapshot_) snapshot_ = std::make_shared<const model::Snapshot>();
  const auto& policies = snapshot_->policies();
  compiled_.reserve(policies.size());  // never grows again: the pointers below stay valid
  for (const Authorization& p : policies) {
    Compiled& c = compiled_.emplace_back();
    c.policy = &p;
    c.key = p.key();
    c.rule_dropped.reserve(p.rules.size());
    for (const model::Rule& rule : p.rules) {
      // Istio's ambient conversion omits every ALLOW rule that names an HTTP attribute, so an
      // ALLOW policy whose rules all do allows nothing (fail closed).
      c.rule_dropped.push_back(p.action == PolicyAction::Allow && namesL7(rule));
    }
  }
  for (const Compiled& c : compiled_) by_key_.emplace(c.key, &c);  // first wins, like Snapshot

  for (const Compiled& c : compiled_) {
    if (c.policy->scope == PolicyScope::Global) global_.add(&c);
  }
  for (const Compiled& c : compiled_) {
    if (c.policy->scope != PolicyScope::Namespace) continue;
    auto it = namespace_sets_.find(c.policy->namespace_name);
    if (it == namespace_sets_.end()) {
      it = namespace_sets_.emplace(c.policy->namespace_name, global_).first;
    }
    it->second.add(&c);
  }
  const auto& workloads = snapshot_->workloads();
  workload_set_index_.assign(workloads.size(), -1);
  for (size_t i = 0; i < workloads.size(); ++i) {
    if (workloads[i].authorization_policies.empty()) continue;
    workload_set_index_[i] = static_cast<int>(workload_sets_.size());
    workload_sets_.push_back(buildSet(workloads[i]));
  }
}

const Authorizer::Compiled* Authorizer::compiledByKey(std::string_view key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : it->second;
}

const Authorizer::PolicySet& Authorizer::namespaceSet(std::string_view namespace_name) const {
  auto it = namespace_sets_.find(namespace_name);
  return it == namespace_sets_.end() ? global_ : it->second;
}

Authorizer::PolicySet Authorizer::buildSet(const model::Workload& workload) const {
  PolicySet set = namespaceSet(workload.namespace_name);
  // ztunnel takes the workload's list as istiod computed it (a root-namespace selector policy
  // selects workloads of every namespace) and skips keys it does not know.
  for (const std::string& key : workload.authorization_policies) {
    if (const Compiled* c = compiledByKey(key)) set.add(c);
  }
  return set;
}

const Authorizer::PolicySet* Authorizer::precomputedSet(const model::Workload& destination) const {
  const auto& workloads = snapshot_->workloads();
  if (workloads.empty()) return nullptr;
  // Pointer identity, not uid: a workload from another snapshot may list other policies.
  const model::Workload* first = workloads.data();
  std::less<const model::Workload*> before;
  if (before(&destination, first) || !before(&destination, first + workloads.size())) {
    return nullptr;
  }
  auto index = static_cast<size_t>(&destination - first);
  int set = workload_set_index_[index];
  return set < 0 ? &namespaceSet(destination.namespace_name)
                 : &workload_sets_[static_cast<size_t>(set)];
}

std::vector<const model::Authorization*> Authorizer::applicable(
    const model::Workload& destination) const {
  const PolicySet* set = precomputedSet(destination);
  PolicySet built;
  if (set == nullptr) {
    built = buildSet(destination);
    set = &built;
  }
  std::vector<const model::Authorization*> out;
  out.reserve(set->all.size());
  for (const Compiled* c : set->all) out.push_back(c->policy);
  return out;
}

Verdict Authorizer::check(const model::Workload& destination,
                          const ConnectionAttributes& conn) const {
  const PolicySet* set = precomputedSet(destination);
  PolicySet built;
  if (set == nullptr) {
    if (destination.authorization_policies.empty()) {
      set = &namespaceSet(destination.namespace_name);
    } else {
      built = buildSet(destination);
      set = &built;
    }
  }
  const Peer peer = parsePeer(conn.source_identity);
  Verdict v;

  // Dry-run policies first, every match recorded (ztunnel logs each one): they never decide.
  bool dry_run_denied = false;
  bool dry_run_allow_matched = false;
  for (const Compiled* c : set->dry_run_deny) {
    if (auto rule = firstMatchingRule(*c->policy, c->rule_dropped, peer, conn)) {
      v.dry_run.push_back(RuleMatch{c->key, *rule, PolicyAction::Deny});
      dry_run_denied = true;
    }
  }
  for (const Compiled* c : set->dry_run_allow) {
    if (auto rule = firstMatchingRule(*c->policy, c->rule_dropped, peer, conn)) {
      v.dry_run.push_back(RuleMatch{c->key, *rule, PolicyAction::Allow});
      dry_run_allow_matched = true;
    }
  }

  // "If there are any DENY policies that match the request, deny the request."
  for (const Compiled* c : set->deny) {
    if (auto rule = firstMatchingRule(*c->policy, c->rule_dropped, peer, conn)) {
      v.allowed = false;
      v.dry_run_allowed = false;
      v.outcome = Outcome::Denied;
      v.policy = c->key;
      v.rule = rule;
      return v;
    }
  }
  // With the dry-run policies enforced too, the ALLOW policies would be the union of both.
  bool any_allow_policy = !set->allow.empty() || !set->dry_run_allow.empty();
  // "If there are no ALLOW policies for the workload, allow the request."
  if (set->allow.empty()) {
    v.outcome = set->deny.empty() ? Outcome::NoPolicy : Outcome::NoDenyMatched;
    v.dry_run_allowed = !dry_run_denied && (!any_allow_policy || dry_run_allow_matched);
    return v;
  }
  // "If any of the ALLOW policies match the request, allow the request."
  for (const Compiled* c : set->allow) {
    if (auto rule = firstMatchingRule(*c->policy, c->rule_dropped, peer, conn)) {
      v.outcome = Outcome::Allowed;
      v.policy = c->key;
      v.rule = rule;
      v.dry_run_allowed = !dry_run_denied;
      return v;
    }
  }
  // "Deny the request."
  v.allowed = false;
  v.outcome = Outcome::NoAllowMatched;
  v.unmatched_allow.reserve(set->allow.size());
  for (const Compiled* c : set->allow) v.unmatched_allow.emplace_back(c->key);
  v.dry_run_allowed = !dry_run_denied && dry_run_allow_matched;
  return v;
}

}  // namespace nodemesh::policy
