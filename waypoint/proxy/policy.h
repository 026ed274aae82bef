#pragma once

// L4 authorization at the waypoint. Behind a waypoint the destination's node agent sees the
// waypoint's identity, not the client's, so its inbound check cannot tell clients apart: the
// waypoint applies the mesh's AuthorizationPolicies itself (policy::Authorizer, the evaluator
// the agent uses on inbound) to the endpoint it picked, with the ORIGINAL client's facts: the
// identity of the HBONE peer certificate of the incoming CONNECT, its address (forwarded for=),
// and the endpoint's address and target port as the destination.
//
// A denied TCP passthrough is reset (its CONNECT was already answered 200); a denied HTTP
// request is answered 403 "RBAC: access denied" without reaching the endpoint, as Envoy's RBAC
// filter does (which sets no response flag: its denials show as 403 and "-").

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/ip_address.h"
#include "model/snapshot.h"
#include "policy/authorizer.h"
#include "waypoint/routing/http_head.h"

namespace nodemesh::waypoint {

// What a policy decision at the waypoint is about: a passthrough connection or one request.
enum class PolicySubject { kConnection, kRequest };

// The facts of one connection or request through the waypoint. Non-owning.
struct PolicyFacts {
  std::string_view source_principal;             // SPIFFE ID; empty: no identity
  std::optional<SocketAddress> source_address;   // the original client (forwarded for=)
  const model::Workload* destination = nullptr;  // the endpoint picked
  SocketAddress destination_address;             // its ip:targetPort
  // An HTTP request's facts (method, path, host, headers, JWT): the policies' HTTP attributes
  // are checked against them. Null for a passthrough connection (L4 treatment).
  const policy::RequestAttributes* request = nullptr;
};

struct PolicyDecision {
  bool allowed = true;
  policy::Outcome outcome = policy::Outcome::NoPolicy;
  std::string policy;          // the deciding policy ("ns/name"), or the unmatched ALLOW policies
  std::optional<size_t> rule;  // the deciding rule (Denied and Allowed only)
  std::string reason;          // policy::Verdict::reason(), for logs
  // RequestAuthentication's outcome for the access log (JwtCheck::summary()): the principal,
  // why the token was refused, "missing", or empty when no RequestAuthentication applied.
  std::string jwt;

  // For the access log: "allow", "deny" or "-" (no policy applies).
  std::string_view result() const;
};

// The HTTP facts of `head` for the policies: `host` and `path` are filled into the two strings
// given (the lowercase host without its port, the path without its query), which must outlive
// the result; headers are looked up in `head` (kept by reference).
policy::RequestAttributes requestAttributes(const RequestHead& head, std::string& host,
                                            std::string& path);

struct PolicyStats {
  uint64_t denied_connections = 0;  // TCP passthrough connections reset
  uint64_t denied_requests = 0;     // HTTP requests answered 403
};

// Lives on the waypoint's loop thread (not thread-safe); rebuilt per config snapshot.
class WaypointPolicy {
 public:
  void setSnapshot(const model::SnapshotPtr& snapshot);

  // The decision, without counting or logging (for tests and explain). No snapshot yet, or no
  // destination: allowed (no policy is known to apply).
  PolicyDecision check(const PolicyFacts& facts) const;
  // check(), then a denial is counted and logged with the policy that decided (and what
  // dry-run policies would have done, as the agent logs them).
  PolicyDecision authorize(PolicySubject subject, const PolicyFacts& facts);

  const PolicyStats& stats() const { return stats_; }

 private:
  std::shared_ptr<const policy::Authorizer> authorizer_;
  PolicyStats stats_;
};

}  // namespace nodemesh::waypoint
