#include "ztunnel/tls_provider.h"

namespace nodemesh::ztunnel {

Result<SSL_CTX*> TlsProvider::context(const identity::SpiffeId& id, bool server) {
  auto certificate = certificates_.get(id);
  if (!certificate) return certificate.error();
  std::lock_guard<std::mutex> lock(mu_);
  Entry& entry = entries_[id];
  if (entry.certificate != *certificate) {
    entry = Entry{*certificate, nullptr, nullptr};
  }
  identity::SslCtxPtr& ctx = server ? entry.server : entry.client;
  if (!ctx) {
    auto built =
        server ? factory_.serverContext(**certificate) : factory_.clientContext(**certificate);
    if (!built) return built.error();
    ctx = std::move(*built);
    ++built_;
  }
  return ctx.get();
}

uint64_t TlsProvider::contextsBuilt() const {
  std::lock_guard<std::mutex> lock(mu_);
  return built_;
}

}  // namespace nodemesh::ztunnel
