#pragma once

// Retries in the waypoint (docs/waypoint.md, "Retries"): which failures of a request are tried
// again, how long to wait first, and the budget that keeps retries from multiplying the load
// on a failing service.
//
// - The policy: the rule's GEP-1731 `retry` (codes, attempts, backoff), else Istio's default
//   for a waypoint: 2 retries on a 503 and on a connection failure or reset before any
//   response. Both also retry such a failure (Istio's connect-failure, refused-stream,
//   reset), as GEP-1731 lets an implementation do.
// - A retry goes to an endpoint not tried yet when the backend has one (Envoy's
//   previous_hosts predicate, which Istio sets), else to any.
// - Backoff as Envoy's: the n-th retry waits a random time in [0, (2^n - 1) x base], at most
//   10 x base (base 25 ms by default).
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

#include "model/route.h"
#include "waypoint/routing/random_source.h"

namespace nodemesh::waypoint {

using Clock = std::chrono::steady_clock;

struct RetryPolicy {
  static constexpr uint32_t kDefaultAttempts = 2;
  static constexpr std::chrono::milliseconds kDefaultBackoff{25};

  uint32_t attempts = kDefaultAttempts;  // retries after the first try
  std::vector<int> codes{503};           // response statuses retried
  std::chrono::milliseconds backoff = kDefaultBackoff;
  bool from_route = false;  // the rule's `retry` (else the default)

  // A rule's `retry`, or the default when it has none; its absent fields take the default's.
  static RetryPolicy of(const std::optional<model::RouteRetry>& retry);
  bool retriesStatus(int status) const;
  // How long to wait before retry number `n` (1 for the first).
  std::chrono::milliseconds delay(uint32_t n, RandomSource& random) const;
};

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
  virtual void onRetryDue() = 0;

 protected:
  ~RetryWaiter() = default;
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
