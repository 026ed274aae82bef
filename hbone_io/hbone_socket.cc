#include "hbone_io/hbone_socket.h"

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/sockets.h"
#include "hbone/tls/tls_session.h"
#include "hbone/tls_provider.h"

namespace nodemesh::hbone_io {
HboneSocket::HboneSocket(HboneSocketOwner& owner, io::Ring& ring, io::Receivers& receivers,
                         hbone::H2Role role)
    : owner_(owner),
      ring_(ring),
      receivers_(receivers),
      role_(role),
      state_(role == hbone::H2Role::kClient ? State::kConnecting : State::kOpen) {}

void HboneSocket::attach(UniqueFd fd, std::unique_ptr<hbone::HboneTransport> transport,
                         const SocketAddress& peer, io::ReceiveBuffers& buffers,
                         std::string label) {
  fd_ = std::move(fd);
  peer_ = peer;
  label_ = std::move(label);
  transport_ = std::move(transport);
  rx_.fd = fd_.get();
  rx_.tag = &recv_tag_;
  rx_.buffers = &buffers;
}

void HboneSocket::onCompletion(uint8_t op, int res, unsigned flags) {
  switch (op) {
    case kConnect:
      return onConnect(res);
    case kRecv:
      return onRecv(res, flags);
    case kSend:
      return onSend(res);
    default:
      return;
  }
}

bool HboneSocket::usable() const {
  return (state_ == State::kConnecting || state_ == State::kOpen) &&
         transport_->h2().availableStreams() > 0;
}

bool HboneSocket::finished() const {
  return state_ == State::kDead && !rx_.armed && !send_in_flight_ && !connect_in_flight_;
}

void HboneSocket::releaseReceiver() {
  receivers_.release(rx_);
}

void HboneSocket::goingAway() {
  if (state_ == State::kOpen) state_ = State::kGoingAway;
}

// ---- I/O ----

void HboneSocket::connect() {
  socklen_t len = toSockaddr(peer_, &peer_addr_);
  ring_.connect(fd_.get(), peer_addr_, len, &connect_tag_);
  connect_in_flight_ = true;
}

void HboneSocket::receive() {
  if (state_ == State::kDead || state_ == State::kDraining) return;
  receivers_.arm(rx_);
}

void HboneSocket::onConnect(int res) {
  connect_in_flight_ = false;
  if (state_ == State::kConnecting) state_ = State::kOpen;
  if (state_ != State::kDead && res < 0) {
    fail("connect " + peer_.toString() + ": " + owner_.onConnectFailed(res));
  } else if (state_ != State::kDead) {
    owner_.onConnected();
    receive();
  }
  owner_.markDirty();  // the ClientHello, or the release
}

void HboneSocket::onRecv(int res, unsigned flags) {
  receivers_.onCompletion(rx_, res, flags);
  owner_.markDirty();
  if (state_ == State::kDead || state_ == State::kDraining) return;
  feed();
}

void HboneSocket::feed() {
  auto failing = [this] { return state_ == State::kDead || state_ == State::kDraining; };
  while (!failing() && !rx_.chunks.empty()) {
    const bool was_established = transport_->established();
    auto taken = transport_->onSocketData(rx_.front());
    if (!taken) {
      if (transport_->established() && !established_seen_) {
        // The handshake completed in this very input, and what followed it failed (a client's
        // Finished and a bad HTTP/2 preface in one read): a handshake all the same.
        established_seen_ = true;
        owner_.onEstablished();
      } else if (!was_established && !transport_->established()) {
        owner_.onHandshakeFailure();
      }
      spdlog::warn("{}: HBONE connection with {} failed: {}", label_, peer_.toString(),
                   taken.error().message);
      // What the peer should learn first (a TLS alert, an HTTP/2 GOAWAY) is queued: send it,
      // then close (RFC 9113 5.4.1).
      return drainAndFail(taken.error().message);
    }
    if (transport_->established() && !established_seen_) {
      established_seen_ = true;
      owner_.onEstablished();
    }
    if (*taken == 0) return;  // TLS input full: fed again after the next flush
    receivers_.consume(rx_, *taken);
  }
  if (failing() || !rx_.chunks.empty()) return;
  if (rx_.error) return fail(std::string("recv: ") + std::strerror(rx_.error));
  if (rx_.eof) {
    transport_->onSocketEof();
    // A peer that closes with streams still open leaves them broken: reset their other ends.
    fail(owner_.hasStreams() ? "peer closed the HBONE connection" : "");
  }
}

void HboneSocket::flush() {
  if (state_ == State::kDead || send_in_flight_ || connect_in_flight_ || !transport_) return;
  if (sendbuf_.empty()) {
    // HTTP/2 callbacks may run in here. A failed transport may still hold its last words (a
    // TLS alert, a GOAWAY) in the ciphertext buffer: those leave before the close.
    auto out = state_ == State::kDraining ? transport_->finalOutput() : transport_->socketOutput();
    if (transport_->failed() && state_ != State::kDraining) {
      drainAndFail(transport_->error().message);
      out = transport_->finalOutput();
    }
    if (out.empty()) {
      if (state_ == State::kDraining) finishDrain();
      return;
    }
    transport_->takeSocketOutput(sendbuf_);
    send_off_ = 0;
  }
  ring_.send(fd_.get(), std::span<const uint8_t>(sendbuf_).subspan(send_off_), &send_tag_);
  send_in_flight_ = true;
}

void HboneSocket::trimBuffers() {
  if (!send_in_flight_ && sendbuf_.empty() &&
      sendbuf_.capacity() > tls::TlsSession::kRetainedBufferBytes) {
    std::vector<uint8_t>().swap(sendbuf_);
  }
  if (transport_) transport_->trimBuffers();
}

size_t HboneSocket::bufferBytes() const {
  return sendbuf_.capacity() + (transport_ ? transport_->tls().bufferCapacity() : 0);
}

void HboneSocket::onSend(int res) {
  send_in_flight_ = false;
  owner_.markDirty();
  if (state_ == State::kDead) return;
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN) return;  // flushed again after the batch
    return fail(std::string("send: ") + std::strerror(-res));
  }
  send_off_ += static_cast<size_t>(res);
  if (send_off_ == sendbuf_.size()) sendbuf_.clear();
}

