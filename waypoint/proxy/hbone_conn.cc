#include "waypoint/proxy/hbone_conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/sockets.h"
#include "hbone/tls/tls_session.h"

namespace nodemesh::waypoint {

namespace {

// Ends a socket with a reset instead of a FIN when it is closed (SO_LINGER 0): a peer whose
// streams broke must not take the close for a clean end.
void resetOnClose(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

}  // namespace

HboneConn::HboneConn(HboneConns& conns, hbone::H2Role role)
    : conns_(conns),
      role_(role),
      state_(role == hbone::H2Role::kClient ? State::kConnecting : State::kOpen) {}

const std::optional<identity::SpiffeId>& HboneConn::peerIdentity() const {
  return transport_->tls().peerIdentity();
}

void HboneConn::onCompletion(uint8_t op, int res, unsigned flags) {
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

void HboneConn::markDirty() {
  conns_.markDirty(this);
}

bool HboneConn::usable() const {
  return (state_ == State::kConnecting || state_ == State::kOpen) &&
         transport_->h2().availableStreams() > 0;
}

bool HboneConn::releasable() const {
  return state_ == State::kDead && !rx_.armed && !send_in_flight_ && !connect_in_flight_ && !dirty_;
}

StreamOwner* HboneConn::ownerOf(hbone::StreamId stream) const {
  auto it = streams_.find(stream);
  return it == streams_.end() ? nullptr : it->second;
}

// ---- streams ----

Result<hbone::StreamId> HboneConn::openConnect(const std::string& authority,
                                               const hbone::ConnectHeaders& headers,
                                               StreamOwner* owner) {
  auto stream = transport_->h2().openConnect(authority, headers);
  if (!stream) return stream.error();
  streams_[*stream] = owner;
  markDirty();
  return stream;
}

void HboneConn::attach(hbone::StreamId stream, StreamOwner* owner) {
  streams_[stream] = owner;
}

void HboneConn::detach(hbone::StreamId stream, bool reset) {
  if (streams_.erase(stream) == 0) return;
  if (reset) (void)transport_->h2().resetStream(stream, hbone::kH2Cancel);
  if (streams_.empty()) since_ = Clock::now();
  markDirty();
}

Result<size_t> HboneConn::send(hbone::StreamId stream, std::span<const uint8_t> data) {
  markDirty();
  return transport_->h2().send(stream, data);
}

Status HboneConn::endStream(hbone::StreamId stream) {
  markDirty();
  return transport_->h2().endStream(stream);
}

Status HboneConn::consumed(hbone::StreamId stream, size_t n) {
  markDirty();
  return transport_->h2().consumed(stream, n);
}

Status HboneConn::respond(hbone::StreamId stream, int status) {
  markDirty();
  return transport_->h2().respond(stream, status);
}

Status HboneConn::reset(hbone::StreamId stream, uint32_t error_code) {
  markDirty();
  return transport_->h2().resetStream(stream, error_code);
}

// ---- HTTP/2 events ----

void HboneConn::onRequest(hbone::StreamId stream, const hbone::ConnectRequest& request) {
  conns_.acceptor_.onConnectRequest(*this, stream, request);
  markDirty();
}

void HboneConn::onResponse(hbone::StreamId stream, int status) {
  if (StreamOwner* o = ownerOf(stream)) o->onConnectResponse(status);
  markDirty();
}

void HboneConn::onData(hbone::StreamId stream, std::span<const uint8_t> data) {
  StreamOwner* o = ownerOf(stream);
  if (!o) {
    (void)transport_->h2().consumed(stream, data.size());  // keep the connection window open
    return;
  }
  o->onStreamData(data);
}

void HboneConn::onEndStream(hbone::StreamId stream) {
  if (StreamOwner* o = ownerOf(stream)) o->onStreamEnd();
}

void HboneConn::onWritable(hbone::StreamId stream) {
  if (StreamOwner* o = ownerOf(stream)) o->onStreamWritable();
}

void HboneConn::onStreamClosed(hbone::StreamId stream, uint32_t error_code) {
  StreamOwner* o = ownerOf(stream);
  streams_.erase(stream);
  if (streams_.empty()) since_ = Clock::now();
  markDirty();
  if (o) {
    o->onStreamClosed(error_code,
                      error_code == hbone::kH2NoError
                          ? ""
                          : "stream reset: " + std::string(hbone::h2ErrorName(error_code)));
  }
}

void HboneConn::onGoaway(hbone::StreamId /*last_stream*/, uint32_t /*error_code*/) {
  if (state_ == State::kOpen) state_ = State::kGoingAway;
  conns_.removeFromPool(this);
}

// ---- I/O ----

void HboneConn::receive() {
  if (state_ == State::kDead || state_ == State::kDraining) return;
  conns_.receivers_.arm(rx_);
}

void HboneConn::onConnect(int res) {
  connect_in_flight_ = false;
  if (state_ == State::kConnecting) state_ = State::kOpen;
  if (state_ != State::kDead && res < 0) {
    fail("connect " + peer_.toString() + ": " +
         (res == -ECANCELED ? "timed out" : std::string(std::strerror(-res))));
  } else if (state_ != State::kDead) {
    ++conns_.stats_.connected;
    receive();
  }
  markDirty();
}

void HboneConn::onRecv(int res, unsigned flags) {
  conns_.receivers_.onCompletion(rx_, res, flags);
  markDirty();
  if (state_ == State::kDead || state_ == State::kDraining) return;
  feed();
}

void HboneConn::feed() {
  auto failing = [this] { return state_ == State::kDead || state_ == State::kDraining; };
  while (!failing() && !rx_.chunks.empty()) {
    const bool was_established = transport_->established();
    auto taken = transport_->onSocketData(rx_.front());
    if (!taken) {
      if (!was_established && !transport_->established()) ++conns_.stats_.handshake_failures;
      spdlog::warn("waypoint: HBONE connection with {} failed: {}", peer_.toString(),
                   taken.error().message);
      return drainAndFail(taken.error().message);
    }
    if (*taken == 0) return;  // TLS input full: fed again after the next flush
    conns_.receivers_.consume(rx_, *taken);
  }
  if (failing() || !rx_.chunks.empty()) return;
  if (rx_.error) return fail(std::string("recv: ") + std::strerror(rx_.error));
  if (rx_.eof) {
    transport_->onSocketEof();
    fail(streams_.empty() ? "" : "peer closed the HBONE connection");
  }
}

void HboneConn::flush() {
  if (state_ == State::kDead || send_in_flight_ || connect_in_flight_ || !transport_) return;
  if (sendbuf_.empty()) {
    auto out = state_ == State::kDraining ? transport_->finalOutput() : transport_->socketOutput();
    if (transport_->failed() && state_ != State::kDraining) {
      drainAndFail(transport_->error().message);
      out = transport_->finalOutput();
    }
    if (out.empty()) {
      if (state_ == State::kDraining) fail(drain_reason_, /*reset=*/false);
      return;
    }
    sendbuf_.assign(out.begin(), out.end());
    send_off_ = 0;
    transport_->consumeSocketOutput(out.size());
  }
  conns_.ring_.send(fd_.get(), std::span<const uint8_t>(sendbuf_).subspan(send_off_), &send_tag_);
  send_in_flight_ = true;
}

void HboneConn::onSend(int res) {
  send_in_flight_ = false;
  markDirty();
  if (state_ == State::kDead) return;
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN) return;
    return fail(std::string("send: ") + std::strerror(-res));
  }
  send_off_ += static_cast<size_t>(res);
  if (send_off_ == sendbuf_.size()) sendbuf_.clear();
}

// ---- failure ----

void HboneConn::loseStreams(const std::string& why) {
  std::vector<StreamOwner*> open;
  for (auto& [stream, owner] : streams_) open.push_back(owner);
  streams_.clear();
  for (StreamOwner* o : open) o->onStreamClosed(hbone::kH2ConnectError, why);
}

void HboneConn::drainAndFail(const std::string& why) {
  if (state_ == State::kDead || state_ == State::kDraining) return;
  state_ = State::kDraining;
  rx_.closed = true;
  drain_reason_ = why;
  since_ = Clock::now();
  conns_.removeFromPool(this);
  loseStreams(why);
  markDirty();
}

void HboneConn::fail(const std::string& why, bool reset) {
  if (state_ == State::kDead) return;
  if (!why.empty()) ++conns_.stats_.failures;
  state_ = State::kDead;
  rx_.closed = true;
  markDirty();
  conns_.removeFromPool(this);
  loseStreams(why.empty() ? "HBONE connection closed" : why);
  if (fd_.valid()) {
    if (reset && !why.empty()) resetOnClose(fd_.get());
    conns_.ring_.cancelFd(fd_.get());
  }
}

// ---- HboneConns ----

HboneConn* HboneConns::add(std::unique_ptr<HboneConn> conn) {
  HboneConn* c = conn.get();
  c->rx_.fd = c->fd_.get();
  c->rx_.tag = &c->recv_tag_;
  c->rx_.buffers = &buffers_;
  c->since_ = Clock::now();
  conns_.push_back(std::move(conn));
  c->self_ = std::prev(conns_.end());
  return c;
}

void HboneConns::acceptServer(UniqueFd fd) {
  ++stats_.accepted;
  auto refuse = [&](const std::string& why) {
    spdlog::warn("waypoint: HBONE connection refused: {}", why);
    resetOnClose(fd.get());
  };
  auto ctx = tls_.serverContext(self_);
  if (!ctx) return refuse("server certificate: " + ctx.error().message);
  auto session = tls::TlsSession::server(*ctx);
  if (!session) return refuse(session.error().message);
  auto conn = std::make_unique<HboneConn>(*this, hbone::H2Role::kServer);
  auto transport =
      hbone::HboneTransport::create(std::move(*session), hbone::H2Role::kServer, *conn);
  if (!transport) return refuse(transport.error().message);
  auto peer = peerAddress(fd.get());
  if (!peer) return refuse(peer.error().message);
  conn->transport_ = std::move(*transport);
  conn->fd_ = std::move(fd);
  conn->peer_ = *peer;
  add(std::move(conn))->receive();
}

HboneConn* HboneConns::clientFor(const identity::SpiffeId& peer_id, const SocketAddress& addr,
                                 std::string* error) {
  std::string key = peer_id.toString() + "|" + addr.toString();
  auto range = pool_.equal_range(key);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second->usable()) return it->second;
  }
  auto ctx = tls_.clientContext(self_);
  if (!ctx) {
    *error = "client certificate for " + self_.toString() + ": " + ctx.error().message;
    return nullptr;
  }
  auto session = tls::TlsSession::client(*ctx, {peer_id});
  if (!session) {
    *error = session.error().message;
    return nullptr;
  }
  auto conn = std::make_unique<HboneConn>(*this, hbone::H2Role::kClient);
  auto transport =
      hbone::HboneTransport::create(std::move(*session), hbone::H2Role::kClient, *conn);
  if (!transport) {
    *error = transport.error().message;
    return nullptr;
  }
  UniqueFd fd(::socket(addr.ip.isV4() ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    *error = std::string("socket: ") + std::strerror(errno);
    return nullptr;
  }
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  conn->transport_ = std::move(*transport);
  conn->fd_ = std::move(fd);
  conn->peer_ = addr;
  conn->pool_key_ = key;
  HboneConn* c = add(std::move(conn));
  pool_.emplace(key, c);
  ++stats_.pooled;
  socklen_t len = toSockaddr(addr, &c->peer_addr_);
  ring_.connect(c->fd_.get(), c->peer_addr_, len, &c->connect_tag_);
  c->connect_in_flight_ = true;
  return c;
}

