#pragma once

// The authorization question `explain` asks: would this workload accept this connection, and
// which policy and rule decide? A small interface over policy::Authorizer (the engine the
// tunnel enforces with), so that explain's tests can also substitute their own answers.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/ip_address.h"
#include "model/snapshot.h"
#include "model/workload.h"
#include "policy/authorizer.h"

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
  std::string outcome;         // policy::Outcome's name ("Allowed", "Denied", ...); "" if none
  std::string policy;          // the deciding policy, "namespace/name"; empty when none decided
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

// The tunnel's own engine, built for one snapshot.
class AuthorizerChecker final : public PolicyChecker {
 public:
  explicit AuthorizerChecker(model::SnapshotPtr snapshot) : authorizer_(std::move(snapshot)) {}
  PolicyVerdict check(const model::Workload& destination,
                      const ConnectionFacts& facts) const override;
  std::vector<std::string> applicable(const model::Workload& destination) const override;

 private:
  policy::Authorizer authorizer_;
};

}  // namespace nodemesh::agent::explain
