#include "waypoint/proxy/hbone_conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/sockets.h"

namespace nodemesh::waypoint {

HboneConn::HboneConn(HboneConns& conns, hbone::H2Role role)
    : conns_(conns), socket_(*this, conns.ring_, conns.receivers_, role) {}

const std::optional<identity::SpiffeId>& HboneConn::peerIdentity() const {
  return socket_.transport().tls().peerIdentity();
}

void HboneConn::markDirty() {
  conns_.markDirty(this);
}

StreamOwner* HboneConn::ownerOf(hbone::StreamId stream) const {
  auto it = streams_.find(stream);
  return it == streams_.end() ? nullptr : it->second.owner;
}

void HboneConn::forget(std::map<hbone::StreamId, Attached>::iterator it) {
  const hbone::StreamId stream = it->first;
  const uint64_t unconsumed = it->second.unconsumed;
  streams_.erase(it);
  if (streams_.empty()) since_ = Clock::now();
  // Whatever the owner still holds is no longer bounded by this connection's window: the
  // stream is over for it. (H2Session keeps a closed stream's count until it is given back.)
  if (unconsumed > 0) (void)socket_.h2().consumed(stream, unconsumed);
  markDirty();
}

// ---- streams ----

Result<hbone::StreamId> HboneConn::openConnect(const std::string& authority,
                                               const hbone::ConnectHeaders& headers,
                                               StreamOwner* owner) {
  auto stream = socket_.h2().openConnect(authority, headers);
  if (!stream) return stream.error();
  streams_[*stream] = Attached{owner, 0};
  markDirty();
  return stream;
}

void HboneConn::attach(hbone::StreamId stream, StreamOwner* owner) {
  // A new owner takes over what the previous one (the proxy's sniffer) left unacknowledged.
  streams_[stream].owner = owner;
}

void HboneConn::detach(hbone::StreamId stream, bool reset) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  if (reset) (void)socket_.h2().resetStream(stream, hbone::kH2Cancel);
  forget(it);
}

Result<size_t> HboneConn::send(hbone::StreamId stream, std::span<const uint8_t> data) {
  markDirty();
  return socket_.h2().send(stream, data);
}

Status HboneConn::endStream(hbone::StreamId stream) {
  markDirty();
  return socket_.h2().endStream(stream);
}

Status HboneConn::consumed(hbone::StreamId stream, size_t n) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return okStatus();  // given back when it closed or was detached
  if (n > it->second.unconsumed) {
    return Error::invalid("stream " + std::to_string(stream) +
                          ": consumed() more than was delivered");
  }
  it->second.unconsumed -= n;
  markDirty();
  return socket_.h2().consumed(stream, n);
}

Status HboneConn::respond(hbone::StreamId stream, int status) {
  markDirty();
  return socket_.h2().respond(stream, status);
}

Status HboneConn::reset(hbone::StreamId stream, uint32_t error_code) {
  markDirty();
  return socket_.h2().resetStream(stream, error_code);
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
  auto it = streams_.find(stream);
  if (it == streams_.end() || !it->second.owner) {
    (void)socket_.h2().consumed(stream, data.size());  // keep the connection window open
    markDirty();
    return;
  }
  it->second.unconsumed += data.size();
  it->second.owner->onStreamData(data);  // may detach (and so give these bytes back)
}

void HboneConn::onEndStream(hbone::StreamId stream) {
  if (StreamOwner* o = ownerOf(stream)) o->onStreamEnd();
}

void HboneConn::onWritable(hbone::StreamId stream) {
  if (StreamOwner* o = ownerOf(stream)) o->onStreamWritable();
}

void HboneConn::onStreamClosed(hbone::StreamId stream, uint32_t error_code) {
  auto it = streams_.find(stream);
  StreamOwner* o = it == streams_.end() ? nullptr : it->second.owner;
  if (it != streams_.end()) forget(it);
  markDirty();
  if (o) {
    o->onStreamClosed(error_code,
                      error_code == hbone::kH2NoError
                          ? ""
                          : "stream reset: " + std::string(hbone::h2ErrorName(error_code)));
  }
}

void HboneConn::onGoaway(hbone::StreamId /*last_stream*/, uint32_t /*error_code*/) {
  socket_.goingAway();
  conns_.removeFromPool(this);
}

