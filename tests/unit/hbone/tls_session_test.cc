#include "hbone/tls/tls_session.h"

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

#include "identity/clock.h"
#include "identity/local_ca.h"
#include "tests/support/temp_dir.h"
#include "hbone/tls/tls_context.h"

namespace nodemesh::tls {
namespace {

using identity::LocalCa;
using identity::SpiffeId;
using identity::WorkloadCertificate;
using HandshakeState = TlsSession::HandshakeState;
using ReadStatus = TlsSession::ReadStatus;

constexpr char kTrustDomain[] = "cluster.local";

SpiffeId id(const char* sa) {
  return SpiffeId::create(kTrustDomain, "default", sa).value();
}

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

::testing::AssertionResult contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "'" << haystack << "' does not contain '" << needle << "'";
}

// Moves pending ciphertext from `from` to `to`, as two sockets would; returns bytes moved.
size_t transfer(TlsSession& from, TlsSession& to) {
  const size_t n = to.feedEncrypted(from.pendingEncrypted());
  from.consumeEncrypted(n);
  return n;
}

struct Outcome {
  HandshakeState client = HandshakeState::kWantMoreInput;
  HandshakeState server = HandshakeState::kWantMoreInput;
};

Outcome handshake(TlsSession& client, TlsSession& server) {
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
std::string readAll(TlsSession& s, ReadStatus* last = nullptr) {
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

TEST_F(TlsSessionTest, MutualHandshakeAndDataBothWays) {
  auto c = client();
  auto s = server();
  ASSERT_TRUE(c && s);
  const Outcome out = handshake(*c, *s);
  ASSERT_EQ(out.client, HandshakeState::kDone) << c->error().message;
  ASSERT_EQ(out.server, HandshakeState::kDone) << s->error().message;
  EXPECT_EQ(c->alpn(), "h2");
  EXPECT_EQ(s->alpn(), "h2");
  ASSERT_TRUE(c->peerIdentity().has_value());
  ASSERT_TRUE(s->peerIdentity().has_value());
  EXPECT_EQ(*c->peerIdentity(), id("server"));
  EXPECT_EQ(*s->peerIdentity(), id("client"));
  EXPECT_TRUE(c->isServer() == false && s->isServer());

  auto w = c->writePlain(bytesOf("hello from client"));
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_EQ(*w, 17U);
  transfer(*c, *s);
  EXPECT_EQ(readAll(*s), "hello from client");

  w = s->writePlain(bytesOf("hello from server"));
  ASSERT_TRUE(w.ok());
  transfer(*s, *c);
  EXPECT_EQ(readAll(*c), "hello from server");

  // Nothing more: would-block, not EOF.
  ReadStatus last = ReadStatus::kData;
  EXPECT_EQ(readAll(*s, &last), "");
  EXPECT_EQ(last, ReadStatus::kWouldBlock);

  // close_notify each way.
  ASSERT_TRUE(c->shutdown().ok());
  transfer(*c, *s);
  EXPECT_EQ(readAll(*s, &last), "");
  EXPECT_EQ(last, ReadStatus::kEof);
  auto after_close = c->writePlain(bytesOf("x"));
  EXPECT_FALSE(after_close.ok());
  // Half-close: the server may still answer.
  ASSERT_TRUE(s->writePlain(bytesOf("bye")).ok());
  ASSERT_TRUE(s->shutdown().ok());
  transfer(*s, *c);
  EXPECT_EQ(readAll(*c, &last), "bye");
  EXPECT_EQ(last, ReadStatus::kEof);
}

TEST_F(TlsSessionTest, BulkTransferStaysWithinBounds) {
  auto c = client();
  auto s = server();
  ASSERT_TRUE(c && s);
  ASSERT_EQ(handshake(*c, *s).server, HandshakeState::kDone);

  std::vector<uint8_t> data(3 * 1024 * 1024 + 17);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + (i >> 9));
  std::vector<uint8_t> received;
  std::array<uint8_t, 16384> buf{};
  size_t sent = 0;
  size_t max_pending = 0;
  size_t max_buffered = 0;
  // A "socket" that carries at most 24 KiB per round, so that backpressure kicks in.
  while (received.size() < data.size()) {
    auto w = c->writePlain(std::span(data).subspan(sent));
    ASSERT_TRUE(w.ok()) << w.error().message;
    sent += *w;
    max_pending = std::max(max_pending, c->pendingEncrypted().size());
    auto chunk =
        c->pendingEncrypted().first(std::min<size_t>(24 * 1024, c->pendingEncrypted().size()));
    c->consumeEncrypted(s->feedEncrypted(chunk));
    max_buffered = std::max(max_buffered, s->bufferedEncryptedInput());
    auto r = s->readPlain(buf);
    ASSERT_TRUE(r.ok()) << r.error().message;
    if (r->status == ReadStatus::kData)
      received.insert(received.end(), buf.begin(), buf.begin() + r->bytes);
  }
  EXPECT_EQ(received, data);
  EXPECT_LE(max_pending, TlsSession::kMaxPendingEncryptedOutput + 8 * 1024);
  EXPECT_LE(max_buffered, TlsSession::kMaxBufferedEncryptedInput);
}

TEST_F(TlsSessionTest, WriteAndFeedRefuseBeyondTheirBounds) {
  auto c = client();
  auto s = server();
  ASSERT_TRUE(c && s);
  ASSERT_EQ(handshake(*c, *s).server, HandshakeState::kDone);
  const std::vector<uint8_t> big(200 * 1024, 'x');
  size_t accepted = 0;
  for (int i = 0; i < 10; ++i) {
    auto w = c->writePlain(big);
    ASSERT_TRUE(w.ok());
    accepted += *w;
  }
  EXPECT_LE(accepted, TlsSession::kMaxPendingEncryptedOutput);
  EXPECT_GT(accepted, TlsSession::kMaxPendingEncryptedOutput - 1024);
  EXPECT_EQ(*c->writePlain(big), 0U);
  EXPECT_LE(c->pendingEncrypted().size(), TlsSession::kMaxPendingEncryptedOutput + 8 * 1024);

  const size_t fed = s->feedEncrypted(c->pendingEncrypted());
  EXPECT_EQ(fed, TlsSession::kMaxBufferedEncryptedInput);
  c->consumeEncrypted(fed);
  EXPECT_EQ(s->feedEncrypted(c->pendingEncrypted()), 0U);
}

// Lent input: read in place; what OpenSSL leaves unread is buffered within the input bound, the
// rest is not taken and comes again; the plaintext arrives intact whatever the split.
TEST_F(TlsSessionTest, LentInputIsReadInPlaceAndTheUnreadTailBuffered) {
  auto c = client();
  auto s = server();
  ASSERT_TRUE(c && s);
  ASSERT_EQ(handshake(*c, *s).server, HandshakeState::kDone);

  std::vector<uint8_t> data(1024 * 1024 + 5);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + (i >> 11));
  std::vector<uint8_t> wire;  // all the ciphertext, as a socket would deliver it
  for (size_t sent = 0; sent < data.size();) {
    auto w = c->writePlain(std::span(data).subspan(sent));
    ASSERT_TRUE(w.ok()) << w.error().message;
    sent += *w;
    wire.insert(wire.end(), c->pendingEncrypted().begin(), c->pendingEncrypted().end());
    c->consumeEncrypted(c->pendingEncrypted().size());
  }

  // Everything read at once: all of it taken, nothing copied.
  auto s2 = server();
  auto c2 = client();
  ASSERT_TRUE(c2 && s2);
  ASSERT_EQ(handshake(*c2, *s2).server, HandshakeState::kDone);
  ASSERT_TRUE(c2->writePlain(bytesOf("in place")).ok());
  std::vector<uint8_t> small(c2->pendingEncrypted().begin(), c2->pendingEncrypted().end());
  s2->lendEncrypted(small);
  EXPECT_EQ(readAll(*s2), "in place");
  EXPECT_EQ(s2->reclaimEncrypted(), small.size());
  EXPECT_EQ(s2->bufferedEncryptedInput(), 0U);

  // Read 1 KiB of plaintext per loan of 100 KiB: the unread tail is buffered up to the bound
  // and the rest is offered again.
  std::vector<uint8_t> received;
  std::array<uint8_t, 1024> buf{};
  size_t offset = 0;
  bool bounded = false;
  while (received.size() < data.size()) {
    const auto chunk =
        std::span(wire).subspan(offset, std::min<size_t>(100 * 1024, wire.size() - offset));
    s->lendEncrypted(chunk);
    auto r = s->readPlain(buf);
    ASSERT_TRUE(r.ok()) << r.error().message;
    if (r->status == ReadStatus::kData) {
      received.insert(received.end(), buf.begin(), buf.begin() + r->bytes);
    }
    const size_t taken = s->reclaimEncrypted();
    EXPECT_LE(s->bufferedEncryptedInput(), TlsSession::kMaxBufferedEncryptedInput);
    bounded = bounded || taken < chunk.size();
    offset += taken;
  }
  EXPECT_TRUE(bounded);
  EXPECT_EQ(received, data);
}

// readPlain() skips OpenSSL when no ciphertext is waiting; plaintext of a record that did not
// fit the caller's buffer is still inside the SSL and must come out without new input.
TEST_F(TlsSessionTest, PlaintextLeftInsideTheSslComesOutWithoutNewInput) {
  auto c = client();
  auto s = server();
  ASSERT_TRUE(c && s);
  ASSERT_EQ(handshake(*c, *s).server, HandshakeState::kDone);
  std::string data(10000, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 26);
  ASSERT_TRUE(c->writePlain(bytesOf(data)).ok());  // one record
  transfer(*c, *s);

  std::string got;
  std::array<uint8_t, 100> small{};
  for (int i = 0; i < 200 && got.size() < data.size(); ++i) {
    auto r = s->readPlain(small);
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_EQ(r->status, ReadStatus::kData) << "after " << got.size() << " bytes";
    got.append(reinterpret_cast<const char*>(small.data()), r->bytes);
    EXPECT_EQ(s->bufferedEncryptedInput(), 0U);
  }
  EXPECT_EQ(got, data);
  auto r = s->readPlain(small);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, ReadStatus::kWouldBlock);
}

