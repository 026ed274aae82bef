#include "agent/explain/policy_check.h"

namespace nodemesh::agent::explain {

PolicyVerdict AuthorizerChecker::check(const model::Workload& destination,
                                       const ConnectionFacts& facts) const {
  policy::ConnectionAttributes attrs;
  attrs.source_ip = facts.source_ip;
  attrs.destination_ip = facts.destination_ip;
  attrs.destination_port = facts.destination_port;
  if (facts.source_identity) attrs.source_identity = *facts.source_identity;
  policy::Verdict v = authorizer_.check(destination, attrs);
  PolicyVerdict out;
  out.allowed = v.allowed;
  out.outcome = std::string(policy::toString(v.outcome));
  out.policy = std::string(v.policy);
  out.rule = v.rule;
  out.reason = v.reason();
  if (!facts.source_identity && v.outcome == policy::Outcome::NoAllowMatched) {
    out.reason += " (plaintext: no client identity)";
  }
  return out;
}

std::vector<std::string> AuthorizerChecker::applicable(const model::Workload& destination) const {
  std::vector<std::string> out;
  for (const auto* p : authorizer_.applicable(destination)) {
    out.push_back(p->key() + (p->dry_run ? " (dry run)" : ""));
  }
  return out;
}

}  // namespace nodemesh::agent::explain
