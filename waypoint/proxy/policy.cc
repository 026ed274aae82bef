#include "waypoint/proxy/policy.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace nodemesh::waypoint {

std::string_view PolicyDecision::result() const {
  if (outcome == policy::Outcome::NoPolicy) return "-";
  return allowed ? "allow" : "deny";
}

policy::RequestAttributes requestAttributes(const RequestHead& head, std::string& host,
                                            std::string& path) {
  // Istio matches `hosts` case-insensitively and ignores the port of the authority.
  host = hostWithoutPort(head.authority);  // lowercase too
  // Envoy's RBAC `paths` (url_path) ignore the query string.
  path = std::string(pathWithoutQuery(head.path));
  policy::RequestAttributes attrs;
  attrs.method = head.method;
  attrs.host = host;
  attrs.path = path;
  attrs.header = [&head](std::string_view name) -> std::optional<std::string> {
    if (name == "host" || name == ":authority") return head.authority;
    if (name == ":method") return head.method;
    if (name == ":path") return head.path;
    return headerValue(head.headers, name);
  };
  return attrs;
}

void WaypointPolicy::setSnapshot(const model::SnapshotPtr& snapshot) {
  authorizer_ = snapshot ? std::make_shared<const policy::Authorizer>(snapshot) : nullptr;
}

PolicyDecision WaypointPolicy::check(const PolicyFacts& facts) const {
  PolicyDecision d;
  if (!authorizer_ || !facts.destination) return d;
  policy::ConnectionAttributes attrs;
  // Without a forwarded address the source IP is unknown: the unspecified address matches no
  // sourceIps rule (and every notSourceIps rule), as for a client the agent could not see.
  if (facts.source_address) attrs.source_ip = facts.source_address->ip;
  attrs.destination_ip = facts.destination_address.ip;
  attrs.destination_port = facts.destination_address.port;
  if (!facts.source_principal.empty()) attrs.source_identity = facts.source_principal;
  attrs.request = facts.request;
  policy::Verdict verdict = authorizer_->check(*facts.destination, attrs);
  d.allowed = verdict.allowed;
  d.outcome = verdict.outcome;
  d.rule = verdict.rule;
  d.reason = verdict.reason();
  d.policy = std::string(verdict.policy);
  for (std::string_view unmatched : verdict.unmatched_allow) {
    if (!d.policy.empty()) d.policy += ',';
    d.policy += unmatched;
  }
  if (verdict.dry_run_allowed != verdict.allowed || !verdict.dry_run.empty()) {
    std::string matched;
    for (const auto& m : verdict.dry_run) matched += fmt::format(" {}#{}", m.policy, m.rule);
    spdlog::info("waypoint: dry-run policies for {} -> {}: would be {}; matched:{}",
                 facts.source_principal, facts.destination_address.toString(),
                 verdict.dry_run_allowed ? "allowed" : "denied",
                 matched.empty() ? " none" : matched);
  }
  return d;
}

PolicyDecision WaypointPolicy::authorize(PolicySubject subject, const PolicyFacts& facts) {
  PolicyDecision d = check(facts);
  if (d.allowed) return d;
  const bool request = subject == PolicySubject::kRequest;
  ++(request ? stats_.denied_requests : stats_.denied_connections);
  spdlog::info("waypoint: {} from {} ({}) to {} ({}/{}) denied: {}",
               request ? "request" : "connection",
               facts.source_address ? facts.source_address->toString() : "?",
               facts.source_principal.empty() ? "no identity" : facts.source_principal,
               facts.destination_address.toString(), facts.destination->namespace_name,
               facts.destination->name, d.reason);
  return d;
}

}  // namespace nodemesh::waypoint
