#include "tunnel/hbone_pool.h"

#include <spdlog/spdlog.h>

#include "common/sockets.h"
#include "hbone_io/hbone_socket.h"
#include "tunnel/inpod_sockets.h"
#include "tunnel/pod_listeners.h"

namespace nodemesh::tunnel {

HboneConnection* HbonePool::add(std::unique_ptr<HboneConnection> conn) {
  HboneConnection* c = conn.get();
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
    if (it->second->socket_.usable()) return it->second;
  }
  auto conn = std::make_unique<HboneConnection>(*this, hbone::H2Role::kClient);
  auto transport = hbone_io::clientTransport(tls_, *pod.identity, dst_id, *conn, options_.h2);
  if (!transport) {
    *error = transport.error().message;
    return nullptr;
  }
  auto fd = socketInNetns(pod.netns.get(), !dst.ip.isV4(), options_.outbound_mark);
  if (!fd) {
    *error = fd.error().message;
    return nullptr;
  }
  conn->socket_.attach(std::move(*fd), std::move(*transport), dst, buffers_, pod.name);
  conn->pool_key_ = key;
  HboneConnection* c = add(std::move(conn));
  pool_.emplace(key, c);
  bump(ctx_.counters.hbone_pool_size);
  c->socket_.connect();
  return c;
}

void HbonePool::acceptServer(Pod& pod, UniqueFd fd) {
  bump(ctx_.counters.accepted_hbone);
  auto refuse = [&](const std::string& why) {
    spdlog::warn("{}: HBONE connection refused: {}", pod.name, why);
    resetOnClose(fd.get());
  };
  auto conn = std::make_unique<HboneConnection>(*this, hbone::H2Role::kServer);
  auto transport = hbone_io::serverTransport(tls_, *pod.identity, *conn, options_.h2);
  if (!transport) return refuse(transport.error().message);
  auto peer = peerAddress(fd.get());
  if (!peer) return refuse(peer.error().message);
  if (pending_handshakes_ >= options_.max_pending_handshakes) shedOldestHandshake(pod);
  conn->socket_.attach(std::move(fd), std::move(*transport), *peer, buffers_, pod.name);
  conn->server_pod_ = &pod;
  conn->handshake_pending_ = true;
  ++pending_handshakes_;
  bump(ctx_.counters.hbone_server_conns);
  add(std::move(conn))->socket_.receive();
}

void HbonePool::handshakeDone(HboneConnection* c) {
  if (!c->handshake_pending_) return;
  c->handshake_pending_ = false;
  --pending_handshakes_;
}

void HbonePool::shedOldestHandshake(const Pod& pod) {
  HboneConnection* oldest = nullptr;
  for (auto& c : conns_) {
    if (c->handshake_pending_ && (!oldest || c->idle_since_ < oldest->idle_since_)) {
      oldest = c.get();
    }
  }
  if (!oldest) return;
  bump(ctx_.counters.hbone_handshakes_shed);
  uint64_t held_back = 0;
  if (shed_log_.admit(RateLimitedLog::Clock::now(), &held_back)) {
    spdlog::warn(
        "{}: {} TLS handshakes pending on this worker (--max-pending-handshakes): the oldest, "
        "from {}, is closed to make room ({} more since the last such line; all counted in "
        "nodemesh_hbone_handshakes_shed_total)",
        pod.name, pending_handshakes_, oldest->peer().toString(), held_back);
  }
  handshakeDone(oldest);
  oldest->socket_.fail("too many pending TLS handshakes");
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
      if (c->socket_.hasInput()) c->socket_.feed();  // input TLS could not take before
      c->socket_.flush();
    }
    for (HboneConnection* c : flushing_) {
      if (c->releasable()) release(c);
    }
  }
}

