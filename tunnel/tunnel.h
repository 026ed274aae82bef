#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "capture_abi.h"
#include "common/fd.h"
#include "common/ip_address.h"
#include "common/result.h"
#include "hbone/h2_session.h"
#include "identity/spiffe_id.h"
#include "model/snapshot.h"
#include "tunnel/connection_limits.h"
#include "tunnel/tunnel_stats.h"

namespace nodemesh::hbone {
class TlsProvider;
}  // namespace nodemesh::hbone

namespace nodemesh::tunnel {

struct TunnelOptions {
  // io_uring worker threads; 0 = one per CPU the agent may run on (sched_getaffinity).
  unsigned workers = 0;
  uint32_t outbound_mark = NM_MARK_OUTBOUND;  // every socket the tunnel owns
  uint32_t delivery_mark = NM_MARK_DELIVERY;  // the tunnel's connections to applications
  uint16_t outbound_port = NM_PORT_OUTBOUND;
  uint16_t inbound_port = NM_PORT_INBOUND;
  uint16_t hbone_port = NM_PORT_HBONE;
  // This node's name: load balancing prefers endpoints by locality, the node included.
  std::string node;
  // A connect (TCP to a destination, or to a peer's 15008) that has not completed by then
  // fails, and is retried on another endpoint when the destination is a service (ztunnel:
  // a fixed 10 s).
  std::chrono::milliseconds connect_timeout{10000};
  // Endpoints tried per connection to a service: the first pick plus retries on different
  // endpoints after a connect failure or refusal.
  unsigned connect_attempts = 3;
  // A pooled HBONE connection with no stream for this long is closed (ztunnel: 5 minutes).
  std::chrono::seconds pool_idle_timeout{300};
  // An accepted HBONE connection (a pod's 15008) with no stream for this long gets GOAWAY and
  // is closed, so that a peer cannot hold file descriptors with idle connections. Longer than
  // the clients' pool_idle_timeout, so a well-behaved peer closes first.
  std::chrono::seconds server_idle_timeout{360};
  // Accepted HBONE connections whose TLS handshake is still pending, over all workers (each
  // worker gets its share): at the bound, a new one sheds the oldest pending one, so a peer
  // that opens handshakes and stalls holds a bounded amount of memory (about 53 KB each) and
  // cannot keep quick handshakes out.
  unsigned max_pending_handshakes = 512;
  // The budget for bytes HBONE peers sent that applications have not read yet, over all
  // workers (buffer_budget.h): at the budget new streams from peers that hold much get 503, over
  // it the streams holding the most are reset. 0: no budget.
  uint64_t max_buffered_bytes = uint64_t{256} << 20;
  // Same-node fast path: a connection from an enrolled pod to another pod enrolled on this node
  // (no waypoint) is delivered straight from the client's socket to one the agent connects in
  // the server pod, with the server's policy, caps, access log and metrics as over HBONE, but
  // without TLS or HTTP/2 (Transport::kLocal).
  bool same_node_fast_path = true;
  // The plain TCP relay (the fast path, passthrough to destinations outside the mesh, plain
  // inbound) moves bytes with splice(2) through a pipe per direction instead of receiving them
  // into the agent's buffers and sending them again: no copy through user space. A pipe holds
  // at most `splice_pipe_bytes` per direction (0: the kernel's default, 64 KiB).
  bool splice = false;
  size_t splice_pipe_bytes = 0;
  // An HBONE connection whose TLS handshake has not finished by then is closed (a peer that
  // stalls mid-handshake must not hold a connection forever).
  std::chrono::seconds handshake_timeout{10};
  // The HTTP/2 sessions of HBONE connections, both sides: flow-control windows, concurrent
  // streams, and the flood bounds (hbone/h2_session.h; the agent's --hbone-* flags).
  hbone::H2Options h2;
  // Idle pooled connections are probed with an HTTP/2 PING this often.
  std::chrono::seconds keepalive_interval{30};
  // The routing table, in each pod's netns, that brings the application's replies to a
  // delivery socket bound to the client's address (see inpod_routing.h).
  uint32_t delivery_route_table = 15006;
  // Receive buffers, per worker, in io_uring provided buffer rings shared by its sockets
  // (multishot recv): an idle connection holds none, a busy socket at most 4. A full consumer
  // stops reading, so a slow reader slows the writer (TCP flow control). HBONE sockets get 16 KiB
  // buffers, one TLS record each; the pods' sockets fewer, larger ones (the same 2 MiB), so a
  // receive moves up to 64 KiB (faster with 4 streams and in the same-node relay: bench/README.md).
  unsigned hbone_recv_buffer_count = 128;  // a power of two
  size_t hbone_recv_buffer_bytes = 16 * 1024;
  unsigned app_recv_buffer_count = 32;  // a power of two
  size_t app_recv_buffer_bytes = 64 * 1024;
  unsigned ring_entries = 1024;
  // Opt-in busy polling: before a worker sleeps for completions it polls its ring this long
  // (0: never). A worker that is still running when a socket turns ready needs no wake-up,
  // which on a VM whose idle vCPUs halt costs 25-50 us each; the price is a CPU kept busy for
  // up to this long after each burst of work (docs/tunnel.md, bench/README.md).
  std::chrono::microseconds busy_poll{0};
  // Adaptive: polls only while they find work (poll_backoff.h); fixed: before every sleep.
  bool busy_poll_adaptive = true;
  // Per-workload caps on inbound connections (15006 and 15008), over all workers; the
  // defaults cap nothing (connection_limits.h, docs/tunnel.md).
  InboundLimits inbound_limits;
};

// Where the tunnel learns the original destination of a captured outbound connection.
// Implemented by the agent over the BPF orig_dst map; tests substitute their own.
class OrigDstResolver {
 public:
  virtual ~OrigDstResolver() = default;
  // `app` is the application socket's address (the accepted connection's peer). Each
  // connection is resolved once; the entry may be consumed.
  virtual std::optional<SocketAddress> takeOrigDst(uint64_t netns_cookie,
                                                   const SocketAddress& app) = 0;
};

// One enrolled pod, as the tunnel needs it.
struct PodSpec {
  uint64_t netns_cookie = 0;
  int netns_fd = -1;           // borrowed for the call; the tunnel keeps its own duplicate
  std::string name;            // "namespace/name", for logs
  bool ipv6 = false;           // the pod has IPv6 addresses: create IPv6 listeners too
  std::vector<IpAddress> ips;  // the pod's addresses: HBONE CONNECT targets must be one of them
  // The workload's SPIFFE identity. With one (and a TlsProvider), the pod gets a 15008 HBONE
  // listener and talks HBONE to mesh destinations; without, it is relayed as plain TCP.
  std::optional<identity::SpiffeId> identity;
};

enum class ListenerKind : uint8_t { kOutbound, kInbound, kHbone };

// One listening socket of a pod, as its worker made it.
struct ListenerFd {
  ListenerKind kind = ListenerKind::kOutbound;
  bool ipv6 = false;
  int fd = -1;
};

// A pod's listening socket handed from one agent process to the next (an upgrade, see
// agent/handoff.h): the same socket, so its accept queue and its place in the capture maps
// carry over and no connection attempt meets a closed port.
struct InheritedListener {
  uint64_t netns_cookie = 0;
  ListenerKind kind = ListenerKind::kOutbound;
  bool ipv6 = false;
  UniqueFd fd;
};

// The pod's listening sockets, owned by the tunnel and valid until removePod(); -1 = absent.
struct PodListenerFds {
  int outbound_v4 = -1;         // 127.0.0.1:15001
  int outbound_v6 = -1;         // [::1]:15001
  int inbound_v4 = -1;          // 0.0.0.0:15006
  int inbound_v6 = -1;          // [::]:15006 (IPv6 only)
  int hbone_v4 = -1;            // 0.0.0.0:15008
  int hbone_v6 = -1;            // [::]:15008 (IPv6 only)
  std::vector<ListenerFd> all;  // every listener, of every worker
};

enum class Direction { kOutbound, kInbound };

// How a connection crossed the mesh. kLocal: client and server pods on this node, joined in
// the agent without HBONE (TunnelOptions::same_node_fast_path); the agent knows both identities
// as surely as HBONE's mutual TLS would have shown them.
enum class Transport { kTcp, kHbone, kLocal };

// Whether the record's identities are proven (HBONE's mutual TLS, or both pods this agent's).
inline bool identitiesProven(Transport t) {
  return t != Transport::kTcp;
}
// "tcp", "hbone" or "local": the access log's and the admin API's word.
inline const char* transportName(Transport t) {
  switch (t) {
    case Transport::kHbone:
      return "hbone";
    case Transport::kLocal:
      return "local";
    case Transport::kTcp:
      break;
  }
  return "tcp";
}

// One finished connection, for the access log.
struct ConnectionRecord {
  Direction direction = Direction::kOutbound;
  std::string pod;
  SocketAddress src;  // the client
  SocketAddress dst;  // the original destination
  uint64_t bytes_to_dst = 0;
  uint64_t bytes_from_dst = 0;
  std::chrono::milliseconds duration{0};
  std::string error;  // empty when both directions closed cleanly
  Transport transport = Transport::kTcp;
  std::string src_identity;  // SPIFFE IDs, HBONE only ("" when unknown)
  std::string dst_identity;
  // Outbound to a service VIP: the service ("namespace/hostname") and the VIP:port the client
  // asked for; `dst` is then the endpoint that served it.
  std::string dst_service;
  std::optional<SocketAddress> service_addr;
  unsigned attempts = 0;  // endpoints tried (service connections)
  // Sent through a waypoint: its workload ("namespace/name"); `dst` stays the original
  // destination and `dst_identity` is the waypoint's.
  std::string waypoint;
  // Inbound authorization: a denied connection never reaches the application.
  bool denied = false;
  std::string policy;  // the policy that decided ("namespace/name"), empty when none did
  std::string reason;  // the verdict in words
};

// One open connection, as the admin API's /connections lists it: a copy taken by the worker
// that owns the connection, between two batches of completions.
struct ConnectionInfo {
  Direction direction = Direction::kOutbound;
  std::string pod;
  SocketAddress src;
  SocketAddress dst;        // for a service connection, the endpoint picked
  std::string dst_service;  // "namespace/hostname" when connected through a service VIP
  Transport transport = Transport::kTcp;
  std::string src_identity;
  std::string dst_identity;
  uint64_t bytes_to_dst = 0;  // written to the destination so far
  uint64_t bytes_from_dst = 0;
  std::chrono::milliseconds age{0};
  // "connecting" (waiting for the destination / the CONNECT answer), "open", or "closing"
  // (one direction finished, or aborted and waiting for operations in flight).
  std::string state;
};

using AccessLogFn = std::function<void(const ConnectionRecord&)>;
// Called on a worker thread as soon as a connection's addresses are known (its record has
// direction, pod, src, dst, transport and, for HBONE, the identities), before any byte is
// relayed: metrics count it as opened. Every connection reported here is reported again to the
// AccessLogFn when it finishes. Must be quick: it runs on the data path.
using ConnectionOpenFn = std::function<void(const ConnectionRecord&)>;

// The node's tunnel: in-pod listeners and the connections accepted on them. Thread-safe.
class Tunnel {
 public:
  virtual ~Tunnel() = default;
  // Creates the pod's listeners inside its network namespace and starts accepting.
  virtual Result<PodListenerFds> addPod(const PodSpec& pod) = 0;
  // Stops accepting for the pod and closes its listeners; open connections finish.
  virtual void removePod(uint64_t netns_cookie) = 0;
  // The mesh as the config describes it: how to reach each destination (HBONE or TCP) and
  // which identity to expect there. Thread-safe; applies to new connections.
  virtual void setSnapshot(model::SnapshotPtr snapshot) = 0;
  virtual TunnelStats stats() const = 0;
  // The open connections. Each worker copies its own between two batches of completions (the
  // request is posted to its loop, so the data path takes no lock and keeps no extra
  // per-connection state for it); waits at most about a second per worker. Off the data path:
  // for the admin API.
  virtual std::vector<ConnectionInfo> connections() const { return {}; }
  // Closes everything and joins the worker threads. Idempotent.
  virtual void stop() = 0;

