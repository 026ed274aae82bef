#include "auth/jwt.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "auth/base64url.h"

namespace nodemesh::auth {

namespace {

using Json = nlohmann::json;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, identity::OpensslDeleter<ECDSA_SIG, ECDSA_SIG_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, identity::OpensslDeleter<EVP_MD_CTX, EVP_MD_CTX_free>>;

constexpr size_t kEs256SignatureBytes = 64;  // r || s, 32 bytes each (RFC 7518 section 3.4)

JwtFailure fail(JwtFailureReason reason, std::string detail) {
  return JwtFailure{reason, std::move(detail)};
}

// nlohmann's parser recurses per nesting level; a token is attacker-controlled, so its nesting
// is bounded before it is parsed (strings are skipped, escapes included).
bool nestingWithin(std::string_view json, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

std::optional<Json> parseObject(std::string_view text) {
  if (!nestingWithin(text, kMaxJsonDepth)) return std::nullopt;
  Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
  return doc;
}

std::string jsonText(const Json& value) {
  // replace: the parser already refused invalid UTF-8, so this never throws in practice.
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Envoy's claim extraction for the RBAC filter's metadata: a string as it is, a list one value
// per element (strings as they are, others as JSON text), objects by path, anything else as its
// JSON text.
void addClaims(const Json& object, std::vector<std::string>& path,
               std::map<std::vector<std::string>, std::vector<std::string>>& out) {
  for (const auto& [name, value] : object.items()) {
    path.push_back(name);
    if (value.is_object()) {
      addClaims(value, path, out);
    } else {
      std::vector<std::string>& values = out[path];
      if (value.is_string()) {
        values.push_back(value.get<std::string>());
      } else if (value.is_array()) {
        for (const Json& v : value)
          values.push_back(v.is_string() ? v.get<std::string>() : jsonText(v));
      } else {
        values.push_back(jsonText(value));
      }
    }
    path.pop_back();
  }
}

// exp / nbf: a NumericDate (RFC 7519 section 2), seconds since the epoch, possibly fractional.
std::variant<std::optional<double>, JwtFailure> numericDate(const Json& payload, const char* name) {
  auto it = payload.find(name);
  if (it == payload.end()) return std::optional<double>();
  if (!it->is_number() || !std::isfinite(it->get<double>())) {
    return fail(JwtFailureReason::kMalformed, std::string("[") + name + "] is not a number");
  }
  return std::optional<double>(it->get<double>());
}

// A NumericDate for a log line. Not through int64_t: a token may say 1e300.
std::string dateText(double seconds) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", seconds);
  return buf;
}

bool verifySignature(const ParsedJwt& jwt, const Jwk& key) {
  std::string der;
  std::string_view sig = jwt.signature;
  if (jwt.alg == JwsAlg::kEs256) {
    // JWS carries the raw r || s (RFC 7518 section 3.4); OpenSSL verifies a DER ECDSA-Sig-Value.
    if (jwt.signature.size() != kEs256SignatureBytes) return false;
    const auto* raw = reinterpret_cast<const unsigned char*>(jwt.signature.data());
    EcdsaSigPtr ecdsa(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(raw, 32, nullptr);
    BIGNUM* s = BN_bin2bn(raw + 32, 32, nullptr);
    if (!ecdsa || !r || !s || ECDSA_SIG_set0(ecdsa.get(), r, s) != 1) {
      BN_free(r);
      BN_free(s);
      return false;
    }
    const int len = i2d_ECDSA_SIG(ecdsa.get(), nullptr);
    if (len <= 0) return false;
    der.resize(static_cast<size_t>(len));
    auto* p = reinterpret_cast<unsigned char*>(der.data());
    if (i2d_ECDSA_SIG(ecdsa.get(), &p) != len) return false;
    sig = der;
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.key.get()) != 1) {
    ERR_clear_error();
    return false;
  }
  const int ok = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
      reinterpret_cast<const unsigned char*>(jwt.signing_input.data()), jwt.signing_input.size());
  ERR_clear_error();  // a failed verification leaves reasons on this thread's queue
  return ok == 1;
}

}  // namespace

std::string_view toString(JwtFailureReason reason) {
  switch (reason) {
    case JwtFailureReason::kMalformed:
      return "malformed";
    case JwtFailureReason::kTooLarge:
      return "too_large";
    case JwtFailureReason::kUnsupportedAlg:
      return "unsupported_alg";
    case JwtFailureReason::kUnknownIssuer:
      return "unknown_issuer";
    case JwtFailureReason::kUnknownKid:
      return "unknown_kid";
    case JwtFailureReason::kBadSignature:
      return "bad_signature";
    case JwtFailureReason::kExpired:
      return "expired";
    case JwtFailureReason::kNotYetValid:
      return "not_yet_valid";
    case JwtFailureReason::kAudienceNotAllowed:
      return "audience_not_allowed";
  }
  return "unknown";
}

std::string_view JwtFailure::message() const {
  // Envoy's jwt_verify_lib status strings, which Envoy's jwt_authn filter sends as the body.
  switch (reason) {
    case JwtFailureReason::kMalformed:
      return "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
    case JwtFailureReason::kTooLarge:
      return "Jwt is too large";  // ours: Envoy refuses such a header before its JWT filter
    case JwtFailureReason::kUnsupportedAlg:
      return "Jwt header [alg] field value is invalid";
    case JwtFailureReason::kUnknownIssuer:
      return "Jwt issuer is not configured";
    case JwtFailureReason::kUnknownKid:
      return "Jwks doesn't have key to match kid or alg from Jwt";
    case JwtFailureReason::kBadSignature:
      return "Jwt verification fails";
    case JwtFailureReason::kExpired:
      return "Jwt is expired";
    case JwtFailureReason::kNotYetValid:
      return "Jwt not yet valid";
    case JwtFailureReason::kAudienceNotAllowed:
      return "Audiences in Jwt are not allowed";
  }
  return "Jwt verification fails";
}

std::variant<ParsedJwt, JwtFailure> parseJwt(std::string_view token) {
  if (token.size() > kMaxTokenBytes) {
    return fail(JwtFailureReason::kTooLarge, "token of " + std::to_string(token.size()) +
                                                 " bytes; at most " +
                                                 std::to_string(kMaxTokenBytes));
  }
  const size_t dot1 = token.find('.');
  const size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return fail(JwtFailureReason::kMalformed, "not three dot-separated parts");
  }
  auto header_text = base64UrlDecode(token.substr(0, dot1));
  if (!header_text) return fail(JwtFailureReason::kMalformed, "header is not base64url");
  auto payload_text = base64UrlDecode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  if (!payload_text) return fail(JwtFailureReason::kMalformed, "payload is not base64url");
  auto signature = base64UrlDecode(token.substr(dot2 + 1));
  if (!signature) return fail(JwtFailureReason::kMalformed, "signature is not base64url");
  auto header = parseObject(*header_text);
  if (!header) return fail(JwtFailureReason::kMalformed, "header is not a JSON object");

