#include "identity/openssl_ptr.h"

#include <openssl/err.h>

#include <array>
#include <string>

namespace nodemesh::identity {

X509Ptr shareX509(X509* cert) {
  if (cert == nullptr || X509_up_ref(cert) != 1) return nullptr;
  return X509Ptr(cert);
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
