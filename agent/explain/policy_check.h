#pragma once

// The authorization question `explain` asks: would this workload accept this connection, and
// which policy and rule decide? A small interface so that explain can be pointed at the policy
// engine (policy::Authorizer, issue 4) without changing; until that lands, LocalPolicyChecker
// evaluates the config's policies itself with the semantics DESIGN.md gives (Istio's
// AuthorizationPolicy at L4, as ztunnel implements it).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ip_address.h"
#include "model/snapshot.h"
#include "model/workload.h"

namespace nodemesh::agent::explain {

struct ConnectionFacts {
  IpAddress source_ip;
  IpAddress destination_ip;
  uint16_t destination_port = 0;  // the port on the workload (after service port mapping)
  // The client's SPIFFE ID ("spiffe://td/ns/N/sa/S") when mutual TLS proved it (HBONE);
  // nullopt for plaintext.
  std::optional<std::string> source_identity;
};

struct PolicyVerdict {
  bool allowed = true;
  std::string policy;         // the deciding policy, "namespace/name"; empty when none decided
  std::optional<size_t> rule;  // its rule (0-based) that matched
  std::string reason;          // one sentence for humans
};

class PolicyChecker {
 public:
  virtual ~PolicyChecker() = default;
  virtual PolicyVerdict check(const model::Workload& destination,
                              const ConnectionFacts& facts) const = 0;
  // Keys ("namespace/name") of the policies that apply to the workload, in evaluation order.
  virtual std::vector<std::string> applicable(const model::Workload& destination) const = 0;
};

// DENY policies first (any match denies), then ALLOW policies (when any applies, one must
// match); dry-run policies never decide. Rules are OR'd, clauses AND'd, matches OR'd; a match's
// fields are AND'd, the values of one field OR'd, `not` fields match when none of their values
// does. Without a source identity, fields about the identity (namespaces, principals, service
// accounts) do not match and their `not` forms do.
class LocalPolicyChecker final : public PolicyChecker {
 public:
  explicit LocalPolicyChecker(model::SnapshotPtr snapshot) : snapshot_(std::move(snapshot)) {}
  PolicyVerdict check(const model::Workload& destination,
                      const ConnectionFacts& facts) const override;
  std::vector<std::string> applicable(const model::Workload& destination) const override;

 private:
  std::vector<const model::Authorization*> applicablePolicies(const model::Workload& w) const;

  model::SnapshotPtr snapshot_;
};

}  // namespace nodemesh::agent::explain
