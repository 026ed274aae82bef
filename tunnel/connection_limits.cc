#include "tunnel/connection_limits.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace nodemesh::tunnel {
namespace {

int64_t nanos(SteadyClock::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// Bounds that keep the arithmetic on steady clock nanoseconds far from overflow whatever the
// flags say (a rate of 1e-9/s, a burst of millions): an interval of at most ~11.6 days, a
// tolerance of at most a quarter of the int64 range.
constexpr double kMaxIntervalNanos = 1e15;
constexpr int64_t kMaxToleranceNanos = std::numeric_limits<int64_t>::max() / 4;

int64_t intervalNanos(double per_second) {
  if (per_second <= 0) return 0;
  return static_cast<int64_t>(std::clamp(std::round(1e9 / per_second), 1.0, kMaxIntervalNanos));
}

int64_t toleranceNanos(int64_t interval, unsigned burst) {
  if (interval == 0) return 0;
  return burst > kMaxToleranceNanos / interval ? kMaxToleranceNanos
                                               : interval * static_cast<int64_t>(burst);
}

}  // namespace

unsigned InboundLimits::effectiveBurst() const {
  if (burst > 0) return burst;
  return std::max(1u, static_cast<unsigned>(std::ceil(connections_per_second)));
}

WorkloadLimiter::WorkloadLimiter(const InboundLimits& limits)
    : max_(limits.max_connections),
      interval_ns_(intervalNanos(limits.connections_per_second)),
      tolerance_ns_(toleranceNanos(interval_ns_, limits.effectiveBurst())) {}

Refusal WorkloadLimiter::admit(SteadyClock::TimePoint now) {
  // The open count first: a connection refused for it must not use up the rate.
  // A compare-exchange, not an add undone on refusal: a refused attempt must not make a
  // concurrent one on another worker see the cap reached.
  uint64_t open = open_.load(std::memory_order_relaxed);
  do {
    if (max_ > 0 && open >= max_) return Refusal::kConnections;
  } while (!open_.compare_exchange_weak(open, open + 1, std::memory_order_relaxed));
  if (interval_ns_ == 0) return Refusal::kNone;
  const int64_t t = nanos(now);
  int64_t tat = tat_ns_.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t next = std::max(tat, t) + interval_ns_;
    if (next - t > tolerance_ns_) {
      open_.fetch_sub(1, std::memory_order_relaxed);
      return Refusal::kRate;
    }
    if (tat_ns_.compare_exchange_weak(tat, next, std::memory_order_relaxed)) {
      return Refusal::kNone;
    }
  }
}

void WorkloadLimiter::release() {
  open_.fetch_sub(1, std::memory_order_relaxed);
}

Refusal admitConnection(const std::shared_ptr<WorkloadLimiter>& limiter, SteadyClock::TimePoint now,
                        ConnectionSlot* slot) {
  if (!limiter) return Refusal::kNone;
  const Refusal r = limiter->admit(now);
  if (r == Refusal::kNone) *slot = ConnectionSlot(limiter);
  return r;
}

std::string refusalText(Refusal refusal, const InboundLimits& limits) {
  switch (refusal) {
    case Refusal::kNone:
      return "";
    case Refusal::kConnections:
      return fmt::format("refused: the workload has {} inbound connections open (the cap)",
                         limits.max_connections);
    case Refusal::kRate:
      return fmt::format("refused: over the workload's {} new inbound connections/s (burst {})",
                         limits.connections_per_second, limits.effectiveBurst());
  }
  return "refused";
}

std::shared_ptr<WorkloadLimiter> ConnectionLimits::forPod(uint64_t netns_cookie) {
  if (!limits_.enabled()) return nullptr;
  std::lock_guard lock(mu_);
  // Forget pods whose limiter nobody holds any more (pods come and go; the map must not grow).
  std::erase_if(pods_, [](const auto& entry) { return entry.second.expired(); });
  auto& weak = pods_[netns_cookie];
  auto limiter = weak.lock();
  if (!limiter) {
    limiter = std::make_shared<WorkloadLimiter>(limits_);
    weak = limiter;
  }
  return limiter;
}

}  // namespace nodemesh::tunnel
