#pragma once

// Local rate limiting at the waypoint: the policy object of the local config file's
// `rateLimitPolicies` list. Its fields are Linkerd's HTTPLocalRateLimitPolicy
// (policy.linkerd.io/v1alpha1: total, identity, overrides), attached with Gateway API policy
// attachment targetRefs to a Service or to one route, plus a per-header-value limit of ours.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/route_common.h"

namespace nodemesh::model {

// A LocalPolicyTargetReference: the target is in the policy's own namespace (GEP-713).
struct RateLimitTargetRef {
  enum class Kind { kService, kHttpRoute, kGrpcRoute };
  Kind kind = Kind::kService;
  std::string name;

  bool operator==(const RateLimitTargetRef&) const = default;
};

// A client named by an override: a ServiceAccount, i.e. the SPIFFE identity
// `spiffe://<any trust domain>/ns/<namespace>/sa/<name>`.
struct RateLimitClientRef {
  std::string namespace_name;
  std::string name;

  bool operator==(const RateLimitClientRef&) const = default;
};

struct RateLimitOverride {
  uint32_t requests_per_second = 0;
  std::vector<RateLimitClientRef> client_refs;

  bool operator==(const RateLimitOverride&) const = default;
};

// Ours: each distinct value of one request header gets its own limit.
struct HeaderRateLimit {
  std::string name;  // lowercase
  uint32_t requests_per_second = 0;

  bool operator==(const HeaderRateLimit&) const = default;
};

struct RateLimitPolicy {
  RouteMetadata metadata;
  std::vector<RateLimitTargetRef> target_refs;
  std::optional<uint32_t> total_rps;     // spec.total.requestsPerSecond
  std::optional<uint32_t> identity_rps;  // spec.identity.requestsPerSecond
  std::vector<RateLimitOverride> overrides;
  std::optional<HeaderRateLimit> header;  // spec.header (ours)

  std::string key() const { return metadata.key(); }
  bool operator==(const RateLimitPolicy&) const = default;
};

}  // namespace nodemesh::model
