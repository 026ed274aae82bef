#include "hbone/tls/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <array>
#include <string>

#include "hbone/tls/peer_check.h"

namespace nodemesh::tls {

using identity::opensslError;

Result<TlsContextFactory> TlsContextFactory::create(std::span<X509* const> trust_roots) {
  if (trust_roots.empty()) return Error::invalid("TLS: no trust root");
  ERR_clear_error();
  identity::X509StorePtr store(X509_STORE_new());
  if (!store) return opensslError("TLS: X509_STORE_new");
  for (X509* root : trust_roots) {
    if (root == nullptr) return Error::invalid("TLS: null trust root");
    if (X509_STORE_add_cert(store.get(), root) != 1) {  // takes its own reference
      return opensslError("TLS: adding a trust root");
    }
  }
  return TlsContextFactory(std::move(store));
}

Result<SslCtxPtr> TlsContextFactory::serverContext(
    const identity::WorkloadCertificate& cert) const {
  return newContext(/*server=*/true, cert);
}

Result<SslCtxPtr> TlsContextFactory::clientContext(
    const identity::WorkloadCertificate& cert) const {
  return newContext(/*server=*/false, cert);
}

Result<SslCtxPtr> TlsContextFactory::newContext(bool server,
                                                const identity::WorkloadCertificate& cert) const {
  const std::string what = std::string("TLS ") + (server ? "server" : "client") + " context for " +
                           cert.identity().toString();
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (!ctx) return opensslError(what + ": SSL_CTX_new");
  SSL_CTX* c = ctx.get();
  if (SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1) {
    return opensslError(what + ": restricting to TLS 1.3");
  }
  // TLS 1.3 suites come from set_ciphersuites; set_cipher_list only governs TLS <= 1.2.
  if (SSL_CTX_set_ciphersuites(c, kCipherSuites) != 1) {
    return opensslError(what + ": setting cipher suites");
  }
  if (SSL_CTX_set1_groups_list(c, kGroups) != 1) {
    return opensslError(what + ": setting key exchange groups");
  }
  // No resumption: a resumed session skips certificate verification, and with it the per-
  // connection check of the server's SPIFFE ID. No tickets also saves a round of bytes.
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  if (server && SSL_CTX_set_num_tickets(c, 0) != 1) {
    return opensslError(what + ": disabling session tickets");
  }

  SSL_CTX_set1_cert_store(c, store_.get());  // shared, reference counted
  SSL_CTX_set_verify(c,
                     server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                     internal::verifyPeerCallback);
  SSL_CTX_set_verify_depth(c, kMaxVerifyDepth);

  if (SSL_CTX_use_certificate(c, cert.certificate()) != 1 ||
      SSL_CTX_use_PrivateKey(c, cert.privateKey()) != 1) {
    return opensslError(what + ": installing the certificate");
  }
  for (const identity::X509Ptr& intermediate : cert.chain()) {
    if (SSL_CTX_add1_chain_cert(c, intermediate.get()) != 1) {
      return opensslError(what + ": adding an intermediate certificate");
    }
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    return opensslError(what + ": certificate and key do not match");
  }

  if (server) {
    SSL_CTX_set_alpn_select_cb(c, internal::selectAlpnCallback, nullptr);
    SSL_CTX_set_client_hello_cb(c, internal::clientHelloCallback, nullptr);
  } else {
    static constexpr std::array<unsigned char, 3> kAlpnWire = {2, 'h', '2'};
    // Unlike most of OpenSSL, set_alpn_protos returns 0 on success.
    if (SSL_CTX_set_alpn_protos(c, kAlpnWire.data(), kAlpnWire.size()) != 0) {
      return opensslError(what + ": setting ALPN");
    }
  }
  return ctx;
}

}  // namespace nodemesh::tls
