#pragma once

// Internal to ztunnel/: the io_uring worker behind Tunnel. worker.cc holds the loop, the pods'
// listeners and the plain TCP relay (15001 to a non-mesh destination, 15006 to the
// application); hbone_relay.cc holds HBONE (15001 to a mesh destination over a pooled
// mTLS HTTP/2 connection, and 15008).
//
// One worker thread owns one ring. Every operation in flight carries a pointer to an OpTag
// embedded in its owner (listener, connection, bridge); an owner is freed only when none of
// its operations is in flight. Each direction of a relayed connection has at most one
// operation in flight, so memory per connection is bounded: one buffer per direction for
// plain TCP, the HTTP/2 stream window for HBONE. A slow reader slows the writer.

#include <liburing.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/fd.h"
#include "common/ip_address.h"
#include "model/snapshot.h"
#include "policy/authorizer.h"
#include "ztunnel/hbone/h2_session.h"
#include "ztunnel/hbone_transport.h"
#include "ztunnel/identity/spiffe_id.h"
#include "ztunnel/lb/endpoint_picker.h"
#include "ztunnel/recv_ring.h"
#include "ztunnel/tls_provider.h"
#include "ztunnel/tunnel.h"

namespace nodemesh::ztunnel::internal {

using Clock = std::chrono::steady_clock;

enum class OpKind : uint8_t {
  kWake,
  kTimer,
  kAccept,
  kAcceptBackoff,
  kConnect,
  kRecv,
  kSend,
  kShutdown,
  kHboneConnect,
  kHboneRecv,
  kHboneSend,
  kBridgeConnect,
  kBridgeRecv,
  kBridgeSend,
  kBridgeShutdown,
  kIgnore
};

struct OpTag {
  OpKind kind;
  void* owner;
  int half;  // direction index for the plain TCP relay
};

enum class ListenerKind { kOutbound, kInbound, kHbone };

struct Pod;

struct Listener {
  OpTag tag{OpKind::kAccept, this, 0};
  OpTag backoff_tag{OpKind::kAcceptBackoff, this, 0};
  __kernel_timespec backoff{0, 100 * 1000 * 1000};  // after EMFILE/ENFILE/ENOMEM
  UniqueFd fd;
  Pod* pod = nullptr;
  ListenerKind kind = ListenerKind::kOutbound;
  bool in_flight = false;
  bool closing = false;
};

struct Pod {
  uint64_t cookie = 0;
  std::string name;
  UniqueFd netns;
  std::vector<IpAddress> ips;
  std::optional<identity::SpiffeId> identity;
  std::vector<std::unique_ptr<Listener>> listeners;
  bool removed = false;
};

// A connection the client made to a service VIP:port: the endpoint picked for it, and what
// retries on other endpoints need. Owned by the Conn or Bridge carrying the current attempt;
// handed to the next attempt after a connect failure.
struct ServiceTarget {
  model::SnapshotPtr snapshot;  // keeps `service` and picked workloads alive
  const model::Service* service = nullptr;
  SocketAddress vip;               // what the client connected to
  uint64_t pod_cookie = 0;         // the client pod (its netns for the next attempt)
  std::vector<std::string> tried;  // workload uids tried so far
  lb::EndpointId endpoint;         // the current attempt's endpoint
  std::string endpoint_name;       // "namespace/name", for logs
  Clock::time_point attempt_start;
  bool outcome_reported = false;  // connectSucceeded / connectFailed told to the picker
  bool established = false;       // succeeded: connectionClosed owed at the end
};

// Plain TCP relay: one accepted socket and one upstream socket.
struct Half {
  OpTag recv_tag;
  OpTag send_tag;
  OpTag shut_tag;
  int from = -1;
  int to = -1;
  Receiver rx;  // multishot recv on `from`
  uint64_t bytes = 0;
  bool send_in_flight = false;
  bool shut_in_flight = false;
  bool done = false;  // EOF forwarded
};

struct Conn {
  OpTag connect_tag{OpKind::kConnect, this, 0};
  Half half[2];   // 0: client -> destination, 1: destination -> client
  UniqueFd down;  // accepted from the application or the remote client
  UniqueFd up;    // to the original destination, or the delivery socket
  bool connecting = false;
  bool aborting = false;
  ConnectionRecord record;
  sockaddr_storage dst_addr{};
  Clock::time_point start;
  std::unique_ptr<ServiceTarget> service;  // outbound to a service VIP
  std::list<std::unique_ptr<Conn>>::iterator self;
};

struct HboneConn;

// One HBONE stream joined to one TCP socket: the application's (outbound) or the delivery
// socket to the application (inbound).
struct Bridge {
  OpTag connect_tag{OpKind::kBridgeConnect, this, 0};
  OpTag recv_tag{OpKind::kBridgeRecv, this, 0};
  OpTag send_tag{OpKind::kBridgeSend, this, 0};
  OpTag shutdown_tag{OpKind::kBridgeShutdown, this, 0};
  HboneConn* conn = nullptr;  // null once the stream is gone
  hbone::StreamId stream = -1;
  UniqueFd tcp;
  sockaddr_storage dst_addr{};
  // TCP -> stream
  Receiver rx;             // multishot recv on the TCP socket
  bool tcp_eof = false;    // the TCP side half-closed; END_STREAM sent
  bool streaming = false;  // 200 seen / sent: data may flow
  // stream -> TCP
  std::vector<uint8_t> out;       // received, not yet handed to the TCP socket
  std::vector<uint8_t> inflight;  // being written (a separate buffer: `out` may grow meanwhile)
  size_t inflight_off = 0;
  bool peer_ended = false;  // END_STREAM received
  bool tcp_shut = false;    // shutdown(SHUT_WR) done
  // operations in flight
  bool connecting = false;
  bool send_in_flight = false;
  bool shutdown_in_flight = false;
  bool stream_closed = false;
  bool aborting = false;
  bool finished = false;
  ConnectionRecord record;
  Clock::time_point start;
  std::unique_ptr<ServiceTarget> service;  // outbound to a service VIP
  std::list<std::unique_ptr<Bridge>>::iterator self;
};

class Worker;

// One TLS + HTTP/2 connection to (client) or from (server) another pod's 15008.
struct HboneConn final : hbone::H2Handler {
  HboneConn(Worker& w, hbone::H2Role r) : worker(w), role(r) {}
  void onRequest(hbone::StreamId stream, const hbone::ConnectRequest& request) override;
  void onResponse(hbone::StreamId stream, int status) override;
  void onRequestRejected(hbone::StreamId stream, int status, std::string_view reason) override;
  void onData(hbone::StreamId stream, std::span<const uint8_t> data) override;
  void onEndStream(hbone::StreamId stream) override;
  void onStreamClosed(hbone::StreamId stream, uint32_t error_code) override;
  void onWritable(hbone::StreamId stream) override;
  void onGoaway(hbone::StreamId last_stream, uint32_t error_code) override;

