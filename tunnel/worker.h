#pragma once

// A Tunnel on one worker thread: the thread-safe face of a WorkerLoop. Pods are prepared on the
// caller's thread (their listeners are made inside the pod's namespace) and posted to the
// loop; the config in force is shared through MeshState; counters are atomics the loop bumps.

#include <memory>
#include <thread>

#include "tunnel/buffer_budget.h"
#include "tunnel/mailbox.h"
#include "tunnel/mesh_state.h"
#include "tunnel/tunnel.h"
#include "tunnel/tunnel_stats.h"

namespace nodemesh::tunnel {

class Worker final : public Tunnel {
 public:
  Worker(const TunnelOptions& options, OrigDstResolver& resolver, hbone::TlsProvider* tls,
         AccessLogFn access_log, ConnectionOpenFn on_open,
         std::shared_ptr<ConnectionLimits> limits = nullptr,
         std::shared_ptr<BufferBudget> budget = nullptr);
  ~Worker() override;
  // The worker thread holds `this`.
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread and its loop; fails when the ring cannot be made.
  Status init();
  Result<PodListenerFds> addPod(const PodSpec& spec) override;
  // With `outbound` false the pod gets no 15001 listener here (another worker owns it);
  // `inherited`: sockets handed over by the previous agent for this worker (createPod()).
  Result<PodListenerFds> addPod(const PodSpec& spec, bool outbound,
                                std::vector<InheritedListener>* inherited = nullptr);
  void removePod(uint64_t cookie) override;
  void setSnapshot(model::SnapshotPtr snapshot) override;
  // With the authorizer already built for the snapshot (Workers builds one for all workers).
  void setSnapshot(model::SnapshotPtr snapshot,
                   std::shared_ptr<const policy::Authorizer> authorizer);
  TunnelStats stats() const override { return counters_.snapshot(); }
  std::vector<ConnectionInfo> connections() const override;
  void stop() override;
  void drain() override;
  bool acceptsStopped() const override { return !mailbox_ || mailbox_->acceptsStopped(); }
  void restartAccepts() override;

 private:
  TunnelOptions options_;
  OrigDstResolver& resolver_;
  hbone::TlsProvider* tls_;
  AccessLogFn access_log_;
  ConnectionOpenFn on_open_;
  std::shared_ptr<ConnectionLimits> limits_;  // shared by the workers; null: no caps
  std::shared_ptr<BufferBudget> budget_;      // shared by the workers
  MeshState mesh_;
  TunnelCounters counters_;
  std::unique_ptr<Mailbox> mailbox_;
  std::thread thread_;
};

}  // namespace nodemesh::tunnel
