#pragma once

// JSON Web Key Sets (RFC 7517) for Istio's RequestAuthentication: the public keys that verify
// JWTs. Only what the waypoint verifies is accepted: RSA keys (RS256, RFC 7518 section 6.3) of
// at least 2048 bits and EC P-256 keys (ES256, section 6.2); anything else in a set (another
// kty or crv, alg, `use` other than "sig", private members) is an error with the key's index,
// so that a set never silently verifies less than it lists.
//
// Why OpenSSL and nlohmann-json rather than a JWT library: Debian's libjwt-dev (1.10) and
// libcpp-jwt-dev take one PEM key per call and do not parse JWKS, and both would still need
// OpenSSL for the keys; a JWKS is small JSON, and OpenSSL 3's EVP_PKEY_fromdata builds the
// keys from its members directly. The project already links both libraries.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "identity/openssl_ptr.h"

namespace nodemesh::auth {

enum class JwsAlg { kRs256, kEs256 };

std::string_view toString(JwsAlg alg);  // "RS256", "ES256"

struct Jwk {
  std::string kid;  // empty: the key has no kid (it may verify any token of its alg)
  JwsAlg alg = JwsAlg::kRs256;
  std::shared_ptr<EVP_PKEY> key;  // a public key; shared so that copies of a set stay cheap
};

// An immutable key set, parsed once (at config load) and shared by the requests.
class Jwks {
 public:
  // At most this many keys, and this much JSON: a key set is a config value, not a database.
  static constexpr size_t kMaxKeys = 64;
  static constexpr size_t kMaxBytes = 256 * 1024;

  // Parses a JWKS document ({"keys": [...]}). Errors name the key ("keys[1]: ...").
  static Result<std::shared_ptr<const Jwks>> parse(std::string_view json);

  const std::vector<Jwk>& keys() const { return keys_; }

 private:
  std::vector<Jwk> keys_;
};

}  // namespace nodemesh::auth
