#pragma once

// The waypoint's HBONE connections: from node agents (server: CONNECT requests for the
// destinations the waypoint serves) and to pods' 15008 (client: one CONNECT stream per
// upstream exchange, connections pooled by peer identity and address). The socket side (TLS,
// HTTP/2 and I/O) is hbone_io::HboneSocket, shared with the tunnel; what stays here differs from
// the tunnel's connections, whose streams end in pods' sockets: these end in other streams.
//
// Rule (as in the tunnel): HTTP/2 callbacks never write to a socket and never free anything;
// they change stream state and mark the connection dirty. After each batch of completions
// HboneConns::flush() writes every dirty connection and frees those that are done. A stream's
// owner hears of its stream through StreamOwner until onStreamClosed, once.

#include <sys/socket.h>

#include <chrono>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/ip_address.h"
#include "hbone/hbone_transport.h"
#include "hbone/tls_provider.h"
#include "hbone_io/hbone_socket.h"
#include "identity/spiffe_id.h"
#include "io/recv_ring.h"
#include "io/ring.h"

namespace nodemesh::waypoint {

using Clock = std::chrono::steady_clock;

class StreamOwner {
 public:
  virtual ~StreamOwner() = default;
  // Client streams: the CONNECT's answer (200: the tunnel is up).
  virtual void onConnectResponse(int /*status*/) {}
  // Bytes from the peer; acknowledge each with HboneConn::consumed() once passed on. What is
  // still unacknowledged when the stream closes or the owner detaches is given back then by the
  // connection (the owner may still hold those bytes; its later consumed() calls are no-ops).
  virtual void onStreamData(std::span<const uint8_t> data) = 0;
  virtual void onStreamEnd() = 0;       // the peer half-closed
  virtual void onStreamWritable() = 0;  // send() has room again
  // The stream is over (both ends, a reset, or the connection was lost): no more calls.
  virtual void onStreamClosed(uint32_t error_code, const std::string& why) = 0;
};

class HboneConn;

// Where CONNECT requests arriving on server connections go.
class ConnectAcceptor {
 public:
  virtual ~ConnectAcceptor() = default;
  virtual void onConnectRequest(HboneConn& conn, hbone::StreamId stream,
                                const hbone::ConnectRequest& request) = 0;
};

struct HboneConnOptions {
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};  // client connections without streams
  std::chrono::milliseconds connect_timeout{10000};
};

struct HboneConnStats {
  uint64_t accepted = 0;   // server connections
  uint64_t connected = 0;  // client connections
  uint64_t handshake_failures = 0;
  uint64_t failures = 0;
  uint64_t pooled = 0;  // client connections open now
  // DATA bytes the connections delivered and nobody has given back yet (a gauge; 0 when idle:
  // anything else is a flow-control leak that ends in a stalled connection).
  uint64_t unconsumed_bytes = 0;
  uint64_t open = 0;  // connections not closed yet, either role (a gauge)
  // The memory their ciphertext buffers hold now (HboneSocket::bufferBytes): at most 16 KiB
  // per buffer a second after a burst, as onTimer trims drained ones.
  uint64_t buffer_bytes = 0;
};

class HboneConns;

class HboneConn final : public hbone::H2Handler, public hbone_io::HboneSocketOwner {
 public:
  using State = hbone_io::HboneSocket::State;

  HboneConn(HboneConns& conns, hbone::H2Role role);
  ~HboneConn() override = default;
  HboneConn(const HboneConn&) = delete;
  HboneConn& operator=(const HboneConn&) = delete;

  const SocketAddress& peer() const { return socket_.peer(); }
  // The peer's identity from its certificate (the client's, on a server connection).
  const std::optional<identity::SpiffeId>& peerIdentity() const;
  State state() const { return socket_.state(); }

  // ---- streams ----
  // Client: a CONNECT to `authority`; the owner hears the answer.
  Result<hbone::StreamId> openConnect(const std::string& authority,
                                      const hbone::ConnectHeaders& headers, StreamOwner* owner);
  // Server: the owner takes a stream onConnectRequest offered.
  void attach(hbone::StreamId stream, StreamOwner* owner);
  // The owner lets go of a stream it will not hear of again; with `reset`, RST_STREAM CANCEL
  // (a stream answered with respond() ends by itself). Bytes it did not acknowledge are given
  // back. Safe inside callbacks.
  void detach(hbone::StreamId stream, bool reset = true);
  Result<size_t> send(hbone::StreamId stream, std::span<const uint8_t> data);
  Status endStream(hbone::StreamId stream);
  // Acknowledges n bytes onStreamData delivered (reopens the HTTP/2 windows for them). A no-op
  // once the stream closed or was detached: its bytes were given back then.
  Status consumed(hbone::StreamId stream, size_t n);
  Status respond(hbone::StreamId stream, int status);
  Status reset(hbone::StreamId stream, uint32_t error_code);