  Worker& worker;
  hbone::H2Role role;
  OpTag connect_tag{OpKind::kHboneConnect, this, 0};
  OpTag recv_tag{OpKind::kHboneRecv, this, 0};
  OpTag send_tag{OpKind::kHboneSend, this, 0};
  UniqueFd fd;
  sockaddr_storage peer_addr{};
  SocketAddress peer;         // the other end of the TCP connection
  std::string pod;            // the local pod's name, for logs
  Pod* server_pod = nullptr;  // server: the pod whose 15008 accepted it
  std::string pool_key;       // client: where it sits in the pool
  std::unique_ptr<HboneTransport> transport;
  Receiver rx;                   // multishot recv on the socket
  std::vector<uint8_t> sendbuf;  // ciphertext being written (copied out of TLS: its buffer
  size_t send_off = 0;           // may grow while a write is in flight)
  bool handshake_counted = false;
  bool dirty = false;  // output may be pending: flushed after the completion batch
  Clock::time_point last_ping;
  bool connecting = false;
  bool send_in_flight = false;
  bool closing = false;
  bool dead = false;      // the socket failed: no more I/O
  bool draining = false;  // failed: no more reads, the last output (an alert, GOAWAY) leaves
                          // before the close
  std::string drain_reason;
  Clock::time_point drain_since;
  std::map<hbone::StreamId, Bridge*> streams;
  Clock::time_point idle_since;
  std::string error;
  std::list<std::unique_ptr<HboneConn>>::iterator self;
};

class Worker final : public Tunnel {
 public:
  Worker(const TunnelOptions& options, OrigDstResolver& resolver, TlsProvider* tls,
         AccessLogFn access_log, ConnectionOpenFn on_open = {});
  ~Worker() override;
  // The worker thread holds `this`.
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  Status init();
  Result<PodListenerFds> addPod(const PodSpec& spec) override;
  // With `outbound` false the pod gets no 15001 listener here (another worker owns it).
  Result<PodListenerFds> addPod(const PodSpec& spec, bool outbound);
  void removePod(uint64_t cookie) override;
  void setSnapshot(model::SnapshotPtr snapshot) override;
  // With the authorizer already built for the snapshot (Workers builds one for all workers).
  void setSnapshot(model::SnapshotPtr snapshot,
                   std::shared_ptr<const policy::Authorizer> authorizer);
  TunnelStats stats() const override;
  std::vector<ConnectionInfo> connections() const override;
  void stop() override;

