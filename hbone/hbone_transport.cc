#include "hbone/hbone_transport.h"

#include <array>

namespace nodemesh::hbone {

Result<std::unique_ptr<HboneTransport>> HboneTransport::create(std::unique_ptr<tls::TlsSession> tls,
                                                               hbone::H2Role role,
                                                               hbone::H2Handler& handler,
                                                               const hbone::H2Options& options) {
  auto h2 = hbone::H2Session::create(role, handler, options);
  if (!h2) return h2.error();
  return std::unique_ptr<HboneTransport>(new HboneTransport(std::move(tls), std::move(*h2)));
}

Status HboneTransport::fail(Error error) {
  if (!failed_) {
    failed_ = true;
    error_ = std::move(error);
  }
  return error_;
}

Result<size_t> HboneTransport::onSocketData(std::span<const uint8_t> bytes) {
  if (failed_) return error_;
  // OpenSSL reads the ciphertext where the socket put it; only what it leaves unread (the input
  // bound reached) is copied, to be fed again.
  tls_->lendEncrypted(bytes);
  Status st = decrypt();
  const size_t taken = tls_->reclaimEncrypted();
  if (!st) return st.error();
  return taken;
}

Status HboneTransport::decrypt() {
  if (!tls_->established()) {
    auto state = tls_->handshake();
    if (state == tls::TlsSession::HandshakeState::kFailed) return fail(tls_->error());
    if (state == tls::TlsSession::HandshakeState::kWantMoreInput) return okStatus();
  }
  return readPlaintext();
}

Status HboneTransport::readPlaintext() {
  // Not value-initialized: zeroing 16 KiB for every received chunk cost as much as a copy of
  // it, and readPlain() only hands out what it wrote.
  std::array<uint8_t, 16 * 1024> plain;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  while (true) {
    auto r = tls_->readPlain(plain);
    if (!r) return fail(r.error());
    if (r->status == tls::TlsSession::ReadStatus::kWouldBlock) return okStatus();
    if (r->status == tls::TlsSession::ReadStatus::kEof) return okStatus();
    if (auto st = h2_->receive(std::span<const uint8_t>(plain.data(), r->bytes)); !st) {
      return fail(st.error());
    }
  }
}

void HboneTransport::onSocketEof() {
  tls_->feedEof();
}

void HboneTransport::pump() {
  if (failed_ || !tls_->established()) return;
  while (true) {
    auto out = h2_->pendingOutput();
    if (out.empty()) return;
    auto n = tls_->writePlain(out);
    if (!n) {
      (void)fail(n.error());
      return;
    }
    if (*n == 0) return;  // TLS output full: the socket must drain first
    h2_->consumeOutput(*n);
  }
}

std::span<const uint8_t> HboneTransport::socketOutput() {
  if (!failed_ && !tls_->established()) {
    // A client's first flight (ClientHello) comes from here; later calls are no-ops until
    // the peer answers.
    if (tls_->handshake() == tls::TlsSession::HandshakeState::kFailed) {
      (void)fail(tls_->error());
      return {};
    }
  }
  pump();
  return tls_->pendingEncrypted();
}

void HboneTransport::consumeSocketOutput(size_t n) {
  tls_->consumeEncrypted(n);
}

std::span<const uint8_t> HboneTransport::finalOutput() {
  while (tls_->established() && !tls_->failed()) {
    auto out = h2_->pendingOutput();
    if (out.empty()) break;
    auto n = tls_->writePlain(out);
    if (!n || *n == 0) break;
    h2_->consumeOutput(*n);
  }
  return tls_->pendingEncrypted();
}

}  // namespace nodemesh::hbone
