#pragma once

// One TLS + HTTP/2 connection to (client) or from (server) another pod's 15008, carrying
// CONNECT streams, each joined to one TCP socket by a StreamBridge. nghttp2's callbacks arrive
// here (H2Handler) and go straight to the stream's bridge.
//
// Rule: H2Handler callbacks never write to the socket and never free a connection; they change
// stream state and mark the connection dirty. After each batch of completions the pool flushes
// every dirty connection and frees the ones that are done (HbonePool::flushDirty).

#include <sys/socket.h>

#include <list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "hbone/hbone_transport.h"
#include "tunnel/relay_context.h"
#include "tunnel/stream_bridge.h"

namespace nodemesh::tunnel {

class HbonePool;
class StreamBridge;
struct Pod;

class HboneConnection final : public hbone::H2Handler,
                              public StreamCarrier,
                              public io::CompletionHandler {
 public:
  enum class State {
    kConnecting,  // client: the TCP connect is in flight
    kOpen,        // TLS handshake, then streams
    kGoingAway,   // the peer sent GOAWAY: no new streams, the open ones finish
    kDraining,    // failed: no more reads; the last output (a TLS alert, a GOAWAY) leaves first
    kDead,        // closed: freed once nothing is in flight
  };

  HboneConnection(HbonePool& pool, hbone::H2Role role);
  ~HboneConnection() override = default;
  HboneConnection(const HboneConnection&) = delete;
  HboneConnection& operator=(const HboneConnection&) = delete;

  hbone::H2Session& h2() { return transport_->h2(); }
  const SocketAddress& peer() const { return peer_; }
  const std::string& podName() const { return pod_; }
  // Server side: the pod whose 15008 accepted it; null once the pod is being removed.
  Pod* serverPod() const { return server_pod_; }
  // The client's identity from its certificate (server side), if it showed one.
  const std::optional<identity::SpiffeId>& peerIdentity() const;
  State state() const { return state_; }

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
  void markDirty() override;

  // H2Handler
  void onRequest(hbone::StreamId stream, const hbone::ConnectRequest& request) override;
  void onResponse(hbone::StreamId stream, int status) override;
  void onRequestRejected(hbone::StreamId stream, int status, std::string_view reason) override;
  void onData(hbone::StreamId stream, std::span<const uint8_t> data) override;
  void onEndStream(hbone::StreamId stream) override;
  void onStreamClosed(hbone::StreamId stream, uint32_t error_code) override;
  void onWritable(hbone::StreamId stream) override;
  void onGoaway(hbone::StreamId last_stream, uint32_t error_code) override;

 private:
  friend class HbonePool;
  enum Op : uint8_t { kConnect, kRecv, kSend };
  void onCompletion(uint8_t op, int res, unsigned flags) override;
  void onConnect(int res);
  void onRecv(int res, unsigned flags);
  void onSend(int res);
  StreamBridge* bridgeFor(hbone::StreamId stream) const;
  void receive();
  // Hands received ciphertext to TLS (and HTTP/2 behind it), chunk by chunk.
  void feed();
  // Starts the next send of ciphertext, if any; after a failure, closes once it is all out.
  void flush();
  // Ends the connection: every stream's bridge is aborted, pending I/O cancelled; `reset`
  // closes with an RST (for failures).
  void fail(const std::string& why, bool reset = true);
  // Failed with something to tell the peer (an alert, a GOAWAY): stops reading, sends that,
  // then closes (RFC 9113 5.4.1).
  void drainAndFail(const std::string& why);
  // Aborts every stream's bridge (the connection cannot carry them any more).
  void loseStreams(const std::string& why);
  // Nothing in flight and dead: may be freed.
  bool releasable() const;
  bool usable() const;  // for a new stream

  HbonePool& pool_;
  RelayContext& ctx_;
  hbone::H2Role role_;
  State state_;
  bool connect_in_flight_ = false;
  bool send_in_flight_ = false;
  bool dirty_ = false;
  bool handshake_counted_ = false;
  io::OpTag connect_tag_{this, kConnect};
  io::OpTag recv_tag_{this, kRecv};
  io::OpTag send_tag_{this, kSend};
  UniqueFd fd_;
  sockaddr_storage peer_addr_{};
  SocketAddress peer_;         // the other end of the TCP connection
  std::string pod_;            // the local pod's name, for logs
  Pod* server_pod_ = nullptr;  // server: the pod whose 15008 accepted it
  std::string pool_key_;       // client: where it sits in the pool
  std::unique_ptr<hbone::HboneTransport> transport_;
  io::Receiver rx_;               // multishot receive on the socket
  std::vector<uint8_t> sendbuf_;  // ciphertext being written (copied out of TLS: its buffer
  size_t send_off_ = 0;           // may grow while a write is in flight)
  Clock::time_point last_ping_;
  std::string drain_reason_;
  Clock::time_point drain_since_;
  std::map<hbone::StreamId, StreamBridge*> streams_;
  Clock::time_point idle_since_;
  std::list<std::unique_ptr<HboneConnection>>::iterator self_;
};

}  // namespace nodemesh::tunnel
