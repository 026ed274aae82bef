#pragma once

// JWT validation (RFC 7519) for Istio's RequestAuthentication, with Envoy's jwt_authn semantics
// where the waypoint must match an Envoy waypoint: JWS compact serialization only (RFC 7515
// section 7.1), RS256 and ES256 only (`alg: none` and every other algorithm are refused, RFC
// 8725 section 3.1), `exp` and `nbf` checked with Envoy's default 60 s clock skew, the issuer
// matched exactly and, when the rule lists audiences, at least one `aud` value among them. The
// messages of JwtFailure::message() are Envoy's response bodies. Pure: no I/O, the time is a
// parameter (tests move it), no exceptions.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "auth/jwks.h"
#include "common/result.h"
#include "policy/authorizer.h"

namespace nodemesh::auth {

// Envoy's default JwtProvider.clock_skew_seconds.
inline constexpr std::chrono::seconds kClockSkew{60};
// Longer tokens are refused before any parsing. Envoy's limit is its header size limit (60 KiB);
// a JWT that carries identity and a few claims is well under 2 KiB.
inline constexpr size_t kMaxTokenBytes = 8 * 1024;
// Deeper JSON nesting in a token is refused (claims are read recursively).
inline constexpr int kMaxJsonDepth = 16;

// Why a token was refused; the counter label of the waypoint's jwt failures.
enum class JwtFailureReason {
  kMalformed,           // not three base64url parts of JSON objects, or bad claim types
  kTooLarge,            // over kMaxTokenBytes
  kUnsupportedAlg,      // alg none, HS256, ... (or `crit` headers)
  kUnknownIssuer,       // no rule for the token's iss
  kUnknownKid,          // no key in the JWKS for the token's kid and alg
  kBadSignature,        // the signature does not verify
  kExpired,             // now > exp + skew
  kNotYetValid,         // now + skew < nbf
  kAudienceNotAllowed,  // the rule lists audiences and none is in aud
};
// How many reasons there are (counters are arrays indexed by reason).
inline constexpr size_t kJwtFailureReasonCount =
    static_cast<size_t>(JwtFailureReason::kAudienceNotAllowed) + 1;

std::string_view toString(JwtFailureReason reason);  // "malformed", "expired", ...

struct JwtFailure {
  JwtFailureReason reason = JwtFailureReason::kMalformed;
  std::string detail;  // for logs: which part was wrong

  // Envoy's body for the 401 ("Jwt is expired", "Jwt verification fails", ...).
  std::string_view message() const;
};

// A token split and decoded, not yet verified: iss tells which rule (and JWKS) verifies it.
struct ParsedJwt {
  JwsAlg alg = JwsAlg::kRs256;
  std::string kid;
  std::string issuer;
  std::string signing_input;  // "<header>.<payload>" as sent
  std::string signature;      // decoded
  std::string payload_json;   // decoded, parsed again by verifyJwt
};

// Structure only: size, three parts, base64url, JSON objects, a supported alg, iss present.
std::variant<ParsedJwt, JwtFailure> parseJwt(std::string_view token);

// One RequestAuthentication jwtRule's verification parameters.
struct JwtVerifier {
  std::string issuer;
  std::vector<std::string> audiences;  // empty: any aud (Istio: the service's hostname is not
                                       // required either)
  std::shared_ptr<const Jwks> jwks;
};

// Verifies `jwt` (whose issuer the caller matched to `verifier`) at time `now`: signature by a
// key of the JWKS (the one with the token's kid, or any key of its alg when the token has no
// kid), exp/nbf with kClockSkew, audiences. On success, what the policies see of the request's
// identity: principal "<iss>/<sub>", aud values, azp and the claims (policy::RequestAuth).
std::variant<policy::RequestAuth, JwtFailure> verifyJwt(const ParsedJwt& jwt,
                                                        const JwtVerifier& verifier,
                                                        std::chrono::system_clock::time_point now);

}  // namespace nodemesh::auth
