#pragma once

// Owning smart pointers for OpenSSL objects and the error-queue helper shared by identity/ and
// tls/. Every OpenSSL object we own lives in one of these; none is copyable (share an X509 or
// EVP_PKEY with X509_up_ref/EVP_PKEY_up_ref and a second pointer when needed).

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nodemesh::identity {

template <typename T, void (*FreeFn)(T*)>
struct OpensslDeleter {
  void operator()(T* p) const { FreeFn(p); }
};

using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OpensslDeleter<EVP_PKEY, EVP_PKEY_free>>;
using EvpPkeyCtxPtr =
    std::unique_ptr<EVP_PKEY_CTX, OpensslDeleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, OpensslDeleter<X509, X509_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, OpensslDeleter<X509_NAME, X509_NAME_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, OpensslDeleter<X509_STORE, X509_STORE_free>>;
using X509StoreCtxPtr =
    std::unique_ptr<X509_STORE_CTX, OpensslDeleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using X509ExtensionPtr =
    std::unique_ptr<X509_EXTENSION, OpensslDeleter<X509_EXTENSION, X509_EXTENSION_free>>;
using GeneralNamesPtr =
    std::unique_ptr<GENERAL_NAMES, OpensslDeleter<GENERAL_NAMES, GENERAL_NAMES_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, OpensslDeleter<BIGNUM, BN_free>>;
using BioPtr = std::unique_ptr<BIO, OpensslDeleter<BIO, BIO_free_all>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OpensslDeleter<SSL_CTX, SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, OpensslDeleter<SSL, SSL_free>>;

// A second owning reference to `cert` (X509_up_ref).
X509Ptr shareX509(X509* cert);

// A fresh EC P-256 key (workload keys, the local CA's root, CSRs for Istio's CA).
Result<EvpPkeyPtr> generateP256Key();
// A subjectAltName value holding the one URI `uri` (a SPIFFE ID), for a certificate or a CSR.
Result<GeneralNamesPtr> uriGeneralNames(const std::string& uri);

// An Error "<what>: <OpenSSL reasons>" that drains this thread's OpenSSL error queue, oldest
// first (ERR_error_string_n). `code` is errno-style; 0 when the failure is not a system error.
Error opensslError(std::string_view what, int code = 0);

// Appends the queued OpenSSL errors to `out` ("; "-separated) and clears the queue. Returns
// whether there were any.
bool drainOpensslErrors(std::string& out);

}  // namespace nodemesh::identity
