// TlsSession: handshake, data both ways within bounds, lent input, rotation; TlsContextFactory.

#include <gtest/gtest.h>

#include "hbone/tls/tls_session.h"
#include "tests/unit/hbone/tls_session_test_util.h"

namespace nodemesh::tls::tls_session_test {
namespace {

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

// takeEncrypted() swaps buffers instead of copying: the taken bytes are the pending ones and
// the session's next output goes to the buffer it was given; after a partial consume the rest
// is copied. trimBuffers() releases a large drained buffer.
TEST_F(TlsSessionTest, TakenCiphertextSwapsBuffersAndDecryptsInOrder) {
  auto c = client();
  auto s = server();
  ASSERT_TRUE(c && s);
  ASSERT_EQ(handshake(*c, *s).server, HandshakeState::kDone);
  const std::string first(40 * 1024, 'a');
  const std::string second(40 * 1024, 'b');
  std::vector<uint8_t> wire;

  ASSERT_EQ(c->writePlain(bytesOf(first)).value(), first.size());
  const uint8_t* session_buffer = c->pendingEncrypted().data();
  const size_t pending = c->pendingEncrypted().size();
  std::vector<uint8_t> sendbuf;
  sendbuf.reserve(64 * 1024);
  const uint8_t* owner_buffer = sendbuf.data();
  c->takeEncrypted(sendbuf);
  EXPECT_EQ(sendbuf.size(), pending);
  EXPECT_EQ(sendbuf.data(), session_buffer) << "swapped, not copied";
  EXPECT_TRUE(c->pendingEncrypted().empty());
  wire = sendbuf;

  ASSERT_EQ(c->writePlain(bytesOf(second)).value(), second.size());
  EXPECT_EQ(c->pendingEncrypted().data(), owner_buffer) << "the owner's buffer, reused";
  // Partly consumed: the rest is copied out.
  wire.insert(wire.end(), c->pendingEncrypted().begin(), c->pendingEncrypted().begin() + 100);
  c->consumeEncrypted(100);
  const std::vector<uint8_t> rest(c->pendingEncrypted().begin(), c->pendingEncrypted().end());
  std::vector<uint8_t> taken;
  c->takeEncrypted(taken);
  EXPECT_EQ(taken, rest);
  EXPECT_TRUE(c->pendingEncrypted().empty());
  wire.insert(wire.end(), taken.begin(), taken.end());

  std::string received;
  for (size_t fed = 0; fed < wire.size();) {
    fed += s->feedEncrypted(std::span(wire).subspan(fed));  // 64 KiB at most at a time
    received += readAll(*s);
  }
  EXPECT_EQ(received, first + second);

  // A large buffer handed in stays until trimmed.
  std::vector<uint8_t> large;
  large.reserve(64 * 1024);
  c->takeEncrypted(large);
  EXPECT_GE(c->encryptedBufferCapacity(), 64u * 1024);
  c->trimBuffers();
  EXPECT_EQ(c->encryptedBufferCapacity(), 0u);
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

TEST_F(TlsSessionTest, RotationLeavesLiveConnectionsAlone) {
  auto c1 = client();
  auto s1 = server();
  ASSERT_TRUE(c1 && s1);
  ASSERT_EQ(handshake(*c1, *s1).server, HandshakeState::kDone);
  const std::string old_serial = server_cert_->serialHex();
  ASSERT_FALSE(old_serial.empty());
  EXPECT_EQ(c1->peerCertificateSerial(), old_serial);

  // Rotate: new certificate, new context; the old context and certificate are released.
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
  // The new connection got the new certificate; the live one still holds the old.
  EXPECT_NE(server_cert_->serialHex(), old_serial);
  EXPECT_EQ(c2->peerCertificateSerial(), server_cert_->serialHex());
  EXPECT_EQ(c1->peerCertificateSerial(), old_serial);
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
}  // namespace nodemesh::tls::tls_session_test