  // ---- used by the HBONE callbacks (hbone_relay.cc) ----
  void onRequest(HboneConn* c, hbone::StreamId stream, const hbone::ConnectRequest& request);
  void onResponse(HboneConn* c, hbone::StreamId stream, int status);
  void onRequestRejected(HboneConn* c, int status, std::string_view reason);
  void onData(HboneConn* c, hbone::StreamId stream, std::span<const uint8_t> data);
  void onEndStream(HboneConn* c, hbone::StreamId stream);
  void onStreamClosed(HboneConn* c, hbone::StreamId stream, uint32_t error_code);
  void onWritable(HboneConn* c, hbone::StreamId stream);

 private:
  void wake() const;  // writes the eventfd only
  io_uring_sqe* sqe();
  void armWake();
  void armTimer();
  void armAccept(Listener* l);
  // A connect bounded by options_.connect_timeout (a linked timeout: the connect then
  // completes with -ECANCELED).
  void prepConnect(int fd, const sockaddr_storage& addr, socklen_t len, OpTag* tag);
  // The words for a failed connect's result ("timed out after 10000 ms" for the timeout).
  std::string connectFailure(int res);
  Status initRing();  // on the worker thread
  void run();
  // Busy polling (options_.busy_poll > 0): submits, then polls until a completion or pending
  // completion work shows up or the time runs out, yielding the CPU between looks so that the
  // pod's own processes on the agent's CPU still run. kReady: work was waiting already (no
  // poll, not counted); kFound: the poll found work, a sleep and wake-up saved; kExpired: it
  // found none, the worker sleeps.
  enum class PollResult { kReady, kFound, kExpired };
  PollResult pollBeforeWait();
  void handle(OpTag* tag, int res, unsigned flags);
  void onWake();
  void onTimer();
  void retirePod(uint64_t cookie);
  void closePod(Pod* pod);
  void reapPods();
  bool shutdownDone() const;
  model::SnapshotPtr snapshot() const;
  // A connection's addresses are known: tells the open hook (metrics).
  void opened(const ConnectionRecord& record);
  // Answers the pending connections() requests (worker_introspection.cc), from onWake.
  void answerConnectionRequests();
  std::shared_ptr<const policy::Authorizer> authorizer() const;

  // Inbound authorization (a connection to `r.dst` from `r.src` with `peer_identity`, empty
  // for a plaintext client): fills the record's verdict fields and returns whether it may
  // proceed. Counts denials.
  bool authorize(ConnectionRecord& r, const std::string& peer_identity);
  // After a policy change: closes the open inbound connections the new policies deny.
  void revokeDenied();

