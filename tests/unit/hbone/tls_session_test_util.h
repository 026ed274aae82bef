#pragma once

// Shared by the TlsSession tests: a handshake and transfers between two sessions without
// sockets, and a fixture with a CA and workload certificates.

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/sslerr.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hbone/tls/tls_context.h"
#include "hbone/tls/tls_session.h"
#include "identity/clock.h"
#include "identity/local_ca.h"
#include "tests/support/temp_dir.h"

namespace nodemesh::tls::tls_session_test {

using identity::LocalCa;
using identity::SpiffeId;
using identity::WorkloadCertificate;
using HandshakeState = TlsSession::HandshakeState;
using ReadStatus = TlsSession::ReadStatus;

inline constexpr char kTrustDomain[] = "cluster.local";

inline SpiffeId id(const char* sa) {
  return SpiffeId::create(kTrustDomain, "default", sa).value();
}

inline std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline ::testing::AssertionResult contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "'" << haystack << "' does not contain '" << needle << "'";
}

// Moves pending ciphertext from `from` to `to`, as two sockets would; returns bytes moved.
inline size_t transfer(TlsSession& from, TlsSession& to) {
  const size_t n = to.feedEncrypted(from.pendingEncrypted());
  from.consumeEncrypted(n);
  return n;
}

struct Outcome {
  HandshakeState client = HandshakeState::kWantMoreInput;
  HandshakeState server = HandshakeState::kWantMoreInput;
};

inline Outcome handshake(TlsSession& client, TlsSession& server) {
  Outcome out;
  for (int round = 0; round < 10; ++round) {
    out.client = client.handshake();
    const size_t to_server = transfer(client, server);
    out.server = server.handshake();
    const size_t to_client = transfer(server, client);
    if (to_server == 0 && to_client == 0 && out.client != HandshakeState::kWantMoreInput &&
        out.server != HandshakeState::kWantMoreInput) {
      break;
    }
  }
  return out;
}

// Reads everything currently decryptable.
inline std::string readAll(TlsSession& s, ReadStatus* last = nullptr) {
  std::string got;
  std::array<uint8_t, 4096> buf{};
  for (;;) {
    auto r = s.readPlain(buf);
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r.ok()) return got;
    if (last != nullptr) *last = r->status;
    if (r->status != ReadStatus::kData) return got;
    got.append(reinterpret_cast<const char*>(buf.data()), r->bytes);
  }
}

class TlsSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = makeCa(tmp_.path());
    ASSERT_NE(ca_, nullptr);
    auto factory = TlsContextFactory::create(ca_->rootCertificate());
    ASSERT_TRUE(factory.ok()) << factory.error().message;
    factory_ = std::make_unique<TlsContextFactory>(std::move(factory).value());
    server_cert_ = issue(*ca_, "server");
    client_cert_ = issue(*ca_, "client");
    ASSERT_TRUE(server_cert_ && client_cert_);
    server_ctx_ = serverContext(*server_cert_);
    client_ctx_ = clientContext(*client_cert_);
    ASSERT_TRUE(server_ctx_ && client_ctx_);
  }

  std::unique_ptr<LocalCa> makeCa(const std::string& dir) {
    auto ca = LocalCa::loadOrCreate(dir, kTrustDomain, clock_);
    EXPECT_TRUE(ca.ok()) << ca.error().message;
    return ca.ok() ? std::move(ca).value() : nullptr;
  }
  static std::shared_ptr<const WorkloadCertificate> issue(LocalCa& ca, const char* sa) {
    auto cert = ca.issue(id(sa));
    EXPECT_TRUE(cert.ok()) << cert.error().message;
    return cert.ok() ? *cert : nullptr;
  }
  SslCtxPtr serverContext(const WorkloadCertificate& cert) {
    auto ctx = factory_->serverContext(cert);
    EXPECT_TRUE(ctx.ok()) << ctx.error().message;
    return ctx.ok() ? std::move(ctx).value() : nullptr;
  }
  SslCtxPtr clientContext(const WorkloadCertificate& cert) {
    auto ctx = factory_->clientContext(cert);
    EXPECT_TRUE(ctx.ok()) << ctx.error().message;
    return ctx.ok() ? std::move(ctx).value() : nullptr;
  }
  // A client context without any certificate (otherwise like ours).
  SslCtxPtr bareClientContext() {
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
    SSL_CTX_set1_cert_store(ctx.get(), factory_->trustStore());
    static constexpr std::array<unsigned char, 3> kAlpn = {2, 'h', '2'};
    SSL_CTX_set_alpn_protos(ctx.get(), kAlpn.data(), kAlpn.size());
    return ctx;
  }

  std::unique_ptr<TlsSession> server(SSL_CTX* ctx = nullptr) {
    auto s = TlsSession::server(ctx != nullptr ? ctx : server_ctx_.get());
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? std::move(s).value() : nullptr;
  }
  std::unique_ptr<TlsSession> client(SSL_CTX* ctx = nullptr,
                                     std::vector<SpiffeId> expected = {id("server")}) {
    auto s = TlsSession::client(ctx != nullptr ? ctx : client_ctx_.get(), std::move(expected),
                                "server.default.svc.cluster.local");
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? std::move(s).value() : nullptr;
  }

  identity::SystemClock clock_;  // OpenSSL verifies against the real time
  testing::TempDir tmp_;
  std::unique_ptr<LocalCa> ca_;
  std::unique_ptr<TlsContextFactory> factory_;
  std::shared_ptr<const WorkloadCertificate> server_cert_;
  std::shared_ptr<const WorkloadCertificate> client_cert_;
  SslCtxPtr server_ctx_;
  SslCtxPtr client_ctx_;
};

}  // namespace nodemesh::tls::tls_session_test
