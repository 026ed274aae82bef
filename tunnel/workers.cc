// Several workers, one ring and one thread each, behind one Tunnel; and startTunnel().
#include <sched.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>

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
    // Held until the pod is posted: exportListeners() sees either the pod's sockets or none,
    // never a descriptor a worker may be closing.
    std::lock_guard<std::mutex> lock(listeners_mu_);
    const size_t owner = pod.netns_cookie % workers_.size();
    auto inherited = takeInherited(pod.netns_cookie, owner);
    PodListenerFds result;
    std::vector<ListenerFd> all;
    for (size_t i = 0; i < workers_.size(); ++i) {
      auto fds = workers_[i]->addPod(pod, /*outbound=*/i == owner,
                                     inherited.empty() ? nullptr : &inherited[i]);
      if (!fds) {
        for (size_t j = 0; j < i; ++j) workers_[j]->removePod(pod.netns_cookie);
        listeners_.erase(pod.netns_cookie);
        return fds.error();
      }
      if (i == 0) result = *fds;  // the inbound groups' registered members
      if (i == owner) {
        result.outbound_v4 = fds->outbound_v4;
        result.outbound_v6 = fds->outbound_v6;
      }
      all.insert(all.end(), fds->all.begin(), fds->all.end());
    }
    result.all = all;
    listeners_[pod.netns_cookie] = std::move(all);
    return result;
  }
  void removePod(uint64_t netns_cookie) override {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    listeners_.erase(netns_cookie);
    for (auto& w : workers_) w->removePod(netns_cookie);
  }
  std::vector<InheritedListener> exportListeners() const override {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    std::vector<InheritedListener> out;
    for (const auto& [cookie, fds] : listeners_) {
      for (const ListenerFd& l : fds) {
        UniqueFd dup(::fcntl(l.fd, F_DUPFD_CLOEXEC, 0));
        if (dup.valid()) out.push_back(InheritedListener{cookie, l.kind, l.ipv6, std::move(dup)});
      }
    }
    return out;
  }
  void adoptListeners(std::vector<InheritedListener> listeners) override {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    for (auto& l : listeners) inherited_[l.netns_cookie].push_back(std::move(l));
  }
  size_t dropUnadoptedListeners() override {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    size_t dropped = 0;
    for (const auto& [cookie, sockets] : inherited_) dropped += sockets.size();
    inherited_.clear();
    return dropped;
  }
  void drain() override {
    for (auto& w : workers_) w->drain();
  }
  bool acceptsStopped() const override {
    return std::all_of(workers_.begin(), workers_.end(),
                       [](const auto& w) { return w->acceptsStopped(); });
  }
  void restartAccepts() override {
    for (auto& w : workers_) w->restartAccepts();
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
  // The pod's inherited sockets, one list per worker: the outbound ones to the pod's owner, each
  // inbound group's members spread over the workers (with as many workers as the previous
  // agent, one each).
  std::vector<std::vector<InheritedListener>> takeInherited(uint64_t cookie, size_t owner) {
    auto it = inherited_.find(cookie);
    if (it == inherited_.end()) return {};
    std::vector<std::vector<InheritedListener>> per_worker(workers_.size());
    std::map<std::pair<ListenerKind, bool>, size_t> next;
    for (auto& l : it->second) {
      const size_t i =
          l.kind == ListenerKind::kOutbound ? owner : next[{l.kind, l.ipv6}]++ % workers_.size();
      per_worker[i].push_back(std::move(l));
    }
    inherited_.erase(it);
    return per_worker;
  }

  std::vector<std::unique_ptr<Worker>> workers_;
  mutable std::mutex listeners_mu_;
  std::map<uint64_t, std::vector<ListenerFd>> listeners_;  // every pod's sockets, by cookie
  std::map<uint64_t, std::vector<InheritedListener>> inherited_;
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
  auto budget = std::make_shared<BufferBudget>(opts.max_buffered_bytes);
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < opts.workers; ++i) {
    auto worker =
        std::make_unique<Worker>(opts, resolver, tls, access_log, on_open, limits, budget);
    if (auto st = worker->init(); !st) return st.error();
    workers.push_back(std::move(worker));
  }
  return std::unique_ptr<Tunnel>(std::make_unique<Workers>(std::move(workers)));
}

}  // namespace nodemesh::tunnel