  // Service load balancing (worker.cc). Starts an attempt for the app's connection to
  // `target`'s service: an HBONE bridge or a plain TCP relay to the picked endpoint. On no
  // endpoint the app's connection is reset.
  void startServiceConnection(Pod* pod, UniqueFd app, const SocketAddress& app_addr,
                              std::unique_ptr<ServiceTarget> target, const std::string& last_error);
  // The attempt failed before the connection was established: tells the picker, and, when
  // attempts remain, moves the app's socket to a new attempt. Returns whether it retried.
  bool retryService(std::unique_ptr<ServiceTarget>& target, UniqueFd& app,
                    const SocketAddress& app_addr, const std::string& why);
  void serviceEstablished(ServiceTarget& target);
  void serviceEnded(ServiceTarget& target);

  // plain TCP relay (worker.cc)
  void onAccept(Listener* l, int res, unsigned flags);
  void startConn(Listener* l, UniqueFd fd);
  void startTcp(Conn* c, Pod* pod, const IpAddress* bind_ip, bool transparent, uint16_t avoid,
                uint32_t mark);
  void onConnect(Conn* c, int res);  // provided-buffer multishot receives (worker.cc)
  void armRecv(Receiver& rx);
  void onReceive(Receiver& rx, int res, unsigned flags);
  void consumeRecv(Receiver& rx, size_t n);
  void releaseRecv(Receiver& rx);
  void rearmStarved();
  void onRecv(Conn* c, int i, int res, unsigned flags);
  bool pumpHalf(Conn* c, int i);
  void onSend(Conn* c, int i, int res);
  void onShutdown(Conn* c, int i, int res);
  void abort(Conn* c, const std::string& why);
  void maybeFinish(Conn* c);
  void finish(Conn* c);
  Conn* newConn(Listener* l, UniqueFd fd);
  Conn* newConn(Direction direction, const std::string& pod, UniqueFd fd);
  // Frees a connection whose attempt was handed to a retry: no access log, nothing in flight.
  void dropConn(Conn* c);

  // HBONE (hbone_relay.cc)
  void startOutboundHbone(Pod* pod, UniqueFd app, const SocketAddress& app_addr,
                          const SocketAddress& dst, const model::Workload& dst_workload,
                          std::unique_ptr<ServiceTarget> service = nullptr);
  void acceptHbone(Listener* l, UniqueFd fd);
  HboneConn* pooledConn(Pod* pod, const identity::SpiffeId& dst_id, const SocketAddress& dst,
                        std::string* error);
  void hboneRecv(HboneConn* c);
  void onHboneConnect(HboneConn* c, int res);
  void onHboneRecv(HboneConn* c, int res, unsigned flags);
  void feedHbone(HboneConn* c);
  void onHboneSend(HboneConn* c, int res);
  void flush(HboneConn* c);
  void markDirty(HboneConn* c);
  void flushDirty();
  // Ends the connection; `reset` (the default for failures) closes with an RST.
  void failHbone(HboneConn* c, const std::string& why, bool reset = true);
  void drainAndFail(HboneConn* c, const std::string& why);
  void maybeReleaseHbone(HboneConn* c);
  void finishBridge(Bridge* b);
  void closeIdleHbone();
  Bridge* newBridge(HboneConn* c, UniqueFd tcp, Direction direction, const std::string& pod);
  void dropBridge(Bridge* b);
  Bridge* bridgeFor(HboneConn* c, hbone::StreamId stream);
  void bridgeRecv(Bridge* b);
  void bridgeSend(Bridge* b);
  void bridgePushToStream(Bridge* b);
  void onBridgeConnect(Bridge* b, int res);
  void onBridgeRecv(Bridge* b, int res, unsigned flags);
  void onBridgeSend(Bridge* b, int res);
  void onBridgeShutdown(Bridge* b, int res);
  void abortBridge(Bridge* b, const std::string& why);
  void maybeFinishBridge(Bridge* b);