  // ---- upgrades (agent/handoff.h, docs/agent.md) ----
  // The listening sockets of every pod, duplicated, for the next agent process.
  virtual std::vector<InheritedListener> exportListeners() const { return {}; }
  // Sockets handed over by the previous agent process: a pod added from now on with one of
  // these cookies takes its sockets instead of making new ones. A tunnel that cannot adopt
  // closes them.
  virtual void adoptListeners(std::vector<InheritedListener> listeners) { listeners.clear(); }
  // Closes the adopted sockets that no pod took (pods gone meanwhile); returns how many.
  virtual size_t dropUnadoptedListeners() { return 0; }
  // The next agent took over: stop accepting (connections already queued on the shared
  // sockets go to it), leave each pod's delivery routing in place for it, and ask HBONE peers
  // to open new streams elsewhere (GOAWAY). Open connections go on until they end or stop().
  virtual void drain() {}
  // After drain(): true once none of this tunnel's accepts is pending any more (the cancelled
  // ones have completed). From then on a connection queued on a shared socket wakes only the
  // next agent's accept.
  virtual bool acceptsStopped() const { return true; }
  // The previous agent's accepts are gone (agent/handoff.h, "stopped"): every listener's
  // accept is armed again, which takes at once the connections queued meanwhile.
  virtual void restartAccepts() {}
};

// One per CPU this process may run on.
unsigned defaultWorkerCount();

// The io_uring implementation (tunnel/worker.cc). Without a TlsProvider every connection is
// relayed as plain TCP (no 15008).
Result<std::unique_ptr<Tunnel>> startTunnel(const TunnelOptions& options, OrigDstResolver& resolver,
                                            hbone::TlsProvider* tls, const AccessLogFn& access_log);
// The same, with a hook for connections as they open (metrics).
Result<std::unique_ptr<Tunnel>> startTunnel(const TunnelOptions& options, OrigDstResolver& resolver,
                                            hbone::TlsProvider* tls, const AccessLogFn& access_log,
                                            const ConnectionOpenFn& on_open);

}  // namespace nodemesh::tunnel