// ---- failure ----

void HboneSocket::drainAndFail(const std::string& why) {
  if (state_ == State::kDead || state_ == State::kDraining) return;
  state_ = State::kDraining;
  // Nothing more is read: a flooding peer meets TCP flow control, and unread input makes
  // finishDrain() linger rather than reset.
  receivers_.stop(rx_);
  drain_reason_ = why;
  drain_since_ = std::chrono::steady_clock::now();
  owner_.onDraining();
  // The streams cannot continue: their other ends are told now.
  owner_.loseStreams(why);
  owner_.markDirty();
}

void HboneSocket::finishDrain() {
  if (fin_sent_) return;  // lingering until the owner's drain deadline
  // Everything said: close with a FIN, not a reset, so the peer reads our last words. But
  // closing a socket with unread input makes the kernel send a reset, which discards what our
  // send buffer still holds (a flooding peer's last ACKs and the GOAWAY behind them): then
  // send the FIN alone and keep the socket, unread, until the drain deadline (a lingering
  // close, as HTTP servers do).
  int unread = 0;
  if (::ioctl(fd_.get(), FIONREAD, &unread) == 0 && unread > 0 &&
      ::shutdown(fd_.get(), SHUT_WR) == 0) {
    fin_sent_ = true;
    return;
  }
  fail(drain_reason_, /*reset=*/false);
}

void HboneSocket::fail(const std::string& why, bool reset) {
  if (state_ == State::kDead) return;
  state_ = State::kDead;
  rx_.closed = true;
  owner_.markDirty();
  owner_.onClosing(why);
  owner_.loseStreams(why.empty() ? "HBONE connection closed" : why);
  if (fd_.valid()) {
    if (reset && !why.empty()) resetOnClose(fd_.get());
    ring_.cancelFd(fd_.get());
  }
}

// ---- transports ----

Result<std::unique_ptr<hbone::HboneTransport>> clientTransport(hbone::TlsProvider& provider,
                                                               const identity::SpiffeId& self,
                                                               const identity::SpiffeId& peer,
                                                               hbone::H2Handler& handler,
                                                               const hbone::H2Options& options) {
  auto ctx = provider.clientContext(self);
  if (!ctx) {
    return Error{ctx.error().code,
                 "client certificate for " + self.toString() + ": " + ctx.error().message};
  }
  auto session = tls::TlsSession::client(*ctx, {peer});
  if (!session) return session.error();
  return hbone::HboneTransport::create(std::move(*session), hbone::H2Role::kClient, handler,
                                       options);
}

Result<std::unique_ptr<hbone::HboneTransport>> serverTransport(hbone::TlsProvider& provider,
                                                               const identity::SpiffeId& self,
                                                               hbone::H2Handler& handler,
                                                               const hbone::H2Options& options) {
  auto ctx = provider.serverContext(self);
  if (!ctx) return Error{ctx.error().code, "server certificate: " + ctx.error().message};
  auto session = tls::TlsSession::server(*ctx);
  if (!session) return session.error();
  return hbone::HboneTransport::create(std::move(*session), hbone::H2Role::kServer, handler,
                                       options);
}

}  // namespace nodemesh::hbone_io