  TunnelOptions options_;
  OrigDstResolver& resolver_;
  TlsProvider* tls_;
  AccessLogFn access_log_;

  io_uring ring_{};
  bool ring_ready_ = false;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  UniqueFd wake_fd_;
  uint64_t wake_buf_ = 0;
  OpTag wake_tag_{OpKind::kWake, nullptr, 0};
  OpTag timer_tag_{OpKind::kTimer, nullptr, 0};
  OpTag ignore_tag_{OpKind::kIgnore, nullptr, 0};
  __kernel_timespec timer_interval_{1, 0};
  __kernel_timespec connect_timeout_{};
  bool timer_in_flight_ = false;

  // A pod to add (pod set) or to remove (pod null), queued by the agent's thread.
  struct Command {
    uint64_t cookie;
    std::unique_ptr<Pod> pod;
  };
  std::mutex mu_;
  std::vector<Command> commands_;

  // connections() requests, answered by the worker thread (worker_introspection.cc).
  struct ConnectionsRequest {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::vector<ConnectionInfo> connections;
  };
  mutable std::mutex requests_mu_;
  mutable std::vector<std::shared_ptr<ConnectionsRequest>> requests_;
  ConnectionOpenFn on_open_;

  mutable std::mutex snapshot_mu_;
  model::SnapshotPtr snapshot_;
  std::shared_ptr<const policy::Authorizer> authorizer_;
  std::atomic<bool> policy_changed_{false};
  lb::EndpointPicker picker_;

  std::unordered_map<uint64_t, std::unique_ptr<Pod>> pods_;
  std::list<std::unique_ptr<Pod>> retired_;
  std::list<std::unique_ptr<Conn>> conns_;
  std::list<std::unique_ptr<HboneConn>> hbone_conns_;
  std::multimap<std::string, HboneConn*> pool_;
  std::vector<HboneConn*> dirty_;
  std::vector<HboneConn*> flushing_;             // flushDirty's batch
  std::mt19937_64 rng_{std::random_device{}()};  // trace ids
  std::list<std::unique_ptr<Bridge>> bridges_;
  std::unique_ptr<BufferRing> buffers_;        // TCP sockets (applications, plain relay)
  std::unique_ptr<BufferRing> hbone_buffers_;  // HBONE sockets
  std::vector<Receiver*> starved_;             // stopped by ENOBUFS, waiting for buffers

  std::atomic<uint64_t> accepted_outbound_{0};
  std::atomic<uint64_t> accepted_inbound_{0};
  std::atomic<uint64_t> accepted_hbone_{0};
  std::atomic<uint64_t> completed_{0};
  std::atomic<uint64_t> failed_no_orig_dst_{0};
  std::atomic<uint64_t> failed_connect_{0};
  std::atomic<uint64_t> failed_io_{0};
  std::atomic<uint64_t> active_{0};
  std::atomic<uint64_t> bytes_to_dst_{0};
  std::atomic<uint64_t> bytes_from_dst_{0};
  std::atomic<uint64_t> tls_handshakes_client_{0};
  std::atomic<uint64_t> tls_handshakes_server_{0};
  std::atomic<uint64_t> tls_handshake_failures_{0};
  std::atomic<uint64_t> hbone_streams_opened_{0};
  std::atomic<uint64_t> hbone_streams_accepted_{0};
  std::atomic<uint64_t> hbone_streams_rejected_{0};
  std::atomic<uint64_t> hbone_pool_size_{0};
  std::atomic<uint64_t> denied_{0};
  std::atomic<uint64_t> closed_by_policy_{0};
  std::atomic<uint64_t> connect_retries_{0};
  std::atomic<uint64_t> connect_timeouts_{0};
  std::atomic<uint64_t> busy_poll_hits_{0};
  std::atomic<uint64_t> busy_poll_misses_{0};
};

}  // namespace nodemesh::ztunnel::internal
