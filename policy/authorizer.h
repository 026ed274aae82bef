#pragma once

// L4 authorization with Istio's AuthorizationPolicy semantics, as ztunnel applies them to the
// policies istiod sends it (istio.security.Authorization). Pure: no I/O, no logging, no clock.
// docs/policy.md describes the evaluation order, the scopes and the edge cases.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ip_address.h"
#include "model/authorization.h"
#include "model/snapshot.h"
#include "model/workload.h"

namespace nodemesh::policy {

// What a validated JWT (Istio's RequestAuthentication) tells the policies about a request.
struct RequestAuth {
  std::string principal;  // "<iss>/<sub>"
  std::vector<std::string> audiences;
  std::string presenter;  // azp
  // Claim path (["groups"], or ["a", "b"] for a nested claim) -> its values: a string as it is,
  // a list of strings one value each, other JSON values as their JSON text (as Envoy does).
  std::map<std::vector<std::string>, std::vector<std::string>> claims;
};

// The HTTP facts of one request at the waypoint. Non-owning: everything must outlive check().
struct RequestAttributes {
  std::string_view method;
  std::string_view host;  // :authority / Host, lowercase, without the port
  std::string_view path;  // without the query
  // All values of a request header (lowercase name) joined with ","; nullopt when absent.
  std::function<std::optional<std::string>(std::string_view)> header;
  const RequestAuth* auth = nullptr;  // null: no (valid) JWT came with the request
};

// The facts about one inbound connection that policies can match. Non-owning: the identity
// string must outlive the check() call.
struct ConnectionAttributes {
  IpAddress source_ip;
  IpAddress destination_ip;
  uint16_t destination_port = 0;
  // The peer's SPIFFE identity, "spiffe://<td>/ns/<ns>/sa/<sa>", as its certificate proved it;
  // nullopt for a plaintext client (no mTLS, so no identity).
  std::optional<std::string_view> source_identity;
  // Set by the waypoint for an HTTP request: the HTTP attributes of matches (methods, paths,
  // hosts, requestPrincipals, remoteIpBlocks, `when` on request.* keys) are then checked
  // against it. Null at L4, where they get Istio's L4 treatment (docs/policy.md).
  const RequestAttributes* request = nullptr;
};

// A policy rule that matched. `policy` is "namespace/name" and points into the Authorizer.
struct RuleMatch {
  std::string_view policy;
  size_t rule = 0;  // index into Authorization::rules
  model::PolicyAction action = model::PolicyAction::Allow;

  bool operator==(const RuleMatch&) const = default;
};

// Why a verdict came out the way it did.
enum class Outcome {
  NoPolicy,        // allowed: no enforced policy applies to the destination
  NoDenyMatched,   // allowed: DENY policies apply but none matched, and no ALLOW policy applies
  Denied,          // denied: a DENY policy rule matched
  Allowed,         // allowed: an ALLOW policy rule matched (and no DENY rule did)
  NoAllowMatched,  // denied: ALLOW policies apply and none of their rules matched
};

std::string_view toString(Outcome outcome);  // "NoPolicy", "Denied", ...

// The string views point into the Authorizer that produced the verdict: keep it alive while
// the verdict is used. Cheap to make: the allow path allocates nothing unless dry-run policies
// matched.
struct Verdict {
  bool allowed = true;
  Outcome outcome = Outcome::NoPolicy;
  // The deciding policy ("namespace/name") and rule: set for Denied and Allowed only.
  std::string_view policy;
  std::optional<size_t> rule;
  // NoAllowMatched only: the enforced ALLOW policies that applied, none of which matched.
  std::vector<std::string_view> unmatched_allow;
  // Rules of dry-run policies that matched, DENY first, for logs; they never decide.
  std::vector<RuleMatch> dry_run;
  // The verdict if the dry-run policies applying to the destination were enforced as well
  // (equal to `allowed` when none applies).
  bool dry_run_allowed = true;

  // One line for logs and the CLI: "denied by DENY policy shop/deny-dev rule 0",
  // "allowed by ALLOW policy shop/allow-frontend rule 1", "no ALLOW policy matched (shop/a,
  // shop/b)", "no DENY policy matched and no ALLOW policy applies", "no policy applies".
  std::string reason() const;
};

// Evaluates the policies of one config snapshot. Built once per snapshot (the constructor
// precomputes which policies apply to which namespace and workload); immutable afterwards, so
// check() may run concurrently from any thread. Not copyable or movable: verdicts point into it.
class Authorizer {
 public:
  // A null snapshot counts as an empty one.
  explicit Authorizer(model::SnapshotPtr snapshot);
  ~Authorizer() = default;
  Authorizer(const Authorizer&) = delete;
  Authorizer& operator=(const Authorizer&) = delete;

  // Decides a connection to `destination` (the workload that owns the destination address).
  // Istio's order: any matching DENY denies; otherwise, if no ALLOW policy applies the
  // connection is allowed; otherwise one ALLOW rule must match. Dry-run policies are evaluated
  // for the verdict's dry_run fields only. Allocation-free on the allow path for workloads of
  // this snapshot; for a workload object from elsewhere that lists policies of its own, its
  // policy list is built on the spot.
  Verdict check(const model::Workload& destination, const ConnectionAttributes& conn) const;

  // The policies that apply to `destination`, dry-run ones included: Global, then Namespace,
  // then the workload's own (WorkloadSelector) policies, each in config order.
  std::vector<const model::Authorization*> applicable(const model::Workload& destination) const;

  const model::SnapshotPtr& snapshot() const { return snapshot_; }

 private:
  struct Compiled {
    const model::Authorization* policy = nullptr;
    std::string key;  // "namespace/name"
    // Per rule: true when an ALLOW rule names an L7 attribute, so it can never match at L4.
    std::vector<bool> rule_dropped;
  };
  // The policies applying to one workload, in applicable() order and split by how check()
  // uses them.
  struct PolicySet {
    std::vector<const Compiled*> all;
    std::vector<const Compiled*> deny;
    std::vector<const Compiled*> allow;
    std::vector<const Compiled*> dry_run_deny;
    std::vector<const Compiled*> dry_run_allow;

    void add(const Compiled* c);
  };

  const Compiled* compiledByKey(std::string_view key) const;
  // The set for a workload with no WorkloadSelector policies of its own.
  const PolicySet& namespaceSet(std::string_view namespace_name) const;
  PolicySet buildSet(const model::Workload& workload) const;
  // The precomputed set when `destination` belongs to this snapshot; null otherwise.
  const PolicySet* precomputedSet(const model::Workload& destination) const;

  model::SnapshotPtr snapshot_;
  std::vector<Compiled> compiled_;  // one per snapshot policy, same order; never resized
  std::map<std::string_view, const Compiled*, std::less<>> by_key_;
  PolicySet global_;                                              // Global policies only
  std::map<std::string, PolicySet, std::less<>> namespace_sets_;  // Global + Namespace
  std::vector<PolicySet> workload_sets_;                          // + WorkloadSelector
  std::vector<int> workload_set_index_;  // per snapshot workload: index or -1 (namespace set)
};

}  // namespace nodemesh::policy
