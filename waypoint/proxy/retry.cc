#include "waypoint/proxy/retry.h"

#include <algorithm>

namespace nodemesh::waypoint {

RetryBudget::Bucket& RetryBudget::bucket(Clock::time_point now) {
  const int64_t second =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  Bucket& b = buckets_[static_cast<size_t>(second) % kMaxBuckets];
  if (b.second != second) b = Bucket{second, 0, 0};
  return b;
}

void RetryBudget::totals(Clock::time_point now, uint64_t& requests, uint64_t& retries) const {
  const int64_t second =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const int64_t window =
      std::clamp<int64_t>(options_.window.count(), 1, static_cast<int64_t>(kMaxBuckets));
  requests = 0;
  retries = 0;
  for (const Bucket& b : buckets_) {
    if (b.second > second - window && b.second <= second) {
      requests += b.requests;
      retries += b.retries;
    }
  }
}

void RetryBudget::deposit(Clock::time_point now) {
  ++bucket(now).requests;
}

bool RetryBudget::withdraw(Clock::time_point now) {
  uint64_t requests = 0;
  uint64_t retries = 0;
  totals(now, requests, retries);
  const double window_seconds = static_cast<double>(
      std::clamp<int64_t>(options_.window.count(), 1, static_cast<int64_t>(kMaxBuckets)));
  const double allowed = options_.ratio * static_cast<double>(requests) +
                         static_cast<double>(options_.min_per_second) * window_seconds;
  if (static_cast<double>(retries) + 1.0 > allowed) return false;
  ++bucket(now).retries;
  return true;
}

bool RetryBudget::idle(Clock::time_point now) const {
  uint64_t requests = 0;
  uint64_t retries = 0;
  totals(now, requests, retries);
  return requests == 0 && retries == 0;
}

void RetryTimers::schedule(Clock::time_point at, RetryWaiter* waiter) {
  due_.emplace(at, waiter);
}

void RetryTimers::cancel(RetryWaiter* waiter) {
  for (auto it = due_.begin(); it != due_.end();) {
    it = it->second == waiter ? due_.erase(it) : std::next(it);
  }
}

void RetryTimers::runDue(Clock::time_point now) {
  while (!due_.empty() && due_.begin()->first <= now) {
    RetryWaiter* waiter = due_.begin()->second;
    due_.erase(due_.begin());
    waiter->onRetryDue();
  }
}

std::optional<Clock::time_point> RetryTimers::next() const {
  if (due_.empty()) return std::nullopt;
  return due_.begin()->first;
}

}  // namespace nodemesh::waypoint
