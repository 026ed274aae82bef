#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "hbone/tls/peer_check.h"
#include "identity/openssl_ptr.h"
#include "identity/spiffe_id.h"

namespace nodemesh::tls {

// A sans-I/O TLS connection: the owner (an io_uring loop) moves ciphertext between the socket
// and this object, and plaintext between this object and the application. No syscalls, no
// exceptions, no blocking. Not thread-safe (one connection belongs to one worker).
//
// Driving it: feed what the socket delivered with feedEncrypted(); call handshake() until
// kDone; then readPlain()/writePlain(). After EVERY call, send what pendingEncrypted() holds
// and consumeEncrypted() what the socket took: handshake flights, alerts, KeyUpdate replies
// and close_notify all appear there, including after a failure (the alert telling the peer).
//
// Memory: ciphertext waiting to be sent stays under kMaxPendingEncryptedOutput + 8 KiB
// (writePlain() accepts plaintext only up to the mark, plus TLS record overhead of 22 bytes per
// 16 KiB record, plus handshake/alert messages the protocol emits on its own). Ciphertext
// received but not yet decrypted stays at or under kMaxBufferedEncryptedInput: feedEncrypted()
// accepts only that much, and the owner stops reading the socket until readPlain() drains it.
// OpenSSL's own record buffers (~2 x 17 KiB) are kept for the session's life: releasing them
// while idle (SSL_MODE_RELEASE_BUFFERS) cost an allocation and a free per record, 0.3 us of a
// 3.8-4.1 us round trip (nm-hbone-micro --message 64), and a session is an HBONE connection that
// up to 100 application connections share.
class TlsSession {
 public:
  static constexpr size_t kMaxPendingEncryptedOutput = 64 * 1024;
  static constexpr size_t kMaxBufferedEncryptedInput = 64 * 1024;

  enum class HandshakeState { kDone, kWantMoreInput, kFailed };
  enum class ReadStatus { kData, kWouldBlock, kEof };
  struct ReadResult {
    ReadStatus status = ReadStatus::kWouldBlock;
    size_t bytes = 0;  // plaintext bytes stored, with kData
  };

  // Server side of a connection, from a TlsContextFactory::serverContext() (the SSL takes its
  // own reference on ctx).
  static Result<std::unique_ptr<TlsSession>> server(SSL_CTX* ctx);
  // Client side: the server must prove one of `expected_server_ids` (must not be empty). `sni`
  // is sent as server_name when not empty.
  static Result<std::unique_ptr<TlsSession>> client(
      SSL_CTX* ctx, std::vector<identity::SpiffeId> expected_server_ids, std::string_view sni = {});

  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;
  ~TlsSession();

  // ---- ciphertext side (the socket) ----
  // Buffers ciphertext read from the socket; returns how much was taken (less than offered when
  // kMaxBufferedEncryptedInput is reached: stop reading the socket and keep the rest). After
  // a failure, input is discarded and reported as taken.
  [[nodiscard]] size_t feedEncrypted(std::span<const uint8_t> bytes);
  // feedEncrypted() without the copy, for an owner that processes the input at once: between
  // lendEncrypted() and reclaimEncrypted(), OpenSSL reads `bytes` in place (after anything
  // buffered before); reclaimEncrypted() buffers what it left unread, within the same bound,
  // and returns how many bytes of `bytes` were taken, as feedEncrypted() would have. `bytes`
  // must stay valid until then; one loan at a time.
  void lendEncrypted(std::span<const uint8_t> bytes);
  [[nodiscard]] size_t reclaimEncrypted();
  // The socket reached EOF. Further reads fail unless the peer's close_notify came first
  // (a truncation attack is an error, not an EOF).
  void feedEof();
  size_t bufferedEncryptedInput() const { return in_.size() - in_offset_; }
  // Ciphertext to write to the socket: a view valid until the next call on this object.
  std::span<const uint8_t> pendingEncrypted() const {
    return {out_.data() + out_offset_, out_.size() - out_offset_};
  }
  // `n` bytes of pendingEncrypted() went out.
  void consumeEncrypted(size_t n);
  // Moves pendingEncrypted() into `into`, which must be empty, as consumeEncrypted() of all of
  // it would: the buffers are swapped, so an owner that keeps `into` for its next write
  // alternates two buffers and neither copies nor allocates. The buffer left here may be
  // large: trimBuffers() releases it once it is drained.
  void takeEncrypted(std::vector<uint8_t>& into);
  // Releases drained buffers larger than an idle connection needs.
  void trimBuffers();
  // A drained buffer larger than this is released (at once for input, by trimBuffers() for
  // output), so that an idle connection costs little. Owners of more buffers use it too.
  static constexpr size_t kRetainedBufferBytes = 16 * 1024;
  size_t encryptedBufferCapacity() const { return out_.capacity(); }
  // The memory both ciphertext buffers hold (their capacity).
  size_t bufferCapacity() const { return in_.capacity() + out_.capacity(); }