  ParsedJwt out;
  auto alg = header->find("alg");
  if (alg == header->end() || !alg->is_string()) {
    return fail(JwtFailureReason::kMalformed, "header has no [alg]");
  }
  const auto& alg_name = alg->get_ref<const std::string&>();
  if (alg_name == "RS256") {
    out.alg = JwsAlg::kRs256;
  } else if (alg_name == "ES256") {
    out.alg = JwsAlg::kEs256;
  } else {
    // "none" above all (RFC 8725 section 2.1), and HS256, whose key would be the public key.
    return fail(JwtFailureReason::kUnsupportedAlg, "alg '" + alg_name + "' is not accepted");
  }
  // RFC 7515 section 4.1.11: extensions listed in crit must be understood; we know none.
  if (header->contains("crit")) {
    return fail(JwtFailureReason::kUnsupportedAlg, "header has [crit] extensions");
  }
  if (auto kid = header->find("kid"); kid != header->end()) {
    if (!kid->is_string())
      return fail(JwtFailureReason::kMalformed, "header [kid] is not a string");
    out.kid = kid->get<std::string>();
  }
  auto payload = parseObject(*payload_text);
  if (!payload) return fail(JwtFailureReason::kMalformed, "payload is not a JSON object");
  auto iss = payload->find("iss");
  if (iss == payload->end() || !iss->is_string()) {
    return fail(JwtFailureReason::kMalformed, "payload has no [iss] string");
  }
  out.issuer = iss->get<std::string>();
  out.signing_input = std::string(token.substr(0, dot2));
  out.signature = std::move(*signature);
  out.payload_json = std::move(*payload_text);
  return out;
}

