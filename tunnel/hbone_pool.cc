#include "tunnel/hbone_pool.h"

#include <spdlog/spdlog.h>

#include "hbone/tls/tls_session.h"
#include "hbone/tls_provider.h"
#include "tunnel/inpod_sockets.h"
#include "tunnel/pod_listeners.h"

namespace nodemesh::tunnel {

HboneConnection* HbonePool::add(std::unique_ptr<HboneConnection> conn) {
  HboneConnection* c = conn.get();
  c->rx_.fd = c->fd_.get();
  c->rx_.tag = &c->recv_tag_;
  c->rx_.buffers = &buffers_;
  c->idle_since_ = c->last_ping_ = Clock::now();
  conns_.push_back(std::move(conn));
  c->self_ = std::prev(conns_.end());
  return c;
}

HboneConnection* HbonePool::clientFor(const Pod& pod, const identity::SpiffeId& dst_id,
                                      const SocketAddress& dst, std::string* error) {
  // ztunnel's pool key: source identity, destination identity, destination address, source
  // (here the pod, which fixes the source address).
  std::string key = pod.identity->toString() + "|" + dst_id.toString() + "|" + dst.toString() +
                    "|" + std::to_string(pod.cookie);
  auto range = pool_.equal_range(key);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second->usable()) return it->second;
  }
  auto ctx = tls_.clientContext(*pod.identity);
  if (!ctx) {
    *error = "client certificate for " + pod.identity->toString() + ": " + ctx.error().message;
    return nullptr;
  }
  auto session = tls::TlsSession::client(*ctx, {dst_id});
  if (!session) {
    *error = session.error().message;
    return nullptr;
  }
  auto conn = std::make_unique<HboneConnection>(*this, hbone::H2Role::kClient);
  auto transport =
      hbone::HboneTransport::create(std::move(*session), hbone::H2Role::kClient, *conn);
  if (!transport) {
    *error = transport.error().message;
    return nullptr;
  }
  auto fd = socketInNetns(pod.netns.get(), !dst.ip.isV4(), options_.outbound_mark);
  if (!fd) {
    *error = fd.error().message;
    return nullptr;
  }
  conn->transport_ = std::move(*transport);
  conn->fd_ = std::move(*fd);
  conn->peer_ = dst;
  conn->pod_ = pod.name;
  conn->pool_key_ = key;
  HboneConnection* c = add(std::move(conn));
  pool_.emplace(key, c);
  bump(ctx_.counters.hbone_pool_size);

  socklen_t len = toSockaddr(dst, &c->peer_addr_);
  ctx_.ring.connect(c->fd_.get(), c->peer_addr_, len, &c->connect_tag_);
  c->connect_in_flight_ = true;
  return c;
}

void HbonePool::acceptServer(Pod& pod, UniqueFd fd) {
  bump(ctx_.counters.accepted_hbone);
  auto refuse = [&](const std::string& why) {
    spdlog::warn("{}: HBONE connection refused: {}", pod.name, why);
    resetOnClose(fd.get());
  };
  auto ctx = tls_.serverContext(*pod.identity);
  if (!ctx) return refuse("server certificate: " + ctx.error().message);
  auto session = tls::TlsSession::server(*ctx);
  if (!session) return refuse(session.error().message);
  auto conn = std::make_unique<HboneConnection>(*this, hbone::H2Role::kServer);
  auto transport =
      hbone::HboneTransport::create(std::move(*session), hbone::H2Role::kServer, *conn);
  if (!transport) return refuse(transport.error().message);
  auto peer = peerAddress(fd.get());
  if (!peer) return refuse(peer.error().message);
  conn->transport_ = std::move(*transport);
  conn->fd_ = std::move(fd);
  conn->peer_ = *peer;
  conn->pod_ = pod.name;
  conn->server_pod_ = &pod;
  add(std::move(conn))->receive();
}

void HbonePool::markDirty(HboneConnection* c) {
  if (c->dirty_) return;
  c->dirty_ = true;
  dirty_.push_back(c);
}

void HbonePool::flushDirty() {
  while (!dirty_.empty()) {
    // The two vectors trade places each round and keep their capacity: no allocation per
    // completion batch.
    flushing_.clear();
    flushing_.swap(dirty_);
    for (HboneConnection* c : flushing_) c->dirty_ = false;
    for (HboneConnection* c : flushing_) {
      if (!c->rx_.chunks.empty()) c->feed();  // input TLS could not take before
      c->flush();
    }
    for (HboneConnection* c : flushing_) {
      if (c->releasable()) release(c);
    }
  }
}

void HbonePool::release(HboneConnection* c) {
  ctx_.receivers.release(c->rx_);
  if (c->role_ == hbone::H2Role::kClient) subtract(ctx_.counters.hbone_pool_size);
  conns_.erase(c->self_);  // closes the socket
}

void HbonePool::removeFromPool(HboneConnection* c) {
  auto range = pool_.equal_range(c->pool_key_);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second == c) {
      pool_.erase(it);
      return;
    }
  }
}

void HbonePool::onTimer() {
  using State = HboneConnection::State;
  const auto now = Clock::now();
  std::vector<HboneConnection*> stalled;
  for (auto& c : conns_) {
    if (c->state_ != State::kDead && !c->transport_->established() &&
        now - c->idle_since_ >= options_.handshake_timeout) {
      stalled.push_back(c.get());
    }
  }
  for (auto& c : conns_) {
    // A peer that does not read our last words must not keep the connection either.
    if (c->state_ == State::kDraining && now - c->drain_since_ >= std::chrono::seconds(5)) {
      c->fail(c->drain_reason_);
    }
  }
  for (HboneConnection* c : stalled) {
    bump(ctx_.counters.tls_handshake_failures);
    spdlog::warn("{}: HBONE connection with {}: TLS handshake timed out", c->pod_,
                 c->peer_.toString());
    c->fail("TLS handshake timed out");
  }
  std::vector<HboneConnection*> idle;
  for (auto& c : conns_) {
    if (c->state_ == State::kDead || c->role_ != hbone::H2Role::kClient || !c->streams_.empty()) {
      continue;
    }
    if (now - c->idle_since_ >= options_.pool_idle_timeout) {
      idle.push_back(c.get());
    } else if (c->transport_->established() && now - c->last_ping_ >= options_.keepalive_interval) {
      c->last_ping_ = now;
      (void)c->h2().ping();
      c->markDirty();
    }
  }
  for (HboneConnection* c : idle) {
    (void)c->h2().goaway();
    c->fail("");
  }
}

void HbonePool::forgetPod(const Pod& pod) {
  for (auto& c : conns_) {
    if (c->server_pod_ == &pod) c->server_pod_ = nullptr;
  }
}

void HbonePool::failAll(const std::string& why) {
  std::vector<HboneConnection*> all;
  for (auto& c : conns_) all.push_back(c.get());
  for (HboneConnection* c : all) c->fail(why);
}

}  // namespace nodemesh::tunnel