void HbonePool::release(HboneConnection* c) {
  handshakeDone(c);
  c->socket_.releaseReceiver();
  // The buffer gauge is summed on the timer; without a connection there is nothing to wait for
  // (set before the counts below, so that a reader that sees no connection sees no buffers).
  if (conns_.size() == 1) ctx_.counters.hbone_buffer_bytes.store(0, std::memory_order_relaxed);
  if (c->socket_.role() == hbone::H2Role::kClient) {
    subtract(ctx_.counters.hbone_pool_size);
  } else {
    subtract(ctx_.counters.hbone_server_conns);
  }
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
  uint64_t buffer_bytes = 0;
  for (auto& c : conns_) {
    c->socket_.trimBuffers();
    buffer_bytes += c->socket_.bufferBytes();
    if (c->state() != State::kDead && !c->socket_.transport().established() &&
        now - c->idle_since_ >= options_.handshake_timeout) {
      stalled.push_back(c.get());
    }
  }
  ctx_.counters.hbone_buffer_bytes.store(buffer_bytes, std::memory_order_relaxed);
  for (auto& c : conns_) {
    // A peer that does not read our last words must not keep the connection either.
    if (c->state() == State::kDraining &&
        now - c->socket_.drainingSince() >= std::chrono::seconds(5)) {
      c->socket_.fail(c->socket_.drainReason());
    }
  }
  for (HboneConnection* c : stalled) {
    bump(ctx_.counters.tls_handshake_failures);
    spdlog::warn("{}: HBONE connection with {}: TLS handshake timed out", c->podName(),
                 c->peer().toString());
    c->socket_.fail("TLS handshake timed out");
  }
  std::vector<HboneConnection*> idle;
  for (auto& c : conns_) {
    if (c->state() == State::kDead || c->socket_.role() != hbone::H2Role::kClient ||
        !c->streams_.empty()) {
      continue;
    }
    if (now - c->idle_since_ >= options_.pool_idle_timeout) {
      idle.push_back(c.get());
    } else if (c->socket_.transport().established() &&
               now - c->last_ping_ >= options_.keepalive_interval) {
      c->last_ping_ = now;
      if (c->h2().ping()) bump(ctx_.counters.hbone_keepalive_pings);
      c->markDirty();
    }
  }
  for (HboneConnection* c : idle) {
    bump(ctx_.counters.hbone_idle_closed);
    (void)c->h2().goaway();
    c->socket_.fail("");
  }
  if (draining_since_) drainTick(now);
  // Accepted connections: the peer's to close, but not to keep forever without a stream.
  std::vector<HboneConnection*> idle_servers;
  for (auto& c : conns_) {
    if (c->state() == State::kOpen && c->socket_.role() == hbone::H2Role::kServer &&
        c->socket_.transport().established() && c->streams_.empty() &&
        now - c->idle_since_ >= options_.server_idle_timeout) {
      idle_servers.push_back(c.get());
    }
  }
  for (HboneConnection* c : idle_servers) {
    bump(ctx_.counters.hbone_server_idle_closed);
    spdlog::debug("{}: HBONE connection from {} idle for {} s: closed", c->podName(),
                  c->peer().toString(), options_.server_idle_timeout.count());
    (void)c->h2().goaway();
    c->socket_.drainAndFail("");  // the GOAWAY leaves, then a FIN
  }
}

void HbonePool::drainServers() {
  draining_since_ = Clock::now();
  drainTick(*draining_since_);
}

void HbonePool::drainTick(Clock::time_point now) {
  // Each server connection, accepted before the drain or (from a connect already queued) after
  // it: a shutdown notice once its handshake is done, the final GOAWAY a second later (the
  // notice has arrived: streams sent before it are here, none come after), and a close as soon
  // as it has no stream left.
  std::vector<HboneConnection*> servers;
  for (auto& c : conns_) {
    if (c->state() == HboneConnection::State::kOpen &&
        c->socket_.role() == hbone::H2Role::kServer && c->socket_.transport().established()) {
      servers.push_back(c.get());
    }
  }
  for (HboneConnection* c : servers) {
    if (!c->drain_notice_at_) {
      (void)c->h2().shutdownNotice();
      c->drain_notice_at_ = now;
      c->markDirty();
    } else if (!c->drain_goaway_sent_ && now - *c->drain_notice_at_ >= std::chrono::seconds(1)) {
      c->drain_goaway_sent_ = true;
      (void)c->h2().goaway();
      c->markDirty();
    }
    if (c->drain_goaway_sent_ && c->streams_.empty()) c->socket_.drainAndFail("");
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
  for (HboneConnection* c : all) c->socket_.fail(why);
}

}  // namespace nodemesh::tunnel