  // ---- handshake ----
  // Advances the handshake with the input fed so far. kDone also means: TLS 1.3, ALPN h2, peer
  // certificate verified with exactly one SPIFFE ID (an expected one, on the client side).
  // TLS 1.3 note: the client finishes before the server has checked the client's certificate;
  // a server-side refusal then reaches the client as an alert from readPlain().
  HandshakeState handshake();
  bool established() const { return state_ == State::kEstablished; }
  bool failed() const { return state_ == State::kFailed; }

  // ---- plaintext side (after kDone) ----
  // Encrypts up to data.size() bytes; returns how many were accepted: 0 when pending output is
  // at kMaxPendingEncryptedOutput (drain it first).
  Result<size_t> writePlain(std::span<const uint8_t> data);
  // Decrypts into `out` (non-empty) as much as is available. kWouldBlock: feed more input;
  // kEof: the peer sent close_notify (sticky). Errors (bad record, alert from the peer, EOF without
  // close_notify) are sticky too.
  Result<ReadResult> readPlain(std::span<uint8_t> out);
  // Queues close_notify. Writing afterwards is an error; reading continues until the peer's.
  Status shutdown();

  // ---- facts ----
  bool isServer() const { return server_; }
  // The peer's SPIFFE ID, once established.
  const std::optional<identity::SpiffeId>& peerIdentity() const { return peer_identity_; }
  // The serial number (hex) of the certificate the peer presented, once established: which of
  // its certificates it used (after a rotation, for instance).
  std::string peerCertificateSerial() const;
  // The negotiated ALPN protocol ("h2"), once established.
  const std::string& alpn() const { return alpn_; }
  // Why the session failed (valid when failed()): OpenSSL's reasons, our identity/ALPN checks,
  // and the certificate verification result when that failed.
  const Error& error() const { return error_; }

 private:
  enum class State { kHandshaking, kEstablished, kFailed };
  struct Construct {};

 public:
  // For make_unique only; use server()/client().
  TlsSession(Construct tag, identity::SslPtr ssl, bool server);

 private:
  static Result<std::unique_ptr<TlsSession>> make(SSL_CTX* ctx, bool server,
                                                  std::vector<identity::SpiffeId> expected);
  HandshakeState finishHandshake();
  // Records the failure of `what` from SSL_get_error() code `ssl_error` and the error queue.
  void fail(std::string_view what, int ssl_error);
  void failWith(std::string message);

  // Ciphertext OpenSSL has not read yet: buffered, then lent.
  size_t unreadEncryptedInput() const {
    return bufferedEncryptedInput() + (lent_.size() - lent_offset_);
  }
  // Custom BIO plumbing: OpenSSL reads `in_` and appends to `out_`.
  static int bioWrite(BIO* bio, const char* data, size_t len, size_t* written);
  static int bioRead(BIO* bio, char* data, size_t len, size_t* read);
  static long bioCtrl(BIO* bio, int cmd, long num, void* ptr);
  static const BIO_METHOD* bioMethod();

  identity::SslPtr ssl_;
  const bool server_;
  State state_ = State::kHandshaking;
  internal::PeerCheck peer_check_;
  std::vector<uint8_t> in_;
  size_t in_offset_ = 0;
  std::span<const uint8_t> lent_;  // lendEncrypted(): read after in_
  size_t lent_offset_ = 0;
  bool in_eof_ = false;
  std::vector<uint8_t> out_;
  size_t out_offset_ = 0;
  bool sent_close_notify_ = false;
  bool received_close_notify_ = false;
  std::optional<identity::SpiffeId> peer_identity_;
  std::string alpn_;
  Error error_;
};

}  // namespace nodemesh::tls
