#pragma once

// A worker's HBONE connections: the client pool (one TLS + HTTP/2 connection carries up to 100
// streams; a new TCP connection through the mesh normally costs a stream, not a handshake),
// the server connections accepted on pods' 15008, and their upkeep: handshake and drain
// timeouts, idle release, keepalive PINGs, and the flush of dirty connections after each batch
// of completions.

#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "hbone/h2_session.h"
#include "identity/spiffe_id.h"
#include "tunnel/hbone_connection.h"
#include "tunnel/rate_limited_log.h"
#include "tunnel/relay_context.h"

namespace nodemesh::hbone {
class TlsProvider;
}  // namespace nodemesh::hbone

namespace nodemesh::tunnel {

struct Pod;

// Where CONNECT requests accepted on a pod's 15008 go (Inbound).
class InboundStreams {
 public:
  virtual void onConnectRequest(HboneConnection& conn, hbone::StreamId stream,
                                const hbone::ConnectRequest& request) = 0;

 public:
  virtual ~InboundStreams() = default;
};

class HbonePool {
 public:
  HbonePool(RelayContext ctx, io::ReceiveBuffers& buffers, hbone::TlsProvider& tls,
            const TunnelOptions& options, InboundStreams& inbound)
      : ctx_(ctx), buffers_(buffers), tls_(tls), options_(options), inbound_(inbound) {}
  ~HbonePool() = default;
  HbonePool(const HbonePool&) = delete;
  HbonePool& operator=(const HbonePool&) = delete;

  // A client connection from `pod` to `dst` (a pod's 15008) whose server must prove `dst_id`:
  // a pooled one with a free stream, or a new one (its connect and handshake start now).
  // Null with `error` set when none can be made.
  HboneConnection* clientFor(const Pod& pod, const identity::SpiffeId& dst_id,
                             const SocketAddress& dst, std::string* error);
  // A connection accepted on `pod`'s 15008: TLS server side, then CONNECT requests.
  void acceptServer(Pod& pod, UniqueFd fd);

  void markDirty(HboneConnection* c);
  // After each batch of completions: feeds input TLS could not take before, writes pending
  // output, frees the connections that are done.
  void flushDirty();
  // Once a second: handshake and drain timeouts, idle release, keepalive, and the release of
  // drained send buffers (HboneSocket::trimBuffers), then the gauge of what the buffers hold.
  void onTimer();
  // Server connections of a pod being removed forget it (they answer 503 from now on).
  void forgetPod(const Pod& pod);
  void failAll(const std::string& why);
  // Upgrades: every server connection gets a shutdown notice now and GOAWAY a second later
  // (onTimer), so peers open their next streams to the next agent and lose none on the way.
  void drainServers();
  bool empty() const { return conns_.empty(); }
  // The worker's log of refused streams (CONNECTs and bad requests a peer sends at will).
  RateLimitedLog& refusalLog() { return refusal_log_; }

 private:
  friend class HboneConnection;
  // The connection is unusable: no new stream will be put on it.
  void removeFromPool(HboneConnection* c);
  HboneConnection* add(std::unique_ptr<HboneConnection> conn);
  void release(HboneConnection* c);
  // At the drain's start and once a second after: see drainServers().
  void drainTick(Clock::time_point now);
  // A server connection's handshake ended (done, failed, or the connection closed).
  void handshakeDone(HboneConnection* c);
  // At the pending-handshake bound: closes the oldest pending server handshake.
  void shedOldestHandshake(const Pod& pod);

  RelayContext ctx_;
  io::ReceiveBuffers& buffers_;  // for HBONE sockets
  hbone::TlsProvider& tls_;
  const TunnelOptions& options_;
  InboundStreams& inbound_;
  std::list<std::unique_ptr<HboneConnection>> conns_;
  std::multimap<std::string, HboneConnection*> pool_;
  std::vector<HboneConnection*> dirty_;
  std::vector<HboneConnection*> flushing_;  // flushDirty's batch
  RateLimitedLog refusal_log_;
  size_t pending_handshakes_ = 0;  // server connections whose TLS handshake is not done
  std::optional<Clock::time_point> draining_since_;  // drainServers()
  RateLimitedLog shed_log_;
};

}  // namespace nodemesh::tunnel
