#include "hbone/tls/tls_session.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "hbone/tls/tls_context.h"
#include "identity/workload_certificate.h"

namespace nodemesh::tls {
namespace {

// TLS 1.3 records (RFC 8446 5.2): at most 16 KiB of plaintext, plus a 5-byte header, the
// 1-byte inner content type and the 16-byte AES-GCM tag.
constexpr size_t kMaxRecordPlaintext = 16 * 1024;
constexpr size_t kRecordOverhead = 5 + 1 + 16;

// Drops the consumed prefix of `buf` before appending more, once it is worth a memmove.
void compact(std::vector<uint8_t>& buf, size_t& offset) {
  if (offset == 0) return;
  if (offset == buf.size()) {
    buf.clear();
    offset = 0;
  } else if (offset >= buf.size() - offset) {
    buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(offset));
    offset = 0;
  }
}

void releaseIfDrained(std::vector<uint8_t>& buf, size_t& offset) {
  if (offset != buf.size()) return;
  offset = 0;
  if (buf.capacity() > TlsSession::kRetainedBufferBytes) {
    std::vector<uint8_t>().swap(buf);
  } else {
    buf.clear();
  }
}

// The error queue is per thread and shared by every connection of this worker: a stale entry
// would turn the next call's WANT_READ into a failure in SSL_get_error(). Peeking is much
// cheaper than ERR_clear_error(), which walks all of its slots, and the queue is nearly
// always empty (every failure drains it).
void clearStaleErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

}  // namespace

// ---- custom BIO ----
// A memory BIO pair would also work, but this one lets the socket side read ciphertext in
// place (pendingEncrypted() is a view of out_) and makes the memory bounds our own decision.

const BIO_METHOD* TlsSession::bioMethod() {
  static const BIO_METHOD* const kMethod = [] {
    BIO_METHOD* m =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "nodemesh tls session");
    if (m == nullptr || BIO_meth_set_write_ex(m, bioWrite) != 1 ||
        BIO_meth_set_read_ex(m, bioRead) != 1 || BIO_meth_set_ctrl(m, bioCtrl) != 1) {
      BIO_meth_free(m);
      return static_cast<BIO_METHOD*>(nullptr);
    }
    return m;  // lives for the process
  }();
  return kMethod;
}

int TlsSession::bioWrite(BIO* bio, const char* data, size_t len, size_t* written) {
  BIO_clear_retry_flags(bio);
  auto* self = static_cast<TlsSession*>(BIO_get_data(bio));
  if (self == nullptr) return 0;
  compact(self->out_, self->out_offset_);
  const auto* bytes = reinterpret_cast<const uint8_t*>(data);
  self->out_.insert(self->out_.end(), bytes, bytes + len);
  *written = len;
  return 1;
}

int TlsSession::bioRead(BIO* bio, char* data, size_t len, size_t* read) {
  BIO_clear_retry_flags(bio);
  auto* self = static_cast<TlsSession*>(BIO_get_data(bio));
  *read = 0;
  if (self == nullptr) return 0;
  const size_t available = self->in_.size() - self->in_offset_;
  if (available > 0) {
    const size_t n = std::min(len, available);
    std::memcpy(data, self->in_.data() + self->in_offset_, n);
    self->in_offset_ += n;
    releaseIfDrained(self->in_, self->in_offset_);
    *read = n;
    return 1;
  }
  const size_t lent = self->lent_.size() - self->lent_offset_;
  if (lent > 0) {
    const size_t n = std::min(len, lent);
    std::memcpy(data, self->lent_.data() + self->lent_offset_, n);
    self->lent_offset_ += n;
    *read = n;
    return 1;
  }
  if (!self->in_eof_) BIO_set_retry_read(bio);  // no retry flag = EOF
  return 0;
}

long TlsSession::bioCtrl(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
  const auto* self = static_cast<const TlsSession*>(BIO_get_data(bio));
  if (self == nullptr) return 0;
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return static_cast<long>(self->unreadEncryptedInput());
    case BIO_CTRL_WPENDING:
      return static_cast<long>(self->out_.size() - self->out_offset_);
    case BIO_CTRL_EOF:
      return self->in_eof_ && self->unreadEncryptedInput() == 0 ? 1 : 0;
    default:
      return 0;
  }
}