void HboneConns::markDirty(HboneConn* c) {
  if (c->dirty_) return;
  c->dirty_ = true;
  dirty_.push_back(c);
}

void HboneConns::flush() {
  while (!dirty_.empty()) {
    flushing_.clear();
    flushing_.swap(dirty_);
    for (HboneConn* c : flushing_) c->dirty_ = false;
    for (HboneConn* c : flushing_) {
      if (!c->rx_.chunks.empty()) c->feed();
      c->flush();
    }
    for (HboneConn* c : flushing_) {
      if (c->releasable() && !c->dirty_) release(c);
    }
  }
}

void HboneConns::release(HboneConn* c) {
  receivers_.release(c->rx_);
  if (c->role_ == hbone::H2Role::kClient) --stats_.pooled;
  conns_.erase(c->self_);
}

void HboneConns::removeFromPool(HboneConn* c) {
  auto range = pool_.equal_range(c->pool_key_);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second == c) {
      pool_.erase(it);
      return;
    }
  }
}

void HboneConns::onTimer() {
  using State = HboneConn::State;
  const auto now = Clock::now();
  std::vector<HboneConn*> expired;
  std::vector<HboneConn*> idle;
  for (auto& c : conns_) {
    if (c->state_ == State::kDead) continue;
    if (!c->transport_->established() && now - c->since_ >= options_.handshake_timeout) {
      ++stats_.handshake_failures;
      expired.push_back(c.get());
    } else if (c->state_ == State::kDraining && now - c->since_ >= std::chrono::seconds(5)) {
      expired.push_back(c.get());
    } else if (c->role_ == hbone::H2Role::kClient && c->streams_.empty() &&
               now - c->since_ >= options_.idle_timeout) {
      idle.push_back(c.get());
    }
  }
  for (HboneConn* c : expired) c->fail("timed out");
  for (HboneConn* c : idle) {
    (void)c->transport_->h2().goaway();
    c->fail("");
  }
}

void HboneConns::failAll(const std::string& why) {
  std::vector<HboneConn*> all;
  for (auto& c : conns_) all.push_back(c.get());
  for (HboneConn* c : all) c->fail(why);
}

}  // namespace nodemesh::waypoint
