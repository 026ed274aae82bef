#pragma once

// Istio's RequestAuthentication at the waypoint, with the behaviour of Envoy's jwt_authn filter
// as istiod configures it for a waypoint (allow_missing: a request without a token passes
// unauthenticated and the AuthorizationPolicies decide; a token that is present must verify).
// For a request to a Service, the RequestAuthentications of the Service's namespace that
// target it (targetRefs) or the whole namespace (no targetRefs) apply. The token is the value
// of the first configured header (fromHeaders, default `Authorization: Bearer <token>`) that
// the request carries; it is verified by the jwtRule of its issuer (auth/jwt.h). Valid: the
// policies see its RequestAuth, the header is removed unless forwardOriginalToken, and
// outputClaimToHeaders are set. Invalid: the request is answered 401 with Envoy's body and
// `www-authenticate`. docs/policy.md ("RequestAuthentication") is the user's description.

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "auth/jwt.h"
#include "model/service.h"
#include "model/snapshot.h"
#include "policy/authorizer.h"
#include "waypoint/routing/http_head.h"

namespace nodemesh::waypoint {

struct JwtStats {
  uint64_t authenticated = 0;  // requests whose token verified
  // Requests answered 401, by auth::JwtFailureReason.
  std::array<uint64_t, auth::kJwtFailureReasonCount> failures{};
};

struct JwtCheck {
  enum class Result {
    kNotApplicable,  // no RequestAuthentication applies to the service
    kNoToken,        // one applies, but the request carries no token: unauthenticated
    kAuthenticated,  // `auth` is set; the head was edited (token removed, claims added)
    kRejected,       // answer 401 with `failure->message()` and `www_authenticate`
  };
  Result result = Result::kNotApplicable;
  policy::RequestAuth auth;
  std::optional<auth::JwtFailure> failure;
  std::string www_authenticate;

  // For the access log: the principal, the failure reason ("expired"), or "-".
  std::string summary() const;
};

// Lives on the waypoint's loop thread (not thread-safe); rebuilt per config snapshot.
class WaypointJwt {
 public:
  void setSnapshot(const model::SnapshotPtr& snapshot) { snapshot_ = snapshot; }

  // Authenticates a request to `service` at wall-clock time `now` (exp/nbf), editing `head` when
  // the token verifies. Counts the outcome.
  JwtCheck check(const model::Service& service, RequestHead& head,
                 std::chrono::system_clock::time_point now);

  const JwtStats& stats() const { return stats_; }

 private:
  model::SnapshotPtr snapshot_;
  JwtStats stats_;
};

}  // namespace nodemesh::waypoint
