#include "identity/openssl_ptr.h"

#include <openssl/err.h>

#include <array>
#include <string>

namespace nodemesh::identity {

X509Ptr shareX509(X509* cert) {
  if (cert == nullptr || X509_up_ref(cert) != 1) return nullptr;
  return X509Ptr(cert);
}

Result<EvpPkeyPtr> generateP256Key() {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_group_name(ctx.get(), "P-256") != 1 ||
      EVP_PKEY_generate(ctx.get(), &key) != 1) {
    return opensslError("generating an EC P-256 key");
  }
  return EvpPkeyPtr(key);
}

Result<GeneralNamesPtr> uriGeneralNames(const std::string& uri) {
  GeneralNamesPtr names(GENERAL_NAMES_new());
  GENERAL_NAME* name = GENERAL_NAME_new();
  ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
  if (!names || name == nullptr || ia5 == nullptr ||
      ASN1_STRING_set(ia5, uri.data(), static_cast<int>(uri.size())) != 1) {
    GENERAL_NAME_free(name);
    ASN1_IA5STRING_free(ia5);
    return opensslError("building the URI SAN");
  }
  GENERAL_NAME_set0_value(name, GEN_URI, ia5);  // name owns ia5 now
  if (sk_GENERAL_NAME_push(names.get(), name) <= 0) {
    GENERAL_NAME_free(name);
    return opensslError("building the URI SAN");
  }
  return names;
}

bool drainOpensslErrors(std::string& out) {
  bool any = false;
  std::array<char, 256> buf{};
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    ERR_error_string_n(e, buf.data(), buf.size());
    if (any) out += "; ";
    out += buf.data();
    any = true;
  }
  return any;
}

Error opensslError(std::string_view what, int code) {
  std::string message(what);
  std::string reasons;
  if (drainOpensslErrors(reasons)) {
    message += ": ";
    message += reasons;
  }
  return Error{code, std::move(message)};
}

}  // namespace nodemesh::identity