// A record cut in two: the first part gives would-block (not an error), the rest the data.
// An error some other code left on this thread's OpenSSL error queue must not turn that
// would-block into a failure.
TEST_F(TlsSessionTest, PartialRecordWaitsForTheRestDespiteAStaleQueuedError) {
  auto c = client();
  auto s = server();
  ASSERT_TRUE(c && s);
  ASSERT_EQ(handshake(*c, *s).server, HandshakeState::kDone);
  ASSERT_TRUE(c->writePlain(bytesOf("split record")).ok());
  const std::vector<uint8_t> wire(c->pendingEncrypted().begin(), c->pendingEncrypted().end());
  ASSERT_GT(wire.size(), 10U);

  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_PACKET);  // stale: not from this session
  EXPECT_EQ(s->feedEncrypted(std::span(wire).first(10)), 10U);
  ReadStatus last = ReadStatus::kData;
  EXPECT_EQ(readAll(*s, &last), "");
  EXPECT_EQ(last, ReadStatus::kWouldBlock);
  EXPECT_FALSE(s->failed()) << s->error().message;

  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_PACKET);
  EXPECT_EQ(s->feedEncrypted(std::span(wire).subspan(10)), wire.size() - 10);
  EXPECT_EQ(readAll(*s, &last), "split record");
  EXPECT_EQ(last, ReadStatus::kWouldBlock);
  EXPECT_FALSE(s->failed()) << s->error().message;
  ERR_clear_error();
}

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

