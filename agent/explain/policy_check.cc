#include "agent/explain/policy_check.h"

#include <algorithm>

#include "ztunnel/identity/spiffe_id.h"

namespace nodemesh::agent::explain {

namespace {

struct Peer {
  std::optional<ztunnel::identity::SpiffeId> id;
  std::string principal;  // without "spiffe://", as policies write it
};

bool anyString(const std::vector<model::StringMatch>& matches, const std::string& value) {
  return std::any_of(matches.begin(), matches.end(),
                     [&](const model::StringMatch& m) { return m.matches(value); });
}

bool anyCidr(const std::vector<Cidr>& cidrs, const IpAddress& ip) {
  return std::any_of(cidrs.begin(), cidrs.end(), [&](const Cidr& c) { return c.contains(ip); });
}

bool anyPort(const std::vector<uint16_t>& ports, uint16_t port) {
  return std::find(ports.begin(), ports.end(), port) != ports.end();
}

bool anyAccount(const std::vector<model::ServiceAccountMatch>& accounts, const Peer& peer) {
  if (!peer.id) return false;
  return std::any_of(accounts.begin(), accounts.end(), [&](const model::ServiceAccountMatch& a) {
    return a.namespace_name == peer.id->ns() &&
           a.service_account == peer.id->serviceAccount();
  });
}

bool matches(const model::Match& m, const ConnectionFacts& f, const Peer& peer) {
  if (m.empty()) return false;
  const std::string ns = peer.id ? peer.id->ns() : "";
  // Identity fields: a positive field needs an identity; a `not` field holds without one.
  if (!m.namespaces.empty() && !(peer.id && anyString(m.namespaces, ns))) return false;
  if (!m.not_namespaces.empty() && peer.id && anyString(m.not_namespaces, ns)) return false;
  if (!m.principals.empty() && !(peer.id && anyString(m.principals, peer.principal))) {
    return false;
  }
  if (!m.not_principals.empty() && peer.id && anyString(m.not_principals, peer.principal)) {
    return false;
  }
  if (!m.service_accounts.empty() && !anyAccount(m.service_accounts, peer)) return false;
  if (!m.not_service_accounts.empty() && anyAccount(m.not_service_accounts, peer)) return false;
  if (!m.source_ips.empty() && !anyCidr(m.source_ips, f.source_ip)) return false;
  if (!m.not_source_ips.empty() && anyCidr(m.not_source_ips, f.source_ip)) return false;
  if (!m.destination_ips.empty() && !anyCidr(m.destination_ips, f.destination_ip)) return false;
  if (!m.not_destination_ips.empty() && anyCidr(m.not_destination_ips, f.destination_ip)) {
    return false;
  }
  if (!m.destination_ports.empty() && !anyPort(m.destination_ports, f.destination_port)) {
    return false;
  }
  if (!m.not_destination_ports.empty() && anyPort(m.not_destination_ports, f.destination_port)) {
    return false;
  }
  return true;
}

// The first rule of the policy that matches.
std::optional<size_t> matchingRule(const model::Authorization& p, const ConnectionFacts& f,
                                   const Peer& peer) {
  for (size_t i = 0; i < p.rules.size(); ++i) {
    const model::Rule& rule = p.rules[i];
    bool all = std::all_of(rule.begin(), rule.end(), [&](const model::Clause& clause) {
      return std::any_of(clause.begin(), clause.end(),
                         [&](const model::Match& m) { return matches(m, f, peer); });
    });
    if (all) return i;
  }
  return std::nullopt;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

std::vector<const model::Authorization*> LocalPolicyChecker::applicablePolicies(
    const model::Workload& w) const {
  std::vector<const model::Authorization*> out;
  if (!snapshot_) return out;
  for (const model::Authorization& p : snapshot_->policies()) {
    bool applies = false;
    switch (p.scope) {
      case model::PolicyScope::Global:
        applies = true;
        break;
      case model::PolicyScope::Namespace:
        applies = p.namespace_name == w.namespace_name;
        break;
      case model::PolicyScope::WorkloadSelector:
        applies = std::find(w.authorization_policies.begin(), w.authorization_policies.end(),
                            p.key()) != w.authorization_policies.end();
        break;
    }
    if (applies) out.push_back(&p);
  }
  return out;
}

std::vector<std::string> LocalPolicyChecker::applicable(const model::Workload& w) const {
  std::vector<std::string> out;
  for (const auto* p : applicablePolicies(w)) out.push_back(p->key());
  return out;
}

PolicyVerdict LocalPolicyChecker::check(const model::Workload& w,
                                        const ConnectionFacts& f) const {
  Peer peer;
  if (f.source_identity) {
    auto id = ztunnel::identity::SpiffeId::parse(*f.source_identity);
    if (id) {
      peer.id = *id;
      const std::string kScheme = "spiffe://";
      peer.principal = f.source_identity->rfind(kScheme, 0) == 0
                           ? f.source_identity->substr(kScheme.size())
                           : *f.source_identity;
    }
  }
  const auto policies = applicablePolicies(w);
  for (const auto* p : policies) {
    if (p->dry_run || p->action != model::PolicyAction::Deny) continue;
    if (auto rule = matchingRule(*p, f, peer)) {
      return {false, p->key(), rule,
              "DENY policy " + p->key() + " rule " + std::to_string(*rule) + " matches"};
    }
  }
  std::vector<std::string> allows;
  for (const auto* p : policies) {
    if (p->dry_run || p->action != model::PolicyAction::Allow) continue;
    allows.push_back(p->key());
    if (auto rule = matchingRule(*p, f, peer)) {
      return {true, p->key(), rule,
              "ALLOW policy " + p->key() + " rule " + std::to_string(*rule) + " matches"};
    }
  }
  if (allows.empty()) {
    return {true, "", std::nullopt,
            policies.empty() ? "no policy applies to the workload: allowed"
                             : "no DENY policy matches and no ALLOW policy applies: allowed"};
  }
  return {false, "", std::nullopt,
          "ALLOW policies apply (" + join(allows) + ") and none matches" +
              (f.source_identity ? "" : " (plaintext: no client identity)")};
}

}  // namespace nodemesh::agent::explain
