// TlsSession: refused peers (identity, CA, TLS version, ALPN) and corrupt or truncated input.

#include <gtest/gtest.h>

#include "hbone/tls/tls_session.h"
#include "tests/unit/hbone/tls_session_test_util.h"

namespace nodemesh::tls::tls_session_test {
namespace {

TEST_F(TlsSessionTest, AcceptsAnyOfSeveralExpectedIdentities) {
  auto c = client(nullptr, {id("other"), id("server")});
  auto s = server();
  ASSERT_TRUE(c && s);
  const Outcome out = handshake(*c, *s);
  EXPECT_EQ(out.client, HandshakeState::kDone) << c->error().message;
  EXPECT_EQ(out.server, HandshakeState::kDone) << s->error().message;
}

TEST_F(TlsSessionTest, ClientRefusesUnexpectedServerIdentity) {
  auto c = client(nullptr, {id("reviews"), id("ratings")});
  auto s = server();
  ASSERT_TRUE(c && s);
  const Outcome out = handshake(*c, *s);
  EXPECT_EQ(out.client, HandshakeState::kFailed);
  EXPECT_TRUE(contains(c->error().message,
                       "server identity spiffe://cluster.local/ns/default/sa/server is not the "
                       "expected spiffe://cluster.local/ns/default/sa/reviews, "
                       "spiffe://cluster.local/ns/default/sa/ratings"));
  EXPECT_TRUE(contains(c->error().message, "certificate verify failed"));
  EXPECT_FALSE(c->peerIdentity().has_value());
  // The client's alert reaches the server.
  EXPECT_EQ(out.server, HandshakeState::kFailed);
  EXPECT_TRUE(contains(s->error().message, "alert"));
}

TEST_F(TlsSessionTest, ClientNeedsExpectedIdentities) {
  auto c = TlsSession::client(client_ctx_.get(), {});
  EXPECT_FALSE(c.ok());
}

TEST_F(TlsSessionTest, ServerRefusesClientWithoutCertificate) {
  SslCtxPtr bare = bareClientContext();
  auto c = client(bare.get());
  auto s = server();
  ASSERT_TRUE(c && s);
  const Outcome out = handshake(*c, *s);
  EXPECT_EQ(out.server, HandshakeState::kFailed);
  EXPECT_TRUE(contains(s->error().message, "peer did not return a certificate"));
  EXPECT_FALSE(s->peerIdentity().has_value());
  // TLS 1.3: the client finished before the server looked at its (missing) certificate; the
  // refusal arrives as an alert on the first read.
  if (out.client == HandshakeState::kDone) {
    std::array<uint8_t, 64> buf{};
    auto r = c->readPlain(buf);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(contains(r.error().message, "certificate required"));
  } else {
    EXPECT_EQ(out.client, HandshakeState::kFailed);
  }
}

TEST_F(TlsSessionTest, ServerRefusesClientFromAnotherCa) {
  testing::TempDir other_dir;
  auto other_ca = makeCa(other_dir.path());
  ASSERT_NE(other_ca, nullptr);
  auto foreign_cert = issue(*other_ca, "client");
  ASSERT_NE(foreign_cert, nullptr);
  // Trusts our root (so it accepts the server) but presents a certificate from the other CA.
  SslCtxPtr ctx = clientContext(*foreign_cert);
  auto c = client(ctx.get());
  auto s = server();
  ASSERT_TRUE(c && s);
  const Outcome out = handshake(*c, *s);
  EXPECT_EQ(out.server, HandshakeState::kFailed);
  EXPECT_TRUE(contains(s->error().message, "certificate verify failed"));
  EXPECT_TRUE(contains(s->error().message, "certificate verification: unable to get local issuer"));
  if (out.client == HandshakeState::kDone) {
    std::array<uint8_t, 64> buf{};
    auto r = c->readPlain(buf);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(contains(r.error().message, "unknown ca"));
  } else {
    EXPECT_EQ(out.client, HandshakeState::kFailed);
  }
}

TEST_F(TlsSessionTest, ClientRefusesServerFromAnotherCa) {
  testing::TempDir other_dir;
  auto other_ca = makeCa(other_dir.path());
  ASSERT_NE(other_ca, nullptr);
  auto foreign_cert = issue(*other_ca, "server");
  SslCtxPtr ctx = serverContext(*foreign_cert);
  auto c = client();
  auto s = server(ctx.get());
  ASSERT_TRUE(c && s);
  const Outcome out = handshake(*c, *s);
  EXPECT_EQ(out.client, HandshakeState::kFailed);
  EXPECT_TRUE(contains(c->error().message, "unable to get local issuer certificate"));
  EXPECT_EQ(out.server, HandshakeState::kFailed);
}

TEST_F(TlsSessionTest, ServerRefusesTls12Client) {
  SslCtxPtr ctx = clientContext(*client_cert_);
  ASSERT_EQ(SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_max_proto_version(ctx.get(), TLS1_2_VERSION), 1);
  auto c = client(ctx.get());
  auto s = server();
  ASSERT_TRUE(c && s);
  const Outcome out = handshake(*c, *s);
  EXPECT_EQ(out.server, HandshakeState::kFailed);
  EXPECT_TRUE(contains(s->error().message, "unsupported protocol"));
  EXPECT_EQ(out.client, HandshakeState::kFailed);
  EXPECT_TRUE(contains(c->error().message, "protocol version"));
}

TEST_F(TlsSessionTest, ServerRefusesClientWithoutAlpn) {
  SslCtxPtr ctx = clientContext(*client_cert_);
  ASSERT_EQ(SSL_CTX_set_alpn_protos(ctx.get(), nullptr, 0), 0);  // clears ALPN
  auto c = client(ctx.get());
  auto s = server();
  ASSERT_TRUE(c && s);
  const Outcome out = handshake(*c, *s);
  EXPECT_EQ(out.server, HandshakeState::kFailed);
  EXPECT_TRUE(contains(s->error().message, "client did not offer ALPN (h2 required)"));
  EXPECT_EQ(out.client, HandshakeState::kFailed);
  EXPECT_TRUE(contains(c->error().message, "no application protocol"));
}

TEST_F(TlsSessionTest, ServerRefusesClientOfferingOnlyHttp11) {
  SslCtxPtr ctx = clientContext(*client_cert_);
  static constexpr std::array<unsigned char, 9> kHttp11 = {8,   'h', 't', 't', 'p',
                                                           '/', '1', '.', '1'};
  ASSERT_EQ(SSL_CTX_set_alpn_protos(ctx.get(), kHttp11.data(), kHttp11.size()), 0);
  auto c = client(ctx.get());
  auto s = server();
  ASSERT_TRUE(c && s);
  const Outcome out = handshake(*c, *s);
  EXPECT_EQ(out.server, HandshakeState::kFailed);
  EXPECT_TRUE(contains(s->error().message, "client did not offer ALPN h2 (offered: http/1.1)"));
  EXPECT_EQ(out.client, HandshakeState::kFailed);
}

TEST_F(TlsSessionTest, ClientRefusesServerWithoutAlpn) {
  // A server context without our ALPN callback: the handshake completes without ALPN, and the
  // client (which requires h2) refuses the result.
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_use_certificate(ctx.get(), server_cert_->certificate());
  SSL_CTX_use_PrivateKey(ctx.get(), server_cert_->privateKey());
  SSL_CTX_set1_cert_store(ctx.get(), factory_->trustStore());
  auto c = client();
  auto s = server(ctx.get());
  ASSERT_TRUE(c && s);
  const Outcome out = handshake(*c, *s);
  EXPECT_EQ(out.client, HandshakeState::kFailed);
  EXPECT_TRUE(contains(c->error().message, "server did not negotiate ALPN h2"));
}

TEST_F(TlsSessionTest, GarbageToServerFailsCleanly) {
  for (const std::string& garbage :
       {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), std::string(5, '\0'),
        std::string("\x16\x03\x01\x00\x05hello", 10), std::string(70000, '\x17')}) {
    auto s = server();
    ASSERT_NE(s, nullptr);
    size_t fed = 0;
    HandshakeState state = HandshakeState::kWantMoreInput;
    while (state == HandshakeState::kWantMoreInput && fed < garbage.size()) {
      fed += s->feedEncrypted(bytesOf(garbage).subspan(fed));
      state = s->handshake();
    }
    if (state == HandshakeState::kWantMoreInput) {
      s->feedEof();
      state = s->handshake();
    }
    EXPECT_EQ(state, HandshakeState::kFailed);
    EXPECT_FALSE(s->error().message.empty());
    EXPECT_EQ(s->handshake(), HandshakeState::kFailed);  // sticky
    EXPECT_FALSE(s->writePlain(bytesOf("x")).ok());
  }
}

TEST_F(TlsSessionTest, TamperedRecordIsAnError) {
  auto c = client();
  auto s = server();
  ASSERT_TRUE(c && s);
  ASSERT_EQ(handshake(*c, *s).server, HandshakeState::kDone);
  ASSERT_TRUE(c->writePlain(bytesOf("secret payload")).ok());
  std::vector<uint8_t> record(c->pendingEncrypted().begin(), c->pendingEncrypted().end());
  c->consumeEncrypted(record.size());
  record.back() ^= 0x01;  // inside the AEAD tag
  ASSERT_EQ(s->feedEncrypted(record), record.size());
  std::array<uint8_t, 64> buf{};
  auto r = s->readPlain(buf);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "TLS read failed"));
  EXPECT_FALSE(s->readPlain(buf).ok());  // sticky
}

TEST_F(TlsSessionTest, TruncationWithoutCloseNotifyIsAnError) {
  auto c = client();
  auto s = server();
  ASSERT_TRUE(c && s);
  ASSERT_EQ(handshake(*c, *s).server, HandshakeState::kDone);
  ASSERT_TRUE(c->writePlain(bytesOf("partial")).ok());
  transfer(*c, *s);
  s->feedEof();
  std::array<uint8_t, 64> buf{};
  auto r = s->readPlain(buf);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, ReadStatus::kData);
  r = s->readPlain(buf);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "unexpected eof"));
}

}  // namespace
}  // namespace nodemesh::tls::tls_session_test
