#pragma once

// Istio's RequestAuthentication (security.istio.io/v1, v1beta1), the part the waypoint applies:
// which JWTs a Service accepts (jwtRules), where the token is read from and what is forwarded.
// The local config's `requestAuthentications` list holds them; the loader parses each JWKS when
// the file loads, so a bad key set is a config error, never a request-time surprise.
// docs/policy.md ("RequestAuthentication") says how the waypoint applies them.

#include <memory>
#include <string>
#include <vector>

#include "model/route_common.h"

namespace nodemesh::auth {
class Jwks;  // auth/jwks.h; the model only carries the parsed set
}  // namespace nodemesh::auth

namespace nodemesh::model {

// jwtRules[].fromHeaders[]: the token is the header's value after `prefix`.
struct JwtHeaderLocation {
  std::string name;  // lowercase
  std::string prefix;

  bool operator==(const JwtHeaderLocation&) const = default;
};

// jwtRules[].outputClaimToHeaders[]: a verified claim's value copied into a request header.
struct ClaimToHeader {
  std::string header;  // lowercase
  std::string claim;   // a top-level claim, or a nested one as "a.b"

  bool operator==(const ClaimToHeader&) const = default;
};

struct JwtRule {
  std::string issuer;
  std::vector<std::string> audiences;  // empty: any
  std::string jwks_uri;                // "file:///..." when the set came from a file
  std::shared_ptr<const auth::Jwks> jwks;
  // Istio's default when empty in the file: Authorization with "Bearer " (the loader fills it).
  std::vector<JwtHeaderLocation> from_headers;
  bool forward_original_token = false;
  std::vector<ClaimToHeader> output_claim_to_headers;

  bool operator==(const JwtRule&) const = default;
};

struct RequestAuthentication {
  RouteMetadata metadata;
  // spec.targetRefs of kind Service: names in the policy's namespace. Empty: every Service of
  // the namespace (Istio's namespace-wide policy).
  std::vector<std::string> target_services;
  std::vector<JwtRule> jwt_rules;

  std::string key() const { return metadata.key(); }
  // Whether the policy applies to the Service `name` of namespace `ns`.
  bool appliesTo(const std::string& ns, const std::string& name) const {
    if (ns != metadata.namespace_name) return false;
    if (target_services.empty()) return true;
    for (const std::string& t : target_services) {
      if (t == name) return true;
    }
    return false;
  }
  bool operator==(const RequestAuthentication&) const = default;
};

}  // namespace nodemesh::model