// ---- socket events ----

void HboneConn::onConnected() {
  ++conns_.stats_.connected;
}

std::string HboneConn::onConnectFailed(int res) {
  return res == -ECANCELED ? "timed out" : std::string(std::strerror(-res));
}

void HboneConn::onHandshakeFailure() {
  ++conns_.stats_.handshake_failures;
}

void HboneConn::onDraining() {
  since_ = Clock::now();
  conns_.removeFromPool(this);
}

void HboneConn::onClosing(const std::string& why) {
  if (!why.empty()) ++conns_.stats_.failures;
  conns_.removeFromPool(this);
}

void HboneConn::loseStreams(const std::string& why) {
  std::vector<StreamOwner*> open;
  // The connection is dead: there is no window left to give back.
  for (auto& [stream, attached] : streams_) open.push_back(attached.owner);
  streams_.clear();
  for (StreamOwner* o : open) o->onStreamClosed(hbone::kH2ConnectError, why);
}

// ---- HboneConns ----

HboneConn* HboneConns::add(std::unique_ptr<HboneConn> conn) {
  HboneConn* c = conn.get();
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
  auto conn = std::make_unique<HboneConn>(*this, hbone::H2Role::kServer);
  auto transport = hbone_io::serverTransport(tls_, self_, *conn);
  if (!transport) return refuse(transport.error().message);
  auto peer = peerAddress(fd.get());
  if (!peer) return refuse(peer.error().message);
  conn->socket_.attach(std::move(fd), std::move(*transport), *peer, buffers_, "waypoint");
  add(std::move(conn))->socket_.receive();
}

HboneConn* HboneConns::clientFor(const identity::SpiffeId& peer_id, const SocketAddress& addr,
                                 std::string* error) {
  std::string key = peer_id.toString() + "|" + addr.toString();
  auto range = pool_.equal_range(key);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second->socket_.usable()) return it->second;
  }
  auto conn = std::make_unique<HboneConn>(*this, hbone::H2Role::kClient);
  auto transport = hbone_io::clientTransport(tls_, self_, peer_id, *conn);
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
  conn->socket_.attach(std::move(fd), std::move(*transport), addr, buffers_, "waypoint");
  conn->pool_key_ = key;
  HboneConn* c = add(std::move(conn));
  pool_.emplace(key, c);
  ++stats_.pooled;
  c->socket_.connect();
  return c;
}

HboneConnStats HboneConns::stats() const {
  HboneConnStats s = stats_;
  for (const auto& c : conns_) {
    if (c->state() == HboneConn::State::kDead) continue;
    s.unconsumed_bytes += c->socket_.h2().unconsumedBytes();
    ++s.open;
    s.buffer_bytes += c->socket_.bufferBytes();
  }
  return s;
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
      if (c->socket_.hasInput()) c->socket_.feed();
      c->socket_.flush();
    }
    for (HboneConn* c : flushing_) {
      if (c->releasable() && !c->dirty_) release(c);
    }
  }
}

void HboneConns::release(HboneConn* c) {
  c->socket_.releaseReceiver();
  if (c->socket_.role() == hbone::H2Role::kClient) --stats_.pooled;
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
    if (c->state() == State::kDead) continue;
    c->socket_.trimBuffers();
    if (!c->socket_.transport().established() && now - c->since_ >= options_.handshake_timeout) {
      ++stats_.handshake_failures;
      expired.push_back(c.get());
    } else if (c->state() == State::kDraining && now - c->since_ >= std::chrono::seconds(5)) {
      expired.push_back(c.get());
    } else if (c->socket_.role() == hbone::H2Role::kClient && c->streams_.empty() &&
               now - c->since_ >= options_.idle_timeout) {
      idle.push_back(c.get());
    }
  }
  for (HboneConn* c : expired) c->socket_.fail("timed out");
  for (HboneConn* c : idle) {
    (void)c->socket_.h2().goaway();
    c->socket_.fail("");
  }
}

void HboneConns::failAll(const std::string& why) {
  std::vector<HboneConn*> all;
  for (auto& c : conns_) all.push_back(c.get());
  for (HboneConn* c : all) c->socket_.fail(why);
}

}  // namespace nodemesh::waypoint
