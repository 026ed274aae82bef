#pragma once

// The plain TCP relay: one socket accepted from a client and one the tunnel connected (to the
// original destination outside the mesh, or inbound, the delivery to the application). Each
// direction forwards the chunks its multishot receive queued, one send in flight at a time,
// and passes a half-close on (RFC 9293 3.6); a failure resets both sides. Memory per
// connection is bounded (Receiver::kMaxChunks buffers per direction): a slow reader slows the
// writer.
//
// With RelayContext::pipes (TunnelOptions::splice) each direction splices instead: on the
// source socket's readiness it moves what arrived into a pipe and from the pipe into the other
// socket (splice(2), non-blocking, by page reference: no copy through the agent), and waits for
// the other socket to be writable while the pipe is not drained (the pipe's capacity is the
// bound per direction).

#include <sys/socket.h>

#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "tunnel/relay_context.h"

namespace nodemesh::tunnel {

class TcpRelay;

class TcpConnection final : public io::CompletionHandler {
 public:
  enum class State {
    kNew,         // accepted; nothing connected yet
    kConnecting,  // the connect to the destination is in flight
    kRelaying,    // bytes flow; each half runs on its own (HalfState)
    kAborting,    // failed: both sockets reset once nothing is in flight
  };
  // One direction: 0 client -> destination, 1 destination -> client.
  enum class HalfState {
    kIdle,          // waiting for received bytes (or for EOF)
    kSending,       // a send of the first received chunk is in flight (splicing: the
                    // destination is not writable and bytes wait in the pipe)
    kShuttingDown,  // EOF received: shutdown(SHUT_WR) of the other socket in flight
    kDone,          // the half-close was passed on
  };

  TcpConnection(TcpRelay& relay, Direction direction, const std::string& pod, UniqueFd down);
  ~TcpConnection() override = default;
  TcpConnection(const TcpConnection&) = delete;
  TcpConnection& operator=(const TcpConnection&) = delete;

  // What the access log will say; the caller fills src/dst and the service fields.
  ConnectionRecord record;
  // Outbound to a service VIP: the attempt this connection carries.
  std::unique_ptr<ServiceTarget> service;
  // Inbound: the connection's place under its workload's cap, given back when it is freed.
  ConnectionSlot slot;
  // Same-node fast path (an outbound connection delivered to a pod of this node): the server
  // pod's inbound record, finished with this one (its own error, or this one's).
  std::unique_ptr<ConnectionRecord> delivery;

  State state() const { return state_; }
  HalfState halfState(int i) const { return half_[i].state; }
  ConnectionInfo describe(Clock::time_point now) const;
  // The same for the delivery record (null: none).
  std::optional<ConnectionInfo> describeDelivery(Clock::time_point now) const;

 private:
  friend class TcpRelay;
  struct Half {
    io::OpTag recv_tag;
    io::OpTag send_tag;
    io::OpTag shut_tag;
    io::OpTag poll_tag;
    int from = -1;
    int to = -1;
    io::Receiver rx;  // multishot receive on the source socket
    uint64_t bytes = 0;
    HalfState state = HalfState::kIdle;
    // Splicing: the pipe holding bytes read and not yet written (none while drained), their
    // count, the EOF read, and a readiness poll in flight.
    SplicePipe pipe;
    size_t in_pipe = 0;
    bool eof = false;
    bool polling = false;
  };
  // Op codes: the kind times two plus the half.
  enum Op : uint8_t { kConnect = 0, kRecv = 2, kSend = 4, kShutdown = 6, kPoll = 8 };

  void onCompletion(uint8_t op, int res, unsigned flags) override;

  TcpRelay& relay_;
  State state_ = State::kNew;
  bool connect_in_flight_ = false;  // outlives kConnecting when the connection aborts meanwhile
  Half half_[2];
  io::OpTag connect_tag_;
  UniqueFd down_;  // accepted from the application or the remote client
  UniqueFd up_;    // to the original destination, or the delivery socket
  sockaddr_storage dst_addr_{};
  Clock::time_point start_;
  std::list<std::unique_ptr<TcpConnection>>::iterator self_;
};

class TcpRelay {
 public:
  explicit TcpRelay(RelayContext ctx) : ctx_(ctx) {}
  ~TcpRelay() = default;
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  // A connection for a socket accepted from a client; nothing is connected yet.
  TcpConnection* create(Direction direction, const std::string& pod, UniqueFd down);
  // Connects `up` (made by the caller, in the pod's namespace) to c->record.dst, then relays.
  void connect(TcpConnection* c, UniqueFd up);
  // The same with a socket made in `netns_fd` carrying `mark`, bound as inpod_sockets.h's
  // socketInNetns says; aborts c when the socket cannot be made.
  void connectFromNetns(TcpConnection* c, int netns_fd, uint32_t mark,
                        const IpAddress* bind_ip = nullptr, bool transparent = false,
                        uint16_t avoid_port = 0);
  // Ends c with a reset on both sides; it is freed once nothing is in flight (access logged).
  void abort(TcpConnection* c, const std::string& why);
  // Frees c at once without an access log line: its client socket was handed to a retry (or
  // nothing was ever started). Nothing may be in flight.
  void drop(TcpConnection* c);
  void abortAll(const std::string& why);

  // Inbound connections not already failing, and same-node deliveries (re-authorized after a
  // policy change).
  std::vector<TcpConnection*> openInbound() const;
  void describe(std::vector<ConnectionInfo>& out, Clock::time_point now) const;
  bool empty() const { return conns_.empty(); }

 private:
  friend class TcpConnection;
  void onConnect(TcpConnection* c, int res);
  void onRecv(TcpConnection* c, int i, int res, unsigned flags);
  void onSend(TcpConnection* c, int i, int res);
  void onShutdown(TcpConnection* c, int i, int res);
  void onPoll(TcpConnection* c, int i, int res);
  // Starts the half's next operation. Returns false when it ended the connection.
  bool pump(TcpConnection* c, int i);
  // Splicing: moves what the half's source has to its destination until one of them would
  // block (then polls it), EOF (then passes it on) or a failure (then aborts).
  // The caller must not use c afterwards (it may be freed).
  void splice(TcpConnection* c, int i);
  // Splice mode: waits (one io_uring poll) for `events` on `fd`, one of the half's sockets.
  void pollHalf(TcpConnection::Half& h, int fd, unsigned events);
  // Frees c when nothing is in flight and it is either aborting or both halves are done.
  void advance(TcpConnection* c);
  void finish(TcpConnection* c);

  RelayContext ctx_;
  std::list<std::unique_ptr<TcpConnection>> conns_;
};

}  // namespace nodemesh::tunnel