// ---- construction ----

TlsSession::TlsSession(Construct /*tag*/, identity::SslPtr ssl, bool server)
    : ssl_(std::move(ssl)), server_(server) {}

TlsSession::~TlsSession() {
  // Free the SSL (and its BIO) while the buffers it points into still exist: ssl_ is declared
  // first, so it would otherwise be destroyed last.
  ssl_.reset();
}

Result<std::unique_ptr<TlsSession>> TlsSession::make(SSL_CTX* ctx, bool server,
                                                     std::vector<identity::SpiffeId> expected) {
  if (ctx == nullptr) return Error::invalid("TLS session: no SSL_CTX");
  const BIO_METHOD* method = bioMethod();
  if (method == nullptr) return identity::opensslError("TLS session: creating the BIO method");
  ERR_clear_error();
  identity::SslPtr ssl(SSL_new(ctx));
  if (!ssl) return identity::opensslError("TLS session: SSL_new");
  BIO* bio = BIO_new(method);
  if (bio == nullptr) return identity::opensslError("TLS session: BIO_new");
  SSL_set_bio(ssl.get(), bio, bio);  // one reference, owned by the SSL from here

  auto session = std::make_unique<TlsSession>(Construct{}, std::move(ssl), server);
  SSL* s = session->ssl_.get();
  BIO_set_data(bio, session.get());
  BIO_set_init(bio, 1);
  session->peer_check_.expected_peers = std::move(expected);
  if (!internal::attachPeerCheck(s, &session->peer_check_)) {
    return identity::opensslError("TLS session: SSL_set_ex_data");
  }
  // Verification is enforced here too, not only by the context, so that a session can never
  // run without it whatever SSL_CTX it was given.
  SSL_set_verify(s, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                 internal::verifyPeerCallback);
  if (server) {
    SSL_set_accept_state(s);
  } else {
    SSL_set_connect_state(s);
  }
  return session;
}

Result<std::unique_ptr<TlsSession>> TlsSession::server(SSL_CTX* ctx) {
  return make(ctx, /*server=*/true, {});
}

Result<std::unique_ptr<TlsSession>> TlsSession::client(
    SSL_CTX* ctx, std::vector<identity::SpiffeId> expected_server_ids, std::string_view sni) {
  if (expected_server_ids.empty()) {
    return Error::invalid("TLS client session: no expected server identity");
  }
  auto session = make(ctx, /*server=*/false, std::move(expected_server_ids));
  if (!session) return session;
  if (!sni.empty()) {
    const std::string name(sni);
    if (SSL_set_tlsext_host_name((*session)->ssl_.get(), name.c_str()) != 1) {
      return identity::opensslError("TLS client session: setting SNI " + name);
    }
  }
  return session;
}

// ---- ciphertext side ----

