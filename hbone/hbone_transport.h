#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/result.h"
#include "hbone/h2_session.h"
#include "hbone/tls/tls_session.h"

namespace nodemesh::hbone {

// One HBONE connection without I/O: TLS 1.3 (tls::TlsSession) carrying HTTP/2
// (hbone::H2Session). The owner feeds what it reads from the socket, writes what
// socketOutput() returns, and drives streams through h2(). HTTP/2 output is held until the TLS
// handshake is done (a client may open streams at once: they leave with the first flight
// after the handshake).
class HboneTransport {
 public:
  static Result<std::unique_ptr<HboneTransport>> create(std::unique_ptr<tls::TlsSession> tls,
                                                        hbone::H2Role role,
                                                        hbone::H2Handler& handler,
                                                        const hbone::H2Options& options = {});

  // Bytes read from the socket. Returns how many were taken (TLS input is bounded: feed the
  // rest again after the output was written). HTTP/2 callbacks run inside.
  Result<size_t> onSocketData(std::span<const uint8_t> bytes);
  // The peer closed its side of the socket.
  void onSocketEof();

  // Ciphertext to write to the socket (moves pending HTTP/2 output through TLS first). Valid
  // until the next call on this object.
  std::span<const uint8_t> socketOutput();
  void consumeSocketOutput(size_t n);
  // After a failure: the last ciphertext to send before closing (a TLS alert, or an HTTP/2
  // GOAWAY still queued in the codec, encrypted now if the TLS session itself is intact).
  std::span<const uint8_t> finalOutput();
  // What socketOutput() or finalOutput() returned, moved into `into` (emptied first) instead
  // of consumed: the buffers are swapped, not copied (tls::TlsSession::takeEncrypted).
  void takeSocketOutput(std::vector<uint8_t>& into) { tls_->takeEncrypted(into); }
  // Releases drained buffers larger than an idle connection needs (call it now and then).
  void trimBuffers() { tls_->trimBuffers(); }

  bool established() const { return tls_->established(); }
  bool failed() const { return failed_; }
  const Error& error() const { return error_; }
  hbone::H2Session& h2() { return *h2_; }
  const hbone::H2Session& h2() const { return *h2_; }
  const tls::TlsSession& tls() const { return *tls_; }

 private:
  HboneTransport(std::unique_ptr<tls::TlsSession> tls, std::unique_ptr<hbone::H2Session> h2)
      : tls_(std::move(tls)), h2_(std::move(h2)) {}
  // Handshake, then plaintext to HTTP/2, with the input fed so far.
  Status decrypt();
  Status readPlaintext();
  void pump();
  Status fail(Error error);

  std::unique_ptr<tls::TlsSession> tls_;
  std::unique_ptr<hbone::H2Session> h2_;
  bool failed_ = false;
  Error error_;
};

}  // namespace nodemesh::hbone