std::variant<policy::RequestAuth, JwtFailure> verifyJwt(const ParsedJwt& jwt,
                                                        const JwtVerifier& verifier,
                                                        std::chrono::system_clock::time_point now) {
  if (jwt.issuer != verifier.issuer) {
    return fail(JwtFailureReason::kUnknownIssuer, "iss '" + jwt.issuer + "'");
  }
  // The signature first: nothing of an unverified payload may decide anything else.
  bool key_found = false;
  bool verified = false;
  if (verifier.jwks) {
    for (const Jwk& key : verifier.jwks->keys()) {
      if (key.alg != jwt.alg || (!jwt.kid.empty() && key.kid != jwt.kid)) continue;
      key_found = true;
      if (verifySignature(jwt, key)) {
        verified = true;
        break;
      }
    }
  }
  if (!key_found) {
    return fail(JwtFailureReason::kUnknownKid,
                "no " + std::string(toString(jwt.alg)) + " key" +
                    (jwt.kid.empty() ? std::string() : " with kid '" + jwt.kid + "'"));
  }
  if (!verified) return fail(JwtFailureReason::kBadSignature, "signature does not verify");

  auto payload = parseObject(jwt.payload_json);
  if (!payload) return fail(JwtFailureReason::kMalformed, "payload is not a JSON object");
  const double now_s = std::chrono::duration<double>(now.time_since_epoch()).count();
  const double skew = static_cast<double>(kClockSkew.count());
  auto exp = numericDate(*payload, "exp");
  if (auto* f = std::get_if<JwtFailure>(&exp)) return *f;
  if (auto e = std::get<std::optional<double>>(exp); e && now_s > *e + skew) {
    return fail(JwtFailureReason::kExpired, "exp " + dateText(*e));
  }
  auto nbf = numericDate(*payload, "nbf");
  if (auto* f = std::get_if<JwtFailure>(&nbf)) return *f;
  if (auto n = std::get<std::optional<double>>(nbf); n && now_s + skew < *n) {
    return fail(JwtFailureReason::kNotYetValid, "nbf " + dateText(*n));
  }

  policy::RequestAuth auth;
  std::string sub;
  if (auto it = payload->find("sub"); it != payload->end()) {
    if (!it->is_string()) return fail(JwtFailureReason::kMalformed, "[sub] is not a string");
    sub = it->get<std::string>();
  }
  auth.principal = jwt.issuer + "/" + sub;  // Istio's request principal
  if (auto it = payload->find("aud"); it != payload->end()) {
    // RFC 7519 section 4.1.3: a string or a list of strings.
    if (it->is_string()) {
      auth.audiences.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const Json& a : *it) {
        if (!a.is_string()) return fail(JwtFailureReason::kMalformed, "[aud] holds a non-string");
        auth.audiences.push_back(a.get<std::string>());
      }
    } else {
      return fail(JwtFailureReason::kMalformed, "[aud] is neither a string nor a list");
    }
  }
  if (!verifier.audiences.empty()) {
    const bool allowed =
        std::any_of(auth.audiences.begin(), auth.audiences.end(), [&](const std::string& a) {
          return std::find(verifier.audiences.begin(), verifier.audiences.end(), a) !=
                 verifier.audiences.end();
        });
    if (!allowed) return fail(JwtFailureReason::kAudienceNotAllowed, "no allowed [aud]");
  }
  if (auto it = payload->find("azp"); it != payload->end() && it->is_string()) {
    auth.presenter = it->get<std::string>();
  }
  std::vector<std::string> path;
  addClaims(*payload, path, auth.claims);
  return auth;
}

}  // namespace nodemesh::auth