size_t TlsSession::feedEncrypted(std::span<const uint8_t> bytes) {
  if (state_ == State::kFailed) return bytes.size();
  compact(in_, in_offset_);
  const size_t room =
      kMaxBufferedEncryptedInput - std::min(kMaxBufferedEncryptedInput, bufferedEncryptedInput());
  const size_t n = std::min(room, bytes.size());
  in_.insert(in_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  return n;
}

void TlsSession::lendEncrypted(std::span<const uint8_t> bytes) {
  lent_ = bytes;
  lent_offset_ = 0;
}

size_t TlsSession::reclaimEncrypted() {
  const std::span<const uint8_t> lent = lent_;
  const size_t read = lent_offset_;
  lent_ = {};
  lent_offset_ = 0;
  if (state_ == State::kFailed) return lent.size();  // discarded, as feedEncrypted() does
  return read + feedEncrypted(lent.subspan(read));
}

void TlsSession::feedEof() {
  in_eof_ = true;
}

void TlsSession::consumeEncrypted(size_t n) {
  out_offset_ += std::min(n, out_.size() - out_offset_);
  releaseIfDrained(out_, out_offset_);
}

void TlsSession::takeEncrypted(std::vector<uint8_t>& into) {
  into.clear();
  if (out_offset_ == 0) {
    into.swap(out_);  // out_ is now the caller's empty buffer, its capacity kept
    return;
  }
  into.assign(out_.begin() + static_cast<std::ptrdiff_t>(out_offset_), out_.end());
  out_offset_ = out_.size();
  releaseIfDrained(out_, out_offset_);
}

void TlsSession::trimBuffers() {
  if (out_offset_ == out_.size() && out_.capacity() > kRetainedBufferBytes) {
    std::vector<uint8_t>().swap(out_);
    out_offset_ = 0;
  }
}

// ---- handshake ----

TlsSession::HandshakeState TlsSession::handshake() {
  switch (state_) {
    case State::kEstablished:
      return HandshakeState::kDone;
    case State::kFailed:
      return HandshakeState::kFailed;
    case State::kHandshaking:
      break;
  }
  // The error queue is per thread and shared by every connection of this worker: clear it
  // before each call so that SSL_get_error() and our message see only this call's errors.
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) return finishHandshake();
  const int err = SSL_get_error(ssl_.get(), rc);
  if (err == SSL_ERROR_WANT_READ) return HandshakeState::kWantMoreInput;
  fail("TLS handshake", err);
  return HandshakeState::kFailed;
}

TlsSession::HandshakeState TlsSession::finishHandshake() {
  SSL* s = ssl_.get();
  // Belt and braces over the context settings: a session built from some other SSL_CTX must
  // not quietly run a weaker protocol.
  if (SSL_version(s) != TLS1_3_VERSION) {
    failWith(std::string("TLS handshake: negotiated ") + SSL_get_version(s) + ", want TLSv1.3");
    return HandshakeState::kFailed;
  }
  const unsigned char* proto = nullptr;
  unsigned int proto_len = 0;
  SSL_get0_alpn_selected(s, &proto, &proto_len);
  alpn_.assign(reinterpret_cast<const char*>(proto), proto_len);
  if (alpn_ != kAlpnH2) {
    failWith(std::string("TLS handshake: ") + (server_ ? "client" : "server") +
             " did not negotiate ALPN h2" + (alpn_.empty() ? "" : " (got " + alpn_ + ")"));
    return HandshakeState::kFailed;
  }
  X509* peer = SSL_get0_peer_certificate(s);
  if (peer == nullptr) {
    failWith("TLS handshake: peer presented no certificate");
    return HandshakeState::kFailed;
  }
  const long verify = SSL_get_verify_result(s);
  if (verify != X509_V_OK) {
    failWith(std::string("TLS handshake: peer certificate not verified: ") +
             X509_verify_cert_error_string(verify));
    return HandshakeState::kFailed;
  }
  auto id = identity::spiffeIdFromCertificate(peer);
  if (!id) {
    failWith("TLS handshake: peer certificate: " + id.error().message);
    return HandshakeState::kFailed;
  }
  if (!server_ && std::find(peer_check_.expected_peers.begin(), peer_check_.expected_peers.end(),
                            *id) == peer_check_.expected_peers.end()) {
    failWith("TLS handshake: server identity " + id->toString() + " is not the expected " +
             internal::describeIdentities(peer_check_.expected_peers));
    return HandshakeState::kFailed;
  }
  peer_identity_ = std::move(id).value();
  state_ = State::kEstablished;
  return HandshakeState::kDone;
}

// ---- plaintext side ----

