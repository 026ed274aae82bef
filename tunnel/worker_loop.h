#pragma once

// One worker thread's data path: its io_uring and everything its completions drive (the pods'
// listeners, the TCP relay, the stream bridges, the HBONE pool, the service dialer, inbound
// authorization). Built and run on the worker's thread (the ring is single-issuer); the rest of
// the process reaches it only through its Mailbox.

#include <linux/time_types.h>

#include <memory>

#include "common/result.h"
#include "io/recv_ring.h"
#include "io/uring_ring.h"
#include "tunnel/hbone_pool.h"
#include "tunnel/inbound.h"
#include "tunnel/inbound_authorizer.h"
#include "tunnel/mailbox.h"
#include "tunnel/mesh_state.h"
#include "tunnel/outbound.h"
#include "tunnel/pod_listeners.h"
#include "tunnel/service_dialer.h"
#include "tunnel/stream_bridge.h"
#include "tunnel/tcp_relay.h"

namespace nodemesh::tunnel {

// What the worker owns and its loop uses; outlives the loop.
struct WorkerShared {
  const TunnelOptions& options;
  OrigDstResolver& resolver;
  hbone::TlsProvider* tls;  // null: plain TCP only
  const MeshState& mesh;
  TunnelCounters& counters;
  Mailbox& mailbox;
  const AccessLogFn& access_log;
  const ConnectionOpenFn& on_open;
  ConnectionLimits* limits;  // null: no per-workload caps
  BufferBudget& budget;
};

class WorkerLoop final : public PodHandler, public ConnectionEvents, public io::CompletionHandler {
 public:
  // On the worker's thread.
  static Result<std::unique_ptr<WorkerLoop>> create(const WorkerShared& shared);
  ~WorkerLoop() override = default;
  WorkerLoop(const WorkerLoop&) = delete;
  WorkerLoop& operator=(const WorkerLoop&) = delete;

  // Until the mailbox says stop and everything has closed.
  void run();

  // PodHandler
  void onAccepted(Listener& listener, UniqueFd fd) override;
  void onRetiring(Pod& pod) override;
  // ConnectionEvents
  void opened(const ConnectionRecord& record) override;
  void finished(const ConnectionRecord& record) override;

 private:
  WorkerLoop(const WorkerShared& shared, std::unique_ptr<io::UringRing> ring,
             std::unique_ptr<io::BufferRing> app_buffers,
             std::unique_ptr<io::BufferRing> hbone_buffers);
  enum Op : uint8_t { kWake, kTimer };
  void onCompletion(uint8_t op, int res, unsigned flags) override;
  void armWake();
  void armTimer();
  void onWake();
  void onTimer();
  bool shutdownDone() const;
  std::vector<ConnectionInfo> describeConnections() const;

  WorkerShared shared_;
  // Members in construction order: each may use the ones above it.
  std::unique_ptr<io::UringRing> ring_;
  std::unique_ptr<io::BufferRing> app_buffers_;    // application-facing sockets, the plain relay
  std::unique_ptr<io::BufferRing> hbone_buffers_;  // HBONE sockets
  io::Receivers receivers_;
  PodListeners pods_;
  ServiceDialer dialer_;  // its Connector is outbound_, used only once the loop runs
  SplicePipes pipes_;     // the plain relay's, with TunnelOptions::splice
  RelayContext ctx_;
  TcpRelay relay_;
  StreamBridges bridges_;
  InboundAuthorizer authorizer_;
  Inbound inbound_;
  std::unique_ptr<HbonePool> pool_;  // with TLS only
  Outbound outbound_;

  io::OpTag wake_tag_{this, kWake};
  io::OpTag timer_tag_{this, kTimer};
  uint64_t wake_buf_ = 0;
  __kernel_timespec timer_interval_{1, 0};
  bool timer_in_flight_ = false;
  bool draining_ = false;         // an upgrade's drain (Mailbox::postDrain())
  bool accepts_stopped_ = false;  // ... and its cancelled accepts have all completed
};

}  // namespace nodemesh::tunnel
