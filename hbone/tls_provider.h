#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "common/result.h"
#include "hbone/tls/tls_context.h"
#include "identity/cert_manager.h"
#include "identity/openssl_ptr.h"
#include "identity/spiffe_id.h"

namespace nodemesh::hbone {

// TLS contexts for the workload identities of this node, built from each identity's current
// certificate. After a rotation the next call builds a context from the new certificate;
// connections made with the old one keep it (OpenSSL refcounts contexts), so rotation never
// drops a connection. Thread-safe.
class TlsProvider {
 public:
  TlsProvider(identity::CertificateManager& certificates, tls::TlsContextFactory factory)
      : certificates_(certificates), factory_(std::move(factory)) {}

  // Valid until the identity's certificate rotates; take a reference (SSL_new does) to keep it.
  Result<SSL_CTX*> serverContext(const identity::SpiffeId& id) { return context(id, true); }
  Result<SSL_CTX*> clientContext(const identity::SpiffeId& id) { return context(id, false); }

 private:
  struct Entry {
    std::shared_ptr<const identity::WorkloadCertificate> certificate;
    identity::SslCtxPtr server;
    identity::SslCtxPtr client;
  };
  Result<SSL_CTX*> context(const identity::SpiffeId& id, bool server);

  identity::CertificateManager& certificates_;
  tls::TlsContextFactory factory_;
  mutable std::mutex mu_;
  std::map<identity::SpiffeId, Entry> entries_;
};

}  // namespace nodemesh::hbone