Result<size_t> TlsSession::writePlain(std::span<const uint8_t> data) {
  if (state_ == State::kFailed) return error_;
  if (state_ != State::kEstablished) return Error{ENOTCONN, "TLS write before the handshake"};
  if (sent_close_notify_) return Error{EPIPE, "TLS write after shutdown"};
  const size_t pending = out_.size() - out_offset_;
  if (pending >= kMaxPendingEncryptedOutput || data.empty()) return size_t{0};
  const size_t n = std::min(data.size(), kMaxPendingEncryptedOutput - pending);
  // Room for every record of this write at once: the buffer is released when drained, and
  // growing it record by record re-copies what it holds at each doubling.
  compact(out_, out_offset_);
  out_.reserve(out_.size() + n + (n / kMaxRecordPlaintext + 1) * kRecordOverhead);
  clearStaleErrors();
  size_t written = 0;
  const int rc = SSL_write_ex(ssl_.get(), data.data(), n, &written);
  if (rc != 1) {
    // Our BIO never pushes back, so WANT_WRITE cannot happen; anything else is fatal.
    fail("TLS write", SSL_get_error(ssl_.get(), rc));
    return error_;
  }
  return written;
}

Result<TlsSession::ReadResult> TlsSession::readPlain(std::span<uint8_t> out) {
  if (state_ == State::kFailed) return error_;
  if (state_ != State::kEstablished) return Error{ENOTCONN, "TLS read before the handshake"};
  size_t total = 0;
  while (total < out.size() && !received_close_notify_) {
    // Without input OpenSSL could only answer WANT_READ, and a failing SSL_read costs as much
    // as a successful one (record layer, error queue): skip it unless plaintext or a record
    // is still buffered inside the SSL. At EOF it must run, to tell close_notify from a
    // truncation.
    if (!in_eof_ && unreadEncryptedInput() == 0 && SSL_has_pending(ssl_.get()) == 0) {
      break;
    }
    clearStaleErrors();
    size_t n = 0;
    const int rc = SSL_read_ex(ssl_.get(), out.data() + total, out.size() - total, &n);
    if (rc == 1) {
      total += n;
      continue;
    }
    const int err = SSL_get_error(ssl_.get(), rc);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      received_close_notify_ = true;
      break;
    }
    fail("TLS read", err);
    if (total > 0) break;  // hand out what was decrypted; the error comes with the next call
    return error_;
  }
  if (total > 0) return ReadResult{ReadStatus::kData, total};
  if (received_close_notify_) return ReadResult{ReadStatus::kEof, 0};
  return ReadResult{ReadStatus::kWouldBlock, 0};
}

std::string TlsSession::peerCertificateSerial() const {
  if (state_ != State::kEstablished) return {};
  return identity::certificateSerialHex(SSL_get0_peer_certificate(ssl_.get()));
}

Status TlsSession::shutdown() {
  if (state_ == State::kFailed) return error_;
  if (state_ != State::kEstablished) return Error{ENOTCONN, "TLS shutdown before the handshake"};
  if (sent_close_notify_) return okStatus();
  ERR_clear_error();
  const int rc = SSL_shutdown(ssl_.get());  // 0: sent ours; 1: had the peer's already
  if (rc < 0) {
    fail("TLS shutdown", SSL_get_error(ssl_.get(), rc));
    return error_;
  }
  sent_close_notify_ = true;
  return okStatus();
}

// ---- errors ----

void TlsSession::fail(std::string_view what, int ssl_error) {
  std::string message(what);
  message += " failed";
  if (!peer_check_.failure.empty()) message += ": " + peer_check_.failure;
  std::string reasons;
  if (identity::drainOpensslErrors(reasons)) {
    message += ": " + reasons;
  } else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_SSL) {
    message +=
        in_eof_ ? ": connection closed by the peer without close_notify" : ": protocol error";
  } else {
    message += ": SSL error " + std::to_string(ssl_error);
  }
  const long verify = SSL_get_verify_result(ssl_.get());
  if (verify != X509_V_OK) {
    message +=
        std::string(" (certificate verification: ") + X509_verify_cert_error_string(verify) + ")";
  }
  failWith(std::move(message));
}

void TlsSession::failWith(std::string message) {
  state_ = State::kFailed;
  error_ = Error{EPROTO, std::move(message)};
  // Nothing after a fatal error may touch the SSL (no SSL_shutdown); drop unread input.
  in_.clear();
  in_offset_ = 0;
}

}  // namespace nodemesh::tls
