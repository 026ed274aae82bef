// Several workers, one ring and one thread each, behind one Tunnel; and startTunnel().
#include <sched.h>

#include <algorithm>

#include "tunnel/worker.h"

namespace nodemesh::tunnel {
namespace {

// A pod's inbound listeners (15006, 15008) exist once per worker in an SO_REUSEPORT group: the
// kernel spreads inbound connections over the group (after sk_lookup picked the registered
// member). Its outbound listener (15001) belongs to one worker, chosen by netns cookie: the
// HBONE pool is per worker, so keeping a pod's outbound connections on one worker keeps them on
// one pool (a new connection costs a stream, not a handshake); different pods spread over the
// workers.
class Workers final : public Tunnel {
 public:
  explicit Workers(std::vector<std::unique_ptr<Worker>> workers) : workers_(std::move(workers)) {}
  ~Workers() override { stop(); }
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  Result<PodListenerFds> addPod(const PodSpec& pod) override {
    const size_t owner = pod.netns_cookie % workers_.size();
    PodListenerFds result;
    for (size_t i = 0; i < workers_.size(); ++i) {
      auto fds = workers_[i]->addPod(pod, /*outbound=*/i == owner);
      if (!fds) {
        for (size_t j = 0; j < i; ++j) workers_[j]->removePod(pod.netns_cookie);
        return fds.error();
      }
      if (i == 0) result = *fds;  // the inbound groups' registered members
      if (i == owner) {
        result.outbound_v4 = fds->outbound_v4;
        result.outbound_v6 = fds->outbound_v6;
      }
    }
    return result;
  }
  void removePod(uint64_t netns_cookie) override {
    for (auto& w : workers_) w->removePod(netns_cookie);
  }
  void setSnapshot(model::SnapshotPtr snapshot) override {
    // One authorizer for all workers: built once per config version.
    auto authorizer = snapshot ? std::make_shared<const policy::Authorizer>(snapshot) : nullptr;
    for (auto& w : workers_) w->setSnapshot(snapshot, authorizer);
  }
  TunnelStats stats() const override {
    TunnelStats sum;
    for (const auto& w : workers_) sum += w->stats();
    return sum;
  }
  std::vector<ConnectionInfo> connections() const override {
    std::vector<ConnectionInfo> all;
    for (const auto& w : workers_) {
      auto some = w->connections();
      all.insert(all.end(), std::make_move_iterator(some.begin()),
                 std::make_move_iterator(some.end()));
    }
    return all;
  }
  void stop() override {
    for (auto& w : workers_) w->stop();
  }

 private:
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace

unsigned defaultWorkerCount() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
}

Result<std::unique_ptr<Tunnel>> startTunnel(const TunnelOptions& options, OrigDstResolver& resolver,
                                            hbone::TlsProvider* tls,
                                            const AccessLogFn& access_log) {
  return startTunnel(options, resolver, tls, access_log, {});
}

Result<std::unique_ptr<Tunnel>> startTunnel(const TunnelOptions& options, OrigDstResolver& resolver,
                                            hbone::TlsProvider* tls, const AccessLogFn& access_log,
                                            const ConnectionOpenFn& on_open) {
  TunnelOptions opts = options;
  if (opts.workers == 0) opts.workers = defaultWorkerCount();
  opts.max_pending_handshakes = std::max(1U, opts.max_pending_handshakes / opts.workers);
  // One set of per-workload caps for all workers: a pod's inbound connections land on any.
  static const RealSteadyClock kClock;
  auto limits = opts.inbound_limits.enabled()
                    ? std::make_shared<ConnectionLimits>(opts.inbound_limits, kClock)
                    : nullptr;
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < opts.workers; ++i) {
    auto worker = std::make_unique<Worker>(opts, resolver, tls, access_log, on_open, limits);
    if (auto st = worker->init(); !st) return st.error();
    workers.push_back(std::move(worker));
  }
  if (workers.size() == 1) return std::unique_ptr<Tunnel>(std::move(workers.front()));
  return std::unique_ptr<Tunnel>(std::make_unique<Workers>(std::move(workers)));
}

}  // namespace nodemesh::tunnel
