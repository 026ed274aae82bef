#pragma once

// One HBONE stream joined to one TCP socket: outbound, the application's connection to 15001
// carried as a CONNECT stream to the destination's 15008; inbound, a CONNECT stream accepted on
// 15008 delivered to the application over a socket the tunnel connects inside the pod.
//
// TCP -> stream: the socket's multishot receive feeds the stream (nghttp2 queues at most the
// stream's window); the socket's EOF becomes END_STREAM. Stream -> TCP: DATA is appended to
// `out_` and written one send at a time; the HTTP/2 window reopens only as bytes reach the
// socket (flow control end to end); END_STREAM becomes shutdown(SHUT_WR).
//
// State: State (the bridge's life), ToStream and ToTcp (each direction), and the operations in
// flight. advance() is the one place that decides when the bridge is finished.

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <functional>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/fd.h"
#include "hbone/byte_queue.h"
#include "hbone/h2_session.h"
#include "tunnel/rate_limited_log.h"
#include "tunnel/relay_context.h"

namespace nodemesh::tunnel {

class StreamBridges;
class StreamBridge;

// The HBONE connection that carries a bridge's stream, as the bridge sees it: the stream
// operations it needs (HboneConnection implements it; unit tests substitute their own).
class StreamCarrier {
 public:
  virtual Result<size_t> send(hbone::StreamId stream, std::span<const uint8_t> data) = 0;
  virtual Status endStream(hbone::StreamId stream) = 0;
  // Bytes of the stream's DATA written on: the HTTP/2 window may reopen by that much.
  virtual Status consumed(hbone::StreamId stream, size_t n) = 0;
  virtual Status respond(hbone::StreamId stream, int status) = 0;
  virtual void addStream(hbone::StreamId stream, StreamBridge* bridge) = 0;
  // The bridge is done with its stream: resets it unless `closed` (it closed already).
  virtual void removeStream(hbone::StreamId stream, bool closed) = 0;
  // Output may be pending: flushed after the completion batch.
  virtual void markDirty() = 0;

 public:
  virtual ~StreamCarrier() = default;
};

class StreamBridge final : public io::CompletionHandler {
 public:
  enum class State {
    kOpening,    // outbound: CONNECT sent, no answer yet; inbound: connecting to the application
    kStreaming,  // 200 seen or sent: bytes flow
    kAborting,   // failed: the socket and the stream are reset once nothing is in flight
  };
  enum class ToStream {
    kOpen,
    kEnded,  // the socket's EOF was passed on as END_STREAM
  };
  enum class ToTcp {
    kOpen,
    kPeerEnded,  // END_STREAM received; what is queued is still written, then SHUT_WR
    kShut,       // shutdown(SHUT_WR) done
  };

  StreamBridge(StreamBridges& owner, StreamCarrier* conn, UniqueFd tcp, Direction direction,
               const std::string& pod);
  ~StreamBridge() override = default;
  StreamBridge(const StreamBridge&) = delete;
  StreamBridge& operator=(const StreamBridge&) = delete;

  ConnectionRecord record;
  // Outbound to a service VIP: the attempt this bridge carries.
  std::unique_ptr<ServiceTarget> service;
  // Inbound: the stream's place under its workload's cap, given back when it is freed.
  ConnectionSlot slot;
  // Outbound HBONE: opens the stream again, on a usable connection of the pool, after the peer
  // refused it (REFUSED_STREAM: a GOAWAY crossed the request); false when it cannot.
  std::function<bool(StreamBridge&)> reopen;

  // The HBONE stream the bridge carries (outbound: once the CONNECT is sent).
  void attach(StreamCarrier* conn, hbone::StreamId stream);
  // Inbound: connects the delivery socket to the application at record.dst, once the input
  // batch that carried the request is processed (StreamBridges::startDeferredConnects): a
  // stream the peer resets in the same batch (rapid reset) never costs the application a
  // connection.
  void connectApplication();

  // Events of the stream, from its HBONE connection.
  void onConnectResponse(int status);
  void onStreamData(std::span<const uint8_t> data);
  void onStreamEnd();
  void onStreamWritable();
  void onStreamClosed(uint32_t error_code);
  // The HBONE connection failed: the stream is gone.
  void onConnectionLost(const std::string& why);

  // Ends the bridge with a reset on its socket and on its stream. An outbound connection to a
  // service whose stream was never established is retried on another endpoint instead
  // (nothing was read from the application yet, so nothing is lost).
  void abort(const std::string& why);

  State state() const { return state_; }
  ToStream toStream() const { return to_stream_; }
  ToTcp toTcp() const { return to_tcp_; }
  bool attached() const { return conn_ != nullptr; }
  // Bytes received from the stream and not yet written to the socket.
  size_t held() const { return out_.size(); }
  ConnectionInfo describe(Clock::time_point now) const;

