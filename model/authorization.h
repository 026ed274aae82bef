#pragma once

// An L4 authorization policy as Istio's security API describes it (istio.security.Authorization;
// ztunnel's rbac::Authorization). The evaluation semantics live in policy/; this is only data.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/ip_address.h"
#include "model/address.h"

namespace nodemesh::model {

// Which workloads a policy applies to: every workload in the mesh (a policy in the root
// namespace), every workload in the policy's namespace, or only the workloads that list the
// policy in their `authorization_policies`.
enum class PolicyScope { Global, Namespace, WorkloadSelector };
enum class PolicyAction { Allow, Deny };

std::string_view toString(PolicyScope scope);    // "Global", "Namespace", "WorkloadSelector"
std::string_view toString(PolicyAction action);  // "Allow", "Deny"

struct StringMatch {
  enum class Kind { Exact, Prefix, Suffix, Presence };
  Kind kind = Kind::Exact;
  std::string value;  // empty for Presence

  static StringMatch exact(std::string v) { return {Kind::Exact, std::move(v)}; }
  static StringMatch prefix(std::string v) { return {Kind::Prefix, std::move(v)}; }
  static StringMatch suffix(std::string v) { return {Kind::Suffix, std::move(v)}; }
  static StringMatch presence() { return {Kind::Presence, {}}; }

  // Presence matches any non-empty value.
  bool matches(std::string_view candidate) const;
  std::string toString() const;  // "Exact(foo)", "Presence()"
  bool operator==(const StringMatch&) const = default;
};

// Istio's HTTP string form, as AuthorizationPolicy writes `methods`, `paths`, `hosts` and
// `requestPrincipals`: "*" is Presence, "x*" Prefix(x), "*x" Suffix(x), anything else Exact.
StringMatch istioStringMatch(std::string_view text);

// One `when` condition of Istio's AuthorizationPolicy: the attribute named by `key` must have one
// of `values` (when given) and none of `not_values`. Values use the Istio string form above,
// except for the IP keys, whose values are CIDRs or addresses (kept as written and parsed by
// the config loader, which rejects bad ones).
struct Condition {
  enum class Key {
    kRequestHeader,    // request.headers[name]
    kAuthPrincipal,    // request.auth.principal ("iss/sub" of the validated JWT)
    kAuthAudiences,    // request.auth.audiences
    kAuthPresenter,    // request.auth.presenter (azp)
    kAuthClaim,        // request.auth.claims[a] or [a][b]...
    kSourcePrincipal,  // source.principal
    kSourceNamespace,  // source.namespace
    kSourceIp,         // source.ip
    kRemoteIp,         // remote.ip (the original client: same as source.ip here)
    kDestinationIp,    // destination.ip
    kDestinationPort,  // destination.port
  };
  Key key = Key::kRequestHeader;
  std::string key_text;                 // as written: "request.headers[x-user]"
  std::string header;                   // kRequestHeader: the name, lowercase
  std::vector<std::string> claim_path;  // kAuthClaim: ["a", "b"] for claims[a][b]
  std::vector<StringMatch> values;
  std::vector<StringMatch> not_values;
  std::vector<Cidr> ips;  // the IP keys: values as CIDRs
  std::vector<Cidr> not_ips;
  std::vector<uint16_t> ports;  // kDestinationPort
  std::vector<uint16_t> not_ports;

  // True for keys only an HTTP proxy can check (request.*).
  bool isL7() const;
  bool operator==(const Condition&) const = default;
};

// Matches a peer whose identity has exactly this namespace and service account.
struct ServiceAccountMatch {
  std::string namespace_name;
  std::string service_account;

  bool operator==(const ServiceAccountMatch&) const = default;
};

// One match: every field that is set must match (AND); the values of one field are OR'd; a
// `not_` field matches when none of its values match. Principals are written without the
// "spiffe://" scheme ("cluster.local/ns/shop/sa/frontend"), as in Istio.
//
// `l7_fields` names the HTTP attributes of Istio's AuthorizationPolicy that the match mentions
// (config keys such as "methods", "notPaths", "requestPrincipals", "when"), and the fields
// below them hold their values. An L4 data plane cannot check them; policy/ applies Istio's
// rules for them there (see docs/policy.md): a rule naming one never matches in an ALLOW
// policy, and the attribute counts as matched in a DENY policy. The waypoint checks them per
// request.
struct Match {
  std::vector<StringMatch> namespaces;
  std::vector<StringMatch> not_namespaces;
  std::vector<ServiceAccountMatch> service_accounts;
  std::vector<ServiceAccountMatch> not_service_accounts;
  std::vector<StringMatch> principals;
  std::vector<StringMatch> not_principals;
  std::vector<Cidr> source_ips;
  std::vector<Cidr> not_source_ips;
  std::vector<Cidr> destination_ips;
  std::vector<Cidr> not_destination_ips;
  std::vector<uint16_t> destination_ports;
  std::vector<uint16_t> not_destination_ports;
  std::vector<std::string> l7_fields;
  // HTTP attributes (Istio's Operation and Source fields), in the Istio string form.
  std::vector<StringMatch> hosts;  // compared lowercase, port stripped
  std::vector<StringMatch> not_hosts;
  std::vector<StringMatch> methods;
  std::vector<StringMatch> not_methods;
  std::vector<StringMatch> paths;  // the path without its query
  std::vector<StringMatch> not_paths;
  std::vector<StringMatch> request_principals;  // "iss/sub" of the validated JWT
  std::vector<StringMatch> not_request_principals;
  std::vector<Cidr> remote_ip_blocks;  // the original client's address
  std::vector<Cidr> not_remote_ip_blocks;
  // AND'd; a condition on an L4 key (source.*, destination.*) is checked at L4 too.
  std::vector<Condition> when;
  // Opaque extensions istiod attached to the match (kept, not evaluated).
  std::vector<Extension> extensions;

  // A match with no fields set, L4 or L7, never matches (ztunnel skips it).
  bool empty() const;
  // True when none of the L4 fields above is set (the match may still name L7 attributes).
  bool l4Empty() const;
  bool operator==(const Match&) const = default;
};

// Matches are OR'd within a clause; clauses are AND'd within a rule; rules are OR'd.
using Clause = std::vector<Match>;
using Rule = std::vector<Clause>;

struct Authorization {
  std::string name;
  std::string namespace_name;
  PolicyScope scope = PolicyScope::WorkloadSelector;
  PolicyAction action = PolicyAction::Allow;
  // A dry-run policy is evaluated and logged but does not decide the connection.
  bool dry_run = false;
  std::vector<Rule> rules;
  // Opaque extensions istiod attached to the policy (kept, not evaluated).
  std::vector<Extension> extensions;

  // "namespace/name", the key workloads use in `authorization_policies`.
  std::string key() const { return namespace_name + "/" + name; }
  bool operator==(const Authorization&) const = default;
};

}  // namespace nodemesh::model
