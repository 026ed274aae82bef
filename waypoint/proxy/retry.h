#pragma once

// Retries in the waypoint (docs/waypoint.md, "Retries"): the budget that keeps retries from
// multiplying the load on a failing service, and the timers of their backoff. Which failures
// are retried and how long to wait: routing/retry_policy.h.
//
// - A retry goes to an endpoint not tried yet when the backend has one (Envoy's
//   previous_hosts predicate, which Istio sets), else to any.
// - The budget (Linkerd's): per backend service, retries within the last 10 s may be at most
//   `ratio` of the requests in that window plus `min_per_second` x 10. A retry over it is not
//   made: the client gets the failure as it came.

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "waypoint/routing/retry_policy.h"

namespace nodemesh::waypoint {

using Clock = std::chrono::steady_clock;

struct RetryBudgetOptions {
  double ratio = 0.2;            // retries per request, over the window
  uint32_t min_per_second = 10;  // retries allowed whatever the ratio
  std::chrono::seconds window{10};
};

// One backend's budget: a ring of one-second buckets of requests and retries.
class RetryBudget {
 public:
  explicit RetryBudget(RetryBudgetOptions options = {}) : options_(options) {}
  void deposit(Clock::time_point now);  // a request (first attempt)
  // Whether a retry may be made now; if so it is counted.
  bool withdraw(Clock::time_point now);
  // Nothing counted in the window: the budget can be forgotten.
  bool idle(Clock::time_point now) const;

 private:
  static constexpr size_t kMaxBuckets = 60;
  struct Bucket {
    int64_t second = -1;
    uint64_t requests = 0;
    uint64_t retries = 0;
  };
  Bucket& bucket(Clock::time_point now);
  void totals(Clock::time_point now, uint64_t& requests, uint64_t& retries) const;
  RetryBudgetOptions options_;
  std::array<Bucket, kMaxBuckets> buckets_{};
};

// Something waiting for its retry's backoff to pass.
class RetryWaiter {
 public:
  virtual ~RetryWaiter() = default;
  virtual void onRetryDue() = 0;
};

// The waiters of one loop, by deadline. The loop arms a timer for next() and calls runDue().
class RetryTimers {
 public:
  void schedule(Clock::time_point at, RetryWaiter* waiter);
  void cancel(RetryWaiter* waiter);
  // Calls each waiter due at `now` once (removed before its call, so it may schedule again).
  void runDue(Clock::time_point now);
  std::optional<Clock::time_point> next() const;
  size_t size() const { return due_.size(); }

 private:
  std::multimap<Clock::time_point, RetryWaiter*> due_;
};

struct RetryStats {
  uint64_t on_status = 0;         // retries after a retryable response status
  uint64_t on_failure = 0;        // retries after a connection failure or reset before a response
  uint64_t budget_exhausted = 0;  // retries the budget refused
  uint64_t limit_exceeded = 0;    // requests whose attempts ran out while still failing (URX)
};

}  // namespace nodemesh::waypoint
