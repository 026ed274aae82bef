// Fuzz target: JWT validation for RequestAuthentication (auth/jwt.h, auth/jwks.h), as the
// waypoint runs it on the token of every request's Authorization header. The input is the token:
// parseJwt() (size, three base64url parts, JSON header and claims, alg, iss), then, for a token
// of the known issuer, verifyJwt() against a fixed key set (one ES256 and one RS256 key) at a
// fixed time: signature, exp/nbf, audiences, claims. The same bytes are also parsed as a JWKS
// document (a RequestAuthentication's inline `jwks`).
// Seeds: tokens signed with the private halves of kJwks (fuzz/corpus/jwt/), made once with
// Python's cryptography package; the private keys were not kept.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <variant>

#include "auth/jwks.h"
#include "auth/jwt.h"
#include "fuzz/fuzz_support.h"

namespace {

namespace auth = nodemesh::auth;

constexpr const char* kJwks =
    R"({"keys":[{"kty":"EC","crv":"P-256","kid":"ec1","alg":"ES256","use":"sig","x":"uN2eA8)"
    R"(zNkGTDqICoSAoU_sR6J0ARaKcXf10CVNzYpGE","y":"_anDgt5Pp__EoGiGakR6rAhrEJSE5tUAJgo_wDhT)"
    R"(FdQ"},{"kty":"RSA","kid":"rsa1","alg":"RS256","use":"sig","n":"jnDoBaolQFAg6L8A6F18B)"
    R"(SqUfWimZKvjwdbl3ykcMqsbNuKDsqshYUQNyIGJbMZaTdvT4fAL-3Xlg5luh4y35I8Se-UhFcOig3nyshRvK)"
    R"(_Tp3wftZTfieiMafZF5HvBpwWm_HKG8y9NSQA7m8JBqr1Y-0ovF58pz0oQCj5Ndodlme9uGzlgFRI8h1ybvk)"
    R"(VDoJfVgeuvmkM28g4PgSrL_HpDaXARxsn2yQbocD6lMuOUT8oVKp5MxizvnMi4a5amiK7ay-H6idlX18LLRD)"
    R"(Uxeq34Z9kKCBx4JxJiPolS7pP69Q8Ay6NubQ-sX-7vCbjbQwmxjv-Y1NTR2QI_hK7ASEw","e":"AQAB"}]})";

auth::JwtVerifier* verifier = nullptr;

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  nodemesh::fuzz::quietLogs();
  auto jwks = auth::Jwks::parse(kJwks);
  nodemesh::fuzz::check(jwks.ok() && (*jwks)->keys().size() == 2);
  // Parsed once, as the waypoint does at config load.
  static auth::JwtVerifier the_verifier{
      "https://issuer.example", {"cart.shop.svc.cluster.local"}, std::move(jwks).value()};
  verifier = &the_verifier;
  return 0;
}

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto token = nodemesh::fuzz::asText(data, size);
  // 2026-01-01T00:00:00Z, inside the seeds' validity.
  const std::chrono::system_clock::time_point now{std::chrono::seconds(1767225600)};
  auto parsed = auth::parseJwt(token);
  if (const auto* jwt = std::get_if<auth::ParsedJwt>(&parsed)) {
    if (jwt->issuer == verifier->issuer) (void)auth::verifyJwt(*jwt, *verifier, now);
  } else {
    (void)std::get<auth::JwtFailure>(parsed).message();
  }
  (void)auth::Jwks::parse(token);
  return 0;
}
