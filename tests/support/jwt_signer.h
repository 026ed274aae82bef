#pragma once

// Test keys that sign JWTs (RS256, ES256) and publish themselves as JWKs, for the unit tests of
// auth/ and the waypoint's e2e tests. Keys are generated fresh by OpenSSL; nothing is on disk.
// Header-only: both test binaries include it. Failures abort the test (std::abort): a test
// helper has no caller that could do better.

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "auth/base64url.h"

namespace nodemesh::testing {

class TestJwtKey {
 public:
  static TestJwtKey rsa(std::string kid, int bits = 2048) {
    return TestJwtKey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits)),
                      "RS256", std::move(kid));
  }
  static TestJwtKey ec(std::string kid) {
    return TestJwtKey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), "ES256", std::move(kid));
  }

  const std::string& alg() const { return alg_; }
  const std::string& kid() const { return kid_; }

  // The public key as a JWK object.
  nlohmann::json jwk() const {
    nlohmann::json j;
    if (alg_ == "RS256") {
      j["kty"] = "RSA";
      j["n"] = bnParam(OSSL_PKEY_PARAM_RSA_N, 0);
      j["e"] = bnParam(OSSL_PKEY_PARAM_RSA_E, 0);
    } else {
      j["kty"] = "EC";
      j["crv"] = "P-256";
      j["x"] = bnParam(OSSL_PKEY_PARAM_EC_PUB_X, 32);
      j["y"] = bnParam(OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    }
    j["alg"] = alg_;
    j["use"] = "sig";
    if (!kid_.empty()) j["kid"] = kid_;
    return j;
  }

  // A compact JWS of `payload`: header {"alg", "typ": "JWT", "kid"} (plus `header_extra`).
  std::string sign(const nlohmann::json& payload,
                   const nlohmann::json& header_extra = nlohmann::json::object()) const {
    nlohmann::json header = {{"alg", alg_}, {"typ", "JWT"}};
    if (!kid_.empty()) header["kid"] = kid_;
    for (const auto& [k, v] : header_extra.items()) header[k] = v;
    const std::string input =
        auth::base64UrlEncode(header.dump()) + "." + auth::base64UrlEncode(payload.dump());
    return input + "." + auth::base64UrlEncode(signature(input));
  }

  // The raw JWS signature of `input` (r || s for ES256).
  std::string signature(const std::string& input) const {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    size_t len = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len,
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
      std::abort();
    }
    std::string sig(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
      std::abort();
    }
    sig.resize(len);
    if (alg_ != "ES256") return sig;
    // OpenSSL signs DER (ECDSA-Sig-Value); JWS wants r || s, 32 bytes each.
    const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> ecdsa(
        d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())), ECDSA_SIG_free);
    if (!ecdsa) std::abort();
    std::string raw(64, '\0');
    auto* out = reinterpret_cast<unsigned char*>(raw.data());
    BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa.get()), out, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa.get()), out + 32, 32);
    return raw;
  }

 private:
  TestJwtKey(EVP_PKEY* key, std::string alg, std::string kid)
      : key_(key, EVP_PKEY_free), alg_(std::move(alg)), kid_(std::move(kid)) {
    if (!key) std::abort();
  }

  // A BIGNUM parameter of the key, base64url; `pad` > 0: left-padded to that many bytes.
  std::string bnParam(const char* name, int pad) const {
    BIGNUM* bn = nullptr;
    if (EVP_PKEY_get_bn_param(key_.get(), name, &bn) != 1) std::abort();
    std::string bytes(static_cast<size_t>(pad > 0 ? pad : BN_num_bytes(bn)), '\0');
    BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(bytes.data()),
                 static_cast<int>(bytes.size()));
    BN_free(bn);
    return auth::base64UrlEncode(bytes);
  }

  std::shared_ptr<EVP_PKEY> key_;
  std::string alg_;
  std::string kid_;
};

// {"keys": [...]} of the keys' JWKs.
inline std::string jwksOf(const std::vector<const TestJwtKey*>& keys) {
  nlohmann::json set = {{"keys", nlohmann::json::array()}};
  for (const TestJwtKey* k : keys) set["keys"].push_back(k->jwk());
  return set.dump();
}

}  // namespace nodemesh::testing
