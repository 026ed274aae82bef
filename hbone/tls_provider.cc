#include "hbone/tls_provider.h"

#include <chrono>
#include <ctime>

#include <spdlog/spdlog.h>

namespace nodemesh::hbone {

Result<SSL_CTX*> TlsProvider::context(const identity::SpiffeId& id, bool server) {
  auto certificate = certificates_.get(id);
  if (!certificate) return certificate.error();
  std::lock_guard<std::mutex> lock(mu_);
  Entry& entry = entries_[id];
  if (entry.certificate != *certificate) {
    entry = Entry{*certificate, nullptr, nullptr};
    auto expiry = std::chrono::system_clock::to_time_t((*certificate)->notAfter());
    std::tm tm{};
    gmtime_r(&expiry, &tm);
    char until[32];
    std::strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
    spdlog::info("workload certificate for {}: serial {}, valid until {}", id.toString(),
                 (*certificate)->serialHex(), until);
  }
  identity::SslCtxPtr& ctx = server ? entry.server : entry.client;
  if (!ctx) {
    auto built =
        server ? factory_.serverContext(**certificate) : factory_.clientContext(**certificate);
    if (!built) return built.error();
    ctx = std::move(*built);
  }
  return ctx.get();
}

}  // namespace nodemesh::hbone
