#pragma once

// Per-workload caps on inbound connections (docs/tunnel.md#per-workload-connection-caps): at
// most `max_connections` open at once and new ones at `connections_per_second` with a burst,
// for each enrolled pod, counted over all of the node's workers (the kernel spreads a pod's
// inbound connections over every worker's 15006/15008 listener). A connection over either cap
// is refused before anything is connected to the application.
//
// The rate is a GCRA (the generic cell rate algorithm, ITU-T I.371; a token bucket seen as one
// timestamp): each admitted connection pushes the workload's theoretical arrival time (TAT)
// one emission interval T = 1 s / rate past max(TAT, now); a connection that would push it more
// than burst * T ahead of now is refused and moves nothing. After an idle period `burst`
// connections pass at once, then one every T. Lock-free: a pod's limiter is shared by the
// workers, each admits on its own thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/steady_clock.h"

namespace nodemesh::tunnel {

struct InboundLimits {
  unsigned max_connections = 0;       // open at once per workload; 0: unlimited
  double connections_per_second = 0;  // new per workload; 0: unlimited
  unsigned burst = 0;                 // admitted at once after idle; 0: ceil(rate), at least 1
  bool enabled() const { return max_connections > 0 || connections_per_second > 0; }
  // The burst in force: `burst`, or one second's worth of the rate.
  unsigned effectiveBurst() const;
};

enum class Refusal {
  kNone,         // admitted
  kConnections,  // max_connections are open
  kRate,         // over the rate (and its burst)
};

// One workload's counts. Shared (shared_ptr) by the pod on every worker and by each connection
// it admitted, so a slot is given back when the connection ends even after the pod is gone.
class WorkloadLimiter {
 public:
  explicit WorkloadLimiter(const InboundLimits& limits);
  // Takes a slot for a new connection at `now`; kNone when admitted (release() once it ends).
  // A refusal changes nothing: neither the open count nor the rate.
  [[nodiscard]] Refusal admit(SteadyClock::TimePoint now);
  void release();
  uint64_t open() const { return open_.load(std::memory_order_relaxed); }

 private:
  const uint64_t max_;
  const int64_t interval_ns_;   // T; 0: no rate
  const int64_t tolerance_ns_;  // burst * T
  std::atomic<uint64_t> open_{0};
  std::atomic<int64_t> tat_ns_{0};  // steady clock nanoseconds
};

// An admitted connection's slot: given back when destroyed (the connection ended, however).
class ConnectionSlot {
 public:
  ConnectionSlot() = default;
  explicit ConnectionSlot(std::shared_ptr<WorkloadLimiter> limiter)
      : limiter_(std::move(limiter)) {}
  ~ConnectionSlot() { reset(); }
  ConnectionSlot(ConnectionSlot&& o) noexcept = default;
  ConnectionSlot& operator=(ConnectionSlot&& o) noexcept {
    if (this != &o) {
      reset();
      limiter_ = std::move(o.limiter_);
    }
    return *this;
  }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;

  void reset() {
    if (limiter_) limiter_->release();
    limiter_.reset();
  }
  bool held() const { return limiter_ != nullptr; }

 private:
  std::shared_ptr<WorkloadLimiter> limiter_;
};

// Admits a connection to the workload of `limiter` (null: no caps, always admitted with an
// empty slot). On kNone `slot` holds the connection's slot.
Refusal admitConnection(const std::shared_ptr<WorkloadLimiter>& limiter, SteadyClock::TimePoint now,
                        ConnectionSlot* slot);

// The words for a refusal, for the access log ("refused: ...").
std::string refusalText(Refusal refusal, const InboundLimits& limits);

// The node's limiters, one per enrolled pod (by netns cookie), shared by the workers.
// Thread-safe.
class ConnectionLimits {
 public:
  ConnectionLimits(const InboundLimits& limits, const SteadyClock& clock)
      : limits_(limits), clock_(clock) {}

  // The pod's limiter; null when no cap is set. A pod added again while connections of its
  // previous enrollment are open gets the same limiter (they still count).
  std::shared_ptr<WorkloadLimiter> forPod(uint64_t netns_cookie);
  SteadyClock::TimePoint now() const { return clock_.now(); }
  const InboundLimits& limits() const { return limits_; }

 private:
  const InboundLimits limits_;
  const SteadyClock& clock_;
  std::mutex mu_;
  // Weak: a limiter lives as long as its pod or one of its connections.
  std::unordered_map<uint64_t, std::weak_ptr<WorkloadLimiter>> pods_;
};

}  // namespace nodemesh::tunnel