TEST_F(TlsSessionTest, RotationLeavesLiveConnectionsAlone) {
  auto c1 = client();
  auto s1 = server();
  ASSERT_TRUE(c1 && s1);
  ASSERT_EQ(handshake(*c1, *s1).server, HandshakeState::kDone);

  // Rotate: new certificate, new context; the old context and certificate are released.
  const std::string old_serial = server_cert_->serialHex();
  server_cert_ = issue(*ca_, "server");
  server_ctx_ = serverContext(*server_cert_);
  ASSERT_TRUE(server_ctx_);

  ASSERT_TRUE(c1->writePlain(bytesOf("still here")).ok());
  transfer(*c1, *s1);
  EXPECT_EQ(readAll(*s1), "still here");

  auto c2 = client();
  auto s2 = server();
  ASSERT_TRUE(c2 && s2);
  ASSERT_EQ(handshake(*c2, *s2).client, HandshakeState::kDone);
  EXPECT_NE(server_cert_->serialHex(), old_serial);
  EXPECT_EQ(*c2->peerIdentity(), id("server"));
}

TEST_F(TlsSessionTest, ReadAndWriteBeforeHandshakeAreErrors) {
  auto c = client();
  ASSERT_NE(c, nullptr);
  std::array<uint8_t, 8> buf{};
  EXPECT_FALSE(c->readPlain(buf).ok());
  EXPECT_FALSE(c->writePlain(bytesOf("x")).ok());
  EXPECT_FALSE(c->shutdown().ok());
}

TEST(TlsContextFactoryTest, NeedsATrustRoot) {
  EXPECT_FALSE(TlsContextFactory::create(std::span<X509* const>()).ok());
  EXPECT_FALSE(TlsContextFactory::create(static_cast<X509*>(nullptr)).ok());
}

}  // namespace
}  // namespace nodemesh::tls