 private:
  friend class StreamBridges;
  static constexpr size_t kMaxSendBlocks = 16;  // one send writes at most 1 MiB
  enum Op : uint8_t { kConnect, kRecv, kSend, kShutdown };
  void onCompletion(uint8_t op, int res, unsigned flags) override;
  void onApplicationConnect(int res);
  void onRecv(int res, unsigned flags);
  void onSend(int res);
  void onShutdown();
  // Arms the socket's receive while the stream can take data.
  void receiveFromTcp();
  // Moves received bytes into the stream, and the socket's EOF as END_STREAM.
  void pushToStream();
  // Writes what the stream delivered to the socket, then SHUT_WR after END_STREAM.
  void sendToTcp();
  // Forgets the stream (reset unless it is already closed) and marks its connection dirty.
  void detach(bool reset);
  // Gives back the connection-level window of the bytes received from the stream and not yet
  // written to the TCP peer: once the bridge lets go of its stream (closed or detached), the
  // consumed() calls after each write stop, and those bytes would hold the window for good.
  void giveBackHeld();
  // Finishes the bridge when nothing is in flight and it is aborting or both directions ended.
  void advance();
  // Brings the worker's gauge and the shared budget to held() (budgeted_ is what they count).
  void account();
  RelayContext& ctx();

  StreamBridges& owner_;
  StreamCarrier* conn_ = nullptr;  // null once the stream is gone
  hbone::StreamId stream_ = -1;
  State state_ = State::kOpening;
  ToStream to_stream_ = ToStream::kOpen;
  ToTcp to_tcp_ = ToTcp::kOpen;
  // Operations in flight (the receive's is rx_.armed).
  bool connect_in_flight_ = false;
  bool connect_deferred_ = false;  // waiting for StreamBridges::startDeferredConnects
  bool reopened_ = false;          // `reopen` was used
  bool send_in_flight_ = false;
  bool shutdown_in_flight_ = false;
  io::OpTag connect_tag_{this, kConnect};
  io::OpTag recv_tag_{this, kRecv};
  io::OpTag send_tag_{this, kSend};
  io::OpTag shutdown_tag_{this, kShutdown};
  UniqueFd tcp_;
  sockaddr_storage dst_addr_{};
  io::Receiver rx_;  // multishot receive on the socket
  // Received from the stream, not yet written to the socket; a send in flight reads its front
  // blocks, which stay put while more is appended behind them. Fixed-size blocks from the
  // worker's pool: memory follows what is held, and a written block serves the next burst of
  // any stream (a vector that doubled left up to 4x the held bytes resident under a flood of
  // unread data, and kept a burst's size while its stream idled).
  hbone::OutputQueue out_;  // blocks from StreamBridges::blocks_
  // The send in flight when it gathers more than one block; made on the first such send and
  // dropped once the queue is empty, so that an idle stream does not carry it.
  struct GatherSend {
    std::array<iovec, kMaxSendBlocks> iov{};
    msghdr msg{};
  };
  std::unique_ptr<GatherSend> gather_;
  uint64_t budgeted_ = 0;  // this bridge's bytes in the budget and the gauge
  Clock::time_point start_;
  std::list<std::unique_ptr<StreamBridge>>::iterator self_;
};

// The worker's bridges.
class StreamBridges {
 public:
  explicit StreamBridges(RelayContext ctx) : ctx_(ctx) {}
  ~StreamBridges() = default;
  StreamBridges(const StreamBridges&) = delete;
  StreamBridges& operator=(const StreamBridges&) = delete;

  // A bridge for `tcp`, on `conn`'s stream when given (inbound), counted as active.
  StreamBridge* create(StreamCarrier* conn, UniqueFd tcp, Direction direction,
                       const std::string& pod);
  // Inbound bridges not already failing (re-authorized after a policy change).
  std::vector<StreamBridge*> openInbound() const;
  void describe(std::vector<ConnectionInfo>& out, Clock::time_point now) const;
  bool empty() const { return bridges_.empty(); }
  // Connects the inbound bridges whose connectApplication() came during the completion batch
  // just processed and that are still wanted. Called by the worker after each batch.
  void startDeferredConnects();
  // Over the buffered-bytes budget: resets this worker's bridges that hold the most (at least
  // the budget's shed floor each), largest first, until the total would be under the budget's
  // low-water mark. Called by the worker after each batch; cheap when under the budget.
  void shedOverBudget();

 private:
  friend class StreamBridge;
  // Frees b without an access log line (its socket went to a retry).
  void drop(StreamBridge* b);
  // Frees b with its access log line.
  void finish(StreamBridge* b);

  RelayContext ctx_;
  // The bridges' buffer blocks: 64 KiB each, up to 64 kept free (4 MiB per worker). Before
  // bridges_: it outlives them.
  hbone::BlockPool blocks_{64 * 1024, 64};
  std::list<std::unique_ptr<StreamBridge>> bridges_;
  std::vector<StreamBridge*> deferred_connects_;
  RateLimitedLog shed_log_;
};

}  // namespace nodemesh::tunnel
