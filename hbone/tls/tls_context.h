#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <span>
#include <string_view>
#include <utility>

#include "common/result.h"
#include "identity/openssl_ptr.h"
#include "identity/workload_certificate.h"

namespace nodemesh::tls {

using identity::SslCtxPtr;
using identity::SslPtr;

// The mesh's TLS profile (DESIGN.md, "The tunnel"): TLS 1.3 only, AES-GCM only, ALPN h2,
// mutual certificate authentication against the mesh trust root.
inline constexpr std::string_view kAlpnH2 = "h2";
inline constexpr const char* kCipherSuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";
inline constexpr const char* kGroups = "X25519:P-256";
inline constexpr int kMaxVerifyDepth = 4;

// Builds SSL_CTXs for one trust root and any number of workload certificates. An SSL_CTX
// is per certificate version: when a certificate rotates, build a new one (cheap: the trust
// store is parsed once and shared by reference, no file I/O, no key generation) and use it for
// new connections. Live SSL objects hold a reference to the SSL_CTX they were made from and to
// its certificate and key, so they are unaffected. Const methods are thread-safe.
class TlsContextFactory {
 public:
  // `trust_roots`: the certificates a peer's chain must end at. Each is referenced, not copied.
  static Result<TlsContextFactory> create(std::span<X509* const> trust_roots);
  static Result<TlsContextFactory> create(X509* trust_root) {
    return create(std::span<X509* const>(&trust_root, 1));
  }

  // Server side (inbound HBONE, port 15008): presents `cert`, requires a client certificate
  // chained to the root carrying exactly one SPIFFE ID, selects ALPN h2 and fails the handshake
  // (no_application_protocol alert) for a client that does not offer it.
  Result<SslCtxPtr> serverContext(const identity::WorkloadCertificate& cert) const;
  // Client side: presents `cert`, offers ALPN h2, verifies the server chain to the root. The
  // server's SPIFFE ID is checked per connection against TlsSession::client's expected list.
  Result<SslCtxPtr> clientContext(const identity::WorkloadCertificate& cert) const;

  X509_STORE* trustStore() const { return store_.get(); }

 private:
  explicit TlsContextFactory(identity::X509StorePtr store) : store_(std::move(store)) {}
  Result<SslCtxPtr> newContext(bool server, const identity::WorkloadCertificate& cert) const;

  identity::X509StorePtr store_;
};

}  // namespace nodemesh::tls
