#pragma once

// The socket side of one HBONE connection, shared by the node tunnel
// (tunnel/hbone_connection.h) and the waypoint (waypoint/proxy/hbone_conn.h): the TCP socket,
// the TLS + HTTP/2 transport over it, its multishot receive and the connection's state. The
// owner keeps what differs: which streams the connection carries, where their HTTP/2 events go
// (it is the transport's H2Handler) and what it counts; it hears of the socket through
// HboneSocketOwner.
//
// Rule (both users'): HTTP/2 callbacks never write to the socket and never free a connection;
// every event marks the connection dirty, and after each batch of completions the owner's pool
// calls feed() (when input is left) and flush() on each dirty connection, then frees the ones
// whose socket is finished().

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/ip_address.h"
#include "common/result.h"
#include "hbone/hbone_transport.h"
#include "identity/spiffe_id.h"
#include "io/recv_ring.h"
#include "io/ring.h"

namespace nodemesh::hbone {
class TlsProvider;
}  // namespace nodemesh::hbone

namespace nodemesh::hbone_io {

// What an HboneSocket tells the connection that owns it.
class HboneSocketOwner {
 public:
  virtual ~HboneSocketOwner() = default;
  // Something changed: the connection is flushed (and maybe freed) after this batch.
  virtual void markDirty() = 0;
  // Client: the TCP connect completed; the handshake starts.
  virtual void onConnected() {}
  // Client: the TCP connect failed with -errno `res`. Returns why, for the failure reason.
  virtual std::string onConnectFailed(int res) = 0;
  // The TLS handshake completed (once per connection).
  virtual void onEstablished() {}
  // Input made the TLS handshake fail before it completed.
  virtual void onHandshakeFailure() {}
  // Streams are open: a peer that closes now leaves them broken.
  virtual bool hasStreams() const = 0;
  // The connection failed and sends its last words: no new stream goes on it.
  virtual void onDraining() {}
  // The connection closes, with `why` (empty: an orderly close): no new stream goes on it.
  virtual void onClosing(const std::string& /*why*/) {}
  // Every open stream is lost (the connection cannot carry them any more): forget them and tell
  // their owners.
  virtual void loseStreams(const std::string& why) = 0;
};

class HboneSocket final : public io::CompletionHandler {
 public:
  enum class State {
    kConnecting,  // client: the TCP connect is in flight
    kOpen,        // TLS handshake, then streams
    kGoingAway,   // the peer sent GOAWAY: no new streams, the open ones finish
    kDraining,    // failed: no more reads; the last output (a TLS alert, a GOAWAY) leaves first
    kDead,        // closed: freed once nothing is in flight
  };

  HboneSocket(HboneSocketOwner& owner, io::Ring& ring, io::Receivers& receivers,
              hbone::H2Role role);
  ~HboneSocket() override = default;
  HboneSocket(const HboneSocket&) = delete;
  HboneSocket& operator=(const HboneSocket&) = delete;

  // Takes the socket to `peer` and the transport over it, receiving into `buffers`; `label`
  // starts its log lines. Once, before anything else.
  void attach(UniqueFd fd, std::unique_ptr<hbone::HboneTransport> transport,
              const SocketAddress& peer, io::ReceiveBuffers& buffers, std::string label);
  // Client: starts the TCP connect to peer(); receiving starts once it completes.
  void connect();
  // Server: starts receiving.
  void receive();
  // Hands received ciphertext to TLS (and HTTP/2 behind it), chunk by chunk.
  void feed();
  // Starts the next send of ciphertext, if any; after a failure, closes once it is all out.
  void flush();
  // Releases drained send buffers larger than an idle connection needs. The owner calls it
  // on its timer: streaming reuses the buffers, and a connection that goes quiet gives them
  // back within a tick.
  void trimBuffers();
  // The memory its ciphertext buffers hold (TLS's input and output and the send buffer), for
  // the owner's gauge.
  size_t bufferBytes() const;
  // The peer sent GOAWAY: the open streams finish, no new ones.
  void goingAway();
  // Ends the connection: every stream is lost, pending I/O cancelled; `reset` closes with an RST
  // (for failures).
  void fail(const std::string& why, bool reset = true);
  // Failed with something to tell the peer (an alert, a GOAWAY): stops reading, sends that,
  // then closes (RFC 9113 5.4.1). The owner fails it for good when it is still draining after
  // its deadline (a peer that does not read).
  void drainAndFail(const std::string& why);
  // Gives back the receive buffers it holds; the connection is about to be freed.
  void releaseReceiver();

  // Open (or connecting) with room for a new stream.
  bool usable() const;
  // Dead with nothing in flight: may be freed.
  bool finished() const;
  // Received input that TLS could not take yet.
  bool hasInput() const { return !rx_.chunks.empty(); }

  State state() const { return state_; }
  hbone::H2Role role() const { return role_; }
  hbone::HboneTransport& transport() { return *transport_; }
  const hbone::HboneTransport& transport() const { return *transport_; }
  hbone::H2Session& h2() { return transport_->h2(); }
  const hbone::H2Session& h2() const { return transport_->h2(); }
  const SocketAddress& peer() const { return peer_; }
  const std::string& label() const { return label_; }
  const std::string& drainReason() const { return drain_reason_; }
  std::chrono::steady_clock::time_point drainingSince() const { return drain_since_; }

 private:
  enum Op : uint8_t { kConnect, kRecv, kSend };
  void onCompletion(uint8_t op, int res, unsigned flags) override;
  void onConnect(int res);
  void onRecv(int res, unsigned flags);
  void onSend(int res);
  // Everything is written after drainAndFail: closes with a FIN, or lingers (see the .cc).
  void finishDrain();

  HboneSocketOwner& owner_;
  io::Ring& ring_;
  io::Receivers& receivers_;
  hbone::H2Role role_;
  State state_;
  bool connect_in_flight_ = false;
  bool send_in_flight_ = false;
  bool established_seen_ = false;  // onEstablished was called
  io::OpTag connect_tag_{this, kConnect};
  io::OpTag recv_tag_{this, kRecv};
  io::OpTag send_tag_{this, kSend};
  UniqueFd fd_;
  sockaddr_storage peer_addr_{};
  SocketAddress peer_;  // the other end of the TCP connection
  std::string label_;   // for logs
  std::unique_ptr<hbone::HboneTransport> transport_;
  io::Receiver rx_;  // multishot receive on the socket
  // Ciphertext being written, taken out of TLS by swapping buffers (TLS may write more while
  // a send is in flight), so the two alternate; trimBuffers() releases them when drained.
  std::vector<uint8_t> sendbuf_;
  size_t send_off_ = 0;
  bool fin_sent_ = false;  // draining: FIN sent, closed at the owner's drain deadline
  std::string drain_reason_;
  std::chrono::steady_clock::time_point drain_since_;
};

// The transport of a client connection for `self` whose server must prove `peer`, over TLS
// from `provider`; HTTP/2 events go to `handler`, and `options` bound the session.
Result<std::unique_ptr<hbone::HboneTransport>> clientTransport(
    hbone::TlsProvider& provider, const identity::SpiffeId& self, const identity::SpiffeId& peer,
    hbone::H2Handler& handler, const hbone::H2Options& options = {});
// The transport of a server connection that proves `self`.
Result<std::unique_ptr<hbone::HboneTransport>> serverTransport(
    hbone::TlsProvider& provider, const identity::SpiffeId& self, hbone::H2Handler& handler,
    const hbone::H2Options& options = {});

}  // namespace nodemesh::hbone_io