  // H2Handler
  void onRequest(hbone::StreamId stream, const hbone::ConnectRequest& request) override;
  void onResponse(hbone::StreamId stream, int status) override;
  void onData(hbone::StreamId stream, std::span<const uint8_t> data) override;
  void onEndStream(hbone::StreamId stream) override;
  void onStreamClosed(hbone::StreamId stream, uint32_t error_code) override;
  void onWritable(hbone::StreamId stream) override;
  void onGoaway(hbone::StreamId last_stream, uint32_t error_code) override;

 private:
  friend class HboneConns;
  // hbone_io::HboneSocketOwner
  void markDirty() override;
  void onConnected() override;
  std::string onConnectFailed(int res) override;
  void onHandshakeFailure() override;
  bool hasStreams() const override { return !streams_.empty(); }
  void onDraining() override;
  void onClosing(const std::string& why) override;
  void loseStreams(const std::string& why) override;

  // A stream's owner and the bytes delivered to it that it has not acknowledged yet.
  struct Attached {
    StreamOwner* owner = nullptr;
    uint64_t unconsumed = 0;
  };

  StreamOwner* ownerOf(hbone::StreamId stream) const;
  // Gives back what the owner of `it` did not acknowledge and forgets the stream.
  void forget(std::map<hbone::StreamId, Attached>::iterator it);
  // Nothing in flight, dead and not waiting for a flush: may be freed.
  bool releasable() const { return socket_.finished() && !dirty_; }

  HboneConns& conns_;
  bool dirty_ = false;
  std::string pool_key_;
  hbone_io::HboneSocket socket_;
  Clock::time_point since_;  // created, or last without streams, or draining since
  std::map<hbone::StreamId, Attached> streams_;
  std::list<std::unique_ptr<HboneConn>>::iterator self_;
};

// Every HBONE connection of one event loop, and the client pool.
class HboneConns {
 public:
  HboneConns(io::Ring& ring, io::Receivers& receivers, io::ReceiveBuffers& buffers,
             hbone::TlsProvider& tls, identity::SpiffeId self, ConnectAcceptor& acceptor,
             HboneConnOptions options)
      : ring_(ring),
        receivers_(receivers),
        buffers_(buffers),
        tls_(tls),
        self_(std::move(self)),
        acceptor_(acceptor),
        options_(options) {}
  ~HboneConns() = default;
  HboneConns(const HboneConns&) = delete;
  HboneConns& operator=(const HboneConns&) = delete;

  // A connection accepted on 15008.
  void acceptServer(UniqueFd fd);
  // A pooled client connection to `addr` whose server proves `peer_id`, or a new one (its
  // connect and handshake start now). Null with `error` when none can be made.
  HboneConn* clientFor(const identity::SpiffeId& peer_id, const SocketAddress& addr,
                       std::string* error);
  // After each batch of completions.
  void flush();
  // On the loop's tick: handshake and drain timeouts, idle client connections.
  void onTimer();
  void failAll(const std::string& why);
  HboneConnStats stats() const;

 private:
  friend class HboneConn;
  HboneConn* add(std::unique_ptr<HboneConn> conn);
  void markDirty(HboneConn* c);
  void removeFromPool(HboneConn* c);
  void release(HboneConn* c);

  io::Ring& ring_;
  io::Receivers& receivers_;
  io::ReceiveBuffers& buffers_;
  hbone::TlsProvider& tls_;
  identity::SpiffeId self_;
  ConnectAcceptor& acceptor_;
  HboneConnOptions options_;
  HboneConnStats stats_;
  std::list<std::unique_ptr<HboneConn>> conns_;
  std::multimap<std::string, HboneConn*> pool_;
  std::vector<HboneConn*> dirty_;
  std::vector<HboneConn*> flushing_;
};

}  // namespace nodemesh::waypoint
