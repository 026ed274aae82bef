#pragma once

// One TLS + HTTP/2 connection to (client) or from (server) another pod's 15008, carrying
// CONNECT streams, each joined to one TCP socket by a StreamBridge. nghttp2's callbacks arrive
// here (H2Handler) and go straight to the stream's bridge.
//
// The socket side (TLS, HTTP/2 and I/O) is hbone_io::HboneSocket, shared with the waypoint; this
// class keeps the streams, their bridges and the tunnel's counters.
//
// Rule: H2Handler callbacks never write to the socket and never free a connection; they change
// stream state and mark the connection dirty. After each batch of completions the pool flushes
// every dirty connection and frees the ones that are done (HbonePool::flushDirty).

#include <sys/socket.h>

#include <list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "hbone/hbone_transport.h"
#include "hbone_io/hbone_socket.h"
#include "tunnel/relay_context.h"
#include "tunnel/stream_bridge.h"

namespace nodemesh::tunnel {

class HbonePool;
class StreamBridge;
struct Pod;

class HboneConnection final : public hbone::H2Handler,
                              public StreamCarrier,
                              public hbone_io::HboneSocketOwner {
 public:
  using State = hbone_io::HboneSocket::State;

  HboneConnection(HbonePool& pool, hbone::H2Role role);
  ~HboneConnection() override = default;
  HboneConnection(const HboneConnection&) = delete;
  HboneConnection& operator=(const HboneConnection&) = delete;

  hbone::H2Session& h2() { return socket_.h2(); }
  const SocketAddress& peer() const { return socket_.peer(); }
  const std::string& podName() const { return socket_.label(); }
  // Server side: the pod whose 15008 accepted it; null once the pod is being removed.
  Pod* serverPod() const { return server_pod_; }
  // Logs a stream refused to the peer: at most one line per interval per worker, the rest
  // counted into the next line (a peer can cause refusals at will).
  void logRefusal(const std::string& what, int status, std::string_view why);
  // The client's identity from its certificate (server side), if it showed one.
  const std::optional<identity::SpiffeId>& peerIdentity() const;
  State state() const { return socket_.state(); }

  // StreamCarrier
  Result<size_t> send(hbone::StreamId stream, std::span<const uint8_t> data) override {
    return h2().send(stream, data);
  }
  Status endStream(hbone::StreamId stream) override { return h2().endStream(stream); }
  Status consumed(hbone::StreamId stream, size_t n) override { return h2().consumed(stream, n); }
  Status respond(hbone::StreamId stream, int status) override {
    return h2().respond(stream, status);
  }
  void addStream(hbone::StreamId stream, StreamBridge* bridge) override;
  void removeStream(hbone::StreamId stream, bool closed) override;
  void markDirty() override;  // also hbone_io::HboneSocketOwner

  // H2Handler
  void onRequest(hbone::StreamId stream, const hbone::ConnectRequest& request) override;
  void onResponse(hbone::StreamId stream, int status) override;
  void onRequestRejected(hbone::StreamId stream, int status, std::string_view reason) override;
  void onData(hbone::StreamId stream, std::span<const uint8_t> data) override;
  void onEndStream(hbone::StreamId stream) override;
  void onStreamClosed(hbone::StreamId stream, uint32_t error_code) override;
  void onWritable(hbone::StreamId stream) override;
  void onGoaway(hbone::StreamId last_stream, uint32_t error_code) override;
  void onFlood(hbone::H2Flood kind, std::string_view detail) override;

  // Bytes this connection's streams received and their applications have not read yet.
  uint64_t bufferedBytes() const;

 private:
  friend class HbonePool;
  // hbone_io::HboneSocketOwner
  std::string onConnectFailed(int res) override;
  void onEstablished() override;
  void onHandshakeFailure() override;
  bool hasStreams() const override { return !streams_.empty(); }
  void onClosing(const std::string& why) override;
  // Aborts every stream's bridge (the connection cannot carry them any more).
  void loseStreams(const std::string& why) override;

  StreamBridge* bridgeFor(hbone::StreamId stream) const;
  // Nothing in flight, dead and not waiting for a flush: may be freed.
  bool releasable() const { return socket_.finished() && !dirty_; }

  HbonePool& pool_;
  RelayContext& ctx_;
  bool dirty_ = false;
  Pod* server_pod_ = nullptr;  // server: the pod whose 15008 accepted it
  // Upgrades (HbonePool::drainServers): when the shutdown notice went, and the final GOAWAY.
  std::optional<Clock::time_point> drain_notice_at_;
  bool drain_goaway_sent_ = false;
  bool handshake_pending_ = false;  // server: counted in HbonePool::pending_handshakes_
  std::string pool_key_;            // client: where it sits in the pool
  hbone_io::HboneSocket socket_;
  Clock::time_point last_ping_;
  std::map<hbone::StreamId, StreamBridge*> streams_;
  Clock::time_point idle_since_;
  std::list<std::unique_ptr<HboneConnection>>::iterator self_;
};

}  // namespace nodemesh::tunnel
