#pragma once

// The waypoint's event loop: one thread, one io_uring ring (io/), the 15008 listener, the
// HBONE connections both ways and the proxy between them. Other threads talk to it through
// setSnapshot() and stop(), which wake it with an eventfd; stats() is a copy taken once a
// tick (100 ms) and at the end.

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "common/fd.h"
#include "common/result.h"
#include "hbone/tls_provider.h"
#include "io/recv_ring.h"
#include "io/uring_ring.h"
#include "model/snapshot.h"
#include "waypoint/proxy/hbone_conn.h"
#include "waypoint/proxy/proxy.h"

namespace nodemesh::waypoint {

struct LoopOptions {
  SocketAddress listen{IpAddress::parse("0.0.0.0").value(), 15008};
  unsigned ring_entries = 4096;
  unsigned recv_buffers = 1024;
  size_t recv_buffer_bytes = 16 * 1024;
  HboneConnOptions hbone;
  std::chrono::milliseconds request_timeout{30000};  // see Proxy::setRequestTimeout
  Http1UpstreamPoolOptions upstream;                 // see Proxy::setUpstreamOptions
  RetryBudgetOptions retry_budget;                   // see Proxy::setRetryBudget
};

struct LoopStats {
  HboneConnStats connections;
  ProxyStats proxy;
};

class Loop final : public io::CompletionHandler {
 public:
  // Binds the listener (so a busy port fails the start) and starts the thread.
  // `telemetry` (may be null) must outlive the loop.
  static Result<std::unique_ptr<Loop>> start(const LoopOptions& options, hbone::TlsProvider& tls,
                                             identity::SpiffeId self, std::string self_uid,
                                             model::SnapshotPtr snapshot,
                                             RequestTelemetry* telemetry);
  ~Loop() override;  // stops and joins
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  void setSnapshot(model::SnapshotPtr snapshot);
  void stop();
  LoopStats stats() const;

 private:
  enum Op : uint8_t { kAccept, kWake, kTimer, kRetryTimer };
  Loop(const LoopOptions& options, hbone::TlsProvider& tls, identity::SpiffeId self,
       std::string self_uid);
  void run();
  void onCompletion(uint8_t op, int res, unsigned flags) override;
  void onWake();
  void publishStats();
  // Sets the retry timer (a timerfd read on the ring) to the proxy's next retry, if changed.
  void armRetryTimer();

  LoopOptions options_;
  hbone::TlsProvider& tls_;
  identity::SpiffeId self_;
  UniqueFd listen_fd_;
  UniqueFd wake_fd_;
  std::unique_ptr<io::UringRing> ring_;
  std::unique_ptr<io::BufferRing> buffers_;
  std::unique_ptr<io::Receivers> receivers_;
  Proxy proxy_;
  std::unique_ptr<HboneConns> conns_;
  io::OpTag accept_tag_{this, kAccept};
  io::OpTag wake_tag_{this, kWake};
  io::OpTag timer_tag_{this, kTimer};
  io::OpTag retry_tag_{this, kRetryTimer};
  uint64_t wake_buf_ = 0;
  // Retry backoffs are shorter than the tick: a timerfd set to the earliest one.
  UniqueFd retry_fd_;
  uint64_t retry_buf_ = 0;
  std::optional<Clock::time_point> retry_armed_;
  // Route timeouts are checked on this tick, so it is their resolution.
  __kernel_timespec timer_interval_{0, 100'000'000};
  bool stopping_ = false;

  mutable std::mutex mu_;  // guards the three below
  model::SnapshotPtr pending_snapshot_;
  bool stop_requested_ = false;
  LoopStats stats_;
  std::thread thread_;
};

}  // namespace nodemesh::waypoint
