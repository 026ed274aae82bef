#include "auth/jwks.h"

#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include <nlohmann/json.hpp>

#include "auth/base64url.h"

namespace nodemesh::auth {

namespace {

using Json = nlohmann::json;
using ParamBldPtr =
    std::unique_ptr<OSSL_PARAM_BLD, identity::OpensslDeleter<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, identity::OpensslDeleter<OSSL_PARAM, OSSL_PARAM_free>>;

// RFC 7518 section 3.3: "A key of size 2048 bits or larger MUST be used with these algorithms."
constexpr int kMinRsaBits = 2048;
constexpr size_t kP256CoordinateBytes = 32;

// JWK members this parser knows; others (x5c, x5t, key_ops, ...) are informational and ignored,
// as RFC 7517 section 4 asks ("members that are not understood MUST be ignored"). Private key
// members are refused: a key set for verification must not carry secrets.
constexpr std::string_view kPrivateMembers[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};

Result<std::string> member(const Json& key, const std::string& name, bool allow_padding) {
  auto it = key.find(name);
  if (it == key.end()) return Error::invalid("missing '" + name + "'");
  if (!it->is_string()) return Error::invalid("'" + name + "' must be a string");
  auto decoded = base64UrlDecode(it->get_ref<const std::string&>(), allow_padding);
  if (!decoded || decoded->empty()) {
    return Error::invalid("'" + name + "' is not base64url (RFC 7518 section 6)");
  }
  return std::move(*decoded);
}

Result<std::shared_ptr<EVP_PKEY>> fromData(const char* type, OSSL_PARAM_BLD* bld,
                                           std::string_view what) {
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld));
  if (!params) return identity::opensslError(std::string(what) + ": OSSL_PARAM_BLD_to_param");
  identity::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return identity::opensslError(std::string(what) + ": not a valid public key");
  }
  return std::shared_ptr<EVP_PKEY>(raw, EVP_PKEY_free);
}

Result<std::shared_ptr<EVP_PKEY>> rsaKey(const Json& key) {
  auto n = member(key, "n", /*allow_padding=*/true);
  if (!n) return n.error();
  auto e = member(key, "e", /*allow_padding=*/true);
  if (!e) return e.error();
  identity::BignumPtr bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                                     static_cast<int>(n->size()), nullptr));
  identity::BignumPtr bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                                     static_cast<int>(e->size()), nullptr));
  if (!bn_n || !bn_e) return identity::opensslError("RSA key: BN_bin2bn");
  if (BN_num_bits(bn_n.get()) < kMinRsaBits) {
    return Error::invalid("RSA key of " + std::to_string(BN_num_bits(bn_n.get())) +
                          " bits; RS256 needs at least 2048 (RFC 7518 section 3.3)");
  }
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    return identity::opensslError("RSA key: OSSL_PARAM_BLD");
  }
  return fromData("RSA", bld.get(), "RSA key");
}

Result<std::shared_ptr<EVP_PKEY>> ecKey(const Json& key) {
  auto crv = key.find("crv");
  if (crv == key.end() || !crv->is_string()) return Error::invalid("missing 'crv'");
  if (crv->get_ref<const std::string&>() != "P-256") {
    return Error::invalid("crv '" + crv->get_ref<const std::string&>() +
                          "' is not supported: only P-256 (ES256)");
  }
  auto x = member(key, "x", /*allow_padding=*/true);
  if (!x) return x.error();
  auto y = member(key, "y", /*allow_padding=*/true);
  if (!y) return y.error();
  // RFC 7518 section 6.2.1.2: each coordinate is the full-length octet string of the curve.
  if (x->size() != kP256CoordinateBytes || y->size() != kP256CoordinateBytes) {
    return Error::invalid("'x' and 'y' of a P-256 key must be 32 bytes each");
  }
  // The uncompressed point (SEC 1 section 2.3.3); EVP_PKEY_fromdata checks it is on the curve.
  std::string point = "\x04" + *x + *y;
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
          1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return identity::opensslError("EC key: OSSL_PARAM_BLD");
  }
  return fromData("EC", bld.get(), "EC P-256 key");
}

Result<Jwk> parseKey(const Json& key) {
  if (!key.is_object()) return Error::invalid("a key must be a JSON object");
  for (std::string_view m : kPrivateMembers) {
    if (key.contains(std::string(m))) {
      return Error::invalid("has private key member '" + std::string(m) +
                            "': a JWKS for verification holds public keys only");
    }
  }
  auto optional_string = [&key](const char* name) -> Result<std::string> {
    auto it = key.find(name);
    if (it == key.end()) return std::string();
    if (!it->is_string()) return Error::invalid(std::string("'") + name + "' must be a string");
    return it->get<std::string>();
  };
  auto kty = optional_string("kty");
  if (!kty) return kty.error();
  auto kid = optional_string("kid");
  if (!kid) return kid.error();
  auto alg = optional_string("alg");
  if (!alg) return alg.error();
  auto use = optional_string("use");
  if (!use) return use.error();
  if (!use->empty() && *use != "sig") {
    return Error::invalid("use '" + *use + "': only signature keys (\"sig\") verify tokens");
  }
  Jwk jwk;
  jwk.kid = std::move(*kid);
  Result<std::shared_ptr<EVP_PKEY>> pkey = Error::invalid("");
  if (*kty == "RSA") {
    if (!alg->empty() && *alg != "RS256") {
      return Error::invalid("alg '" + *alg + "' is not supported for an RSA key: only RS256");
    }
    jwk.alg = JwsAlg::kRs256;
    pkey = rsaKey(key);
  } else if (*kty == "EC") {
    if (!alg->empty() && *alg != "ES256") {
      return Error::invalid("alg '" + *alg + "' is not supported for an EC key: only ES256");
    }
    jwk.alg = JwsAlg::kEs256;
    pkey = ecKey(key);
  } else if (kty->empty()) {
    return Error::invalid("missing 'kty'");
  } else {
    return Error::invalid("kty '" + *kty + "' is not supported: only RSA (RS256) and EC (ES256)");
  }
  if (!pkey) return pkey.error();
  jwk.key = std::move(*pkey);
  return jwk;
}

}  // namespace

std::string_view toString(JwsAlg alg) {
  return alg == JwsAlg::kRs256 ? "RS256" : "ES256";
}

Result<std::shared_ptr<const Jwks>> Jwks::parse(std::string_view json) {
  if (json.size() > kMaxBytes) {
    return Error::invalid("JWKS of " + std::to_string(json.size()) + " bytes; at most " +
                          std::to_string(kMaxBytes));
  }
  Json doc = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Error::invalid("JWKS is not valid JSON");
  if (!doc.is_object()) return Error::invalid("JWKS must be a JSON object with \"keys\"");
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array()) {
    return Error::invalid("JWKS needs a \"keys\" list (RFC 7517 section 5)");
  }
  if (keys->empty()) return Error::invalid("JWKS has no keys");
  if (keys->size() > kMaxKeys) {
    return Error::invalid("JWKS has " + std::to_string(keys->size()) + " keys; at most " +
                          std::to_string(kMaxKeys));
  }
  auto out = std::make_shared<Jwks>();
  for (size_t i = 0; i < keys->size(); ++i) {
    auto jwk = parseKey((*keys)[i]);
    if (!jwk) {
      return Error::invalid("JWKS keys[" + std::to_string(i) + "]: " + jwk.error().message);
    }
    out->keys_.push_back(std::move(*jwk));
  }
  return std::shared_ptr<const Jwks>(std::move(out));
}

}  // namespace nodemesh::auth
