// The waypoint's retry policy, backoff, budget and timers (waypoint/proxy/retry.h).

#include "waypoint/proxy/retry.h"

#include <gtest/gtest.h>

#include <vector>

namespace nodemesh::waypoint {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Answers bound - 1 (the largest value) or 0, as asked.
class EdgeRandom final : public RandomSource {
 public:
  explicit EdgeRandom(bool high) : high_(high) {}
  uint64_t below(uint64_t bound) override { return high_ && bound > 0 ? bound - 1 : 0; }

 private:
  bool high_;
};

TEST(RetryPolicyTest, WithoutARuleItIsIstiosDefault) {
  const RetryPolicy p = RetryPolicy::of(std::nullopt);
  EXPECT_FALSE(p.from_route);
  EXPECT_EQ(p.attempts, 2u);
  EXPECT_TRUE(p.retriesStatus(503));
  EXPECT_FALSE(p.retriesStatus(500));
  EXPECT_FALSE(p.retriesStatus(502));
  EXPECT_EQ(p.backoff, milliseconds(25));
}

TEST(RetryPolicyTest, ARulesRetryReplacesTheCodesAndKeepsTheDefaultsItLeavesOut) {
  model::RouteRetry r;
  r.codes = {500, 502};
  RetryPolicy p = RetryPolicy::of(r);
  EXPECT_TRUE(p.from_route);
  EXPECT_TRUE(p.retriesStatus(500));
  EXPECT_TRUE(p.retriesStatus(502));
  EXPECT_FALSE(p.retriesStatus(503));  // not named: not retried
  EXPECT_EQ(p.attempts, 2u);
  EXPECT_EQ(p.backoff, milliseconds(25));
  r.codes.clear();
  r.attempts = 0;
  r.backoff = milliseconds(0);
  p = RetryPolicy::of(r);
  EXPECT_FALSE(p.retriesStatus(503));
  EXPECT_EQ(p.attempts, 0u);
}

TEST(RetryPolicyTest, EitherPolicyRetriesGrpcUnavailableAndCancelled) {
  model::RouteRetry r;
  r.codes = {500};
  for (const RetryPolicy& p : {RetryPolicy::of(std::nullopt), RetryPolicy::of(r)}) {
    EXPECT_TRUE(p.retriesGrpcStatus(14));  // UNAVAILABLE
    EXPECT_TRUE(p.retriesGrpcStatus(1));   // CANCELLED
    EXPECT_FALSE(p.retriesGrpcStatus(0));
    EXPECT_FALSE(p.retriesGrpcStatus(4));  // DEADLINE_EXCEEDED: it may have been processed
  }
}

TEST(RetryPolicyTest, IdempotentMethodsAreThoseOfRfc9110) {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
    EXPECT_TRUE(idempotentMethod(m)) << m;
  }
  for (const char* m : {"POST", "PATCH", "CONNECT", "get"}) EXPECT_FALSE(idempotentMethod(m)) << m;
}

TEST(RetryPolicyTest, BackoffIsJitteredExponentialCappedAtTenTimesTheBase) {
  RetryPolicy p;
  p.backoff = milliseconds(25);
  EdgeRandom high(true);
  EdgeRandom low(false);
  EXPECT_EQ(p.delay(1, high), milliseconds(25));   // [0, 1 x base]
  EXPECT_EQ(p.delay(2, high), milliseconds(75));   // [0, 3 x base]
  EXPECT_EQ(p.delay(3, high), milliseconds(175));  // [0, 7 x base]
  EXPECT_EQ(p.delay(4, high), milliseconds(250));  // capped at 10 x base
  EXPECT_EQ(p.delay(40, high), milliseconds(250));
  EXPECT_EQ(p.delay(3, low), milliseconds(0));
  p.backoff = milliseconds(0);
  EXPECT_EQ(p.delay(2, high), milliseconds(0));
}

TEST(RetryBudgetTest, RetriesAreAShareOfRequestsPlusAMinimum) {
  RetryBudget budget({.ratio = 0.2, .min_per_second = 0, .window = seconds(10)});
  const Clock::time_point t0{seconds(1000)};
  EXPECT_FALSE(budget.withdraw(t0)) << "no request yet, no minimum";
  for (int i = 0; i < 10; ++i) budget.deposit(t0);
  EXPECT_TRUE(budget.withdraw(t0));  // 1 <= 0.2 x 10
  EXPECT_TRUE(budget.withdraw(t0));  // 2 <= 2
  EXPECT_FALSE(budget.withdraw(t0));
  // Ten seconds on, those requests and retries are out of the window.
  const Clock::time_point t1 = t0 + seconds(10);
  EXPECT_FALSE(budget.withdraw(t1));
  EXPECT_TRUE(budget.idle(t1));
  for (int i = 0; i < 5; ++i) budget.deposit(t1);
  EXPECT_TRUE(budget.withdraw(t1));
  EXPECT_FALSE(budget.withdraw(t1));
  EXPECT_FALSE(budget.idle(t1 + seconds(9)));
}

TEST(RetryBudgetTest, TheMinimumAllowsRetriesWithoutRequests) {
  RetryBudget budget({.ratio = 0.0, .min_per_second = 2, .window = seconds(10)});
  const Clock::time_point t0{seconds(50)};
  int allowed = 0;
  while (budget.withdraw(t0) && allowed < 1000) ++allowed;
  EXPECT_EQ(allowed, 20);  // 2 per second over the 10 s window
}

struct Recorder final : RetryWaiter {
  Recorder(std::vector<int>* o, int i, RetryTimers* t, bool again = false)
      : order(o), id(i), timers(t), reschedule(again) {}
  std::vector<int>* order;
  int id;
  RetryTimers* timers;
  bool reschedule;
  void onRetryDue() override {
    order->push_back(id);
    if (reschedule) {
      reschedule = false;
      timers->schedule(Clock::time_point{seconds(100)}, this);
    }
  }
};

TEST(RetryTimersTest, DueWaitersRunInDeadlineOrderOnceAndMayScheduleAgain) {
  RetryTimers timers;
  std::vector<int> order;
  Recorder a(&order, 1, &timers, /*again=*/true);
  Recorder b(&order, 2, &timers);
  Recorder c(&order, 3, &timers);
  timers.schedule(Clock::time_point{seconds(20)}, &b);
  timers.schedule(Clock::time_point{seconds(10)}, &a);
  timers.schedule(Clock::time_point{seconds(30)}, &c);
  EXPECT_EQ(timers.next(), Clock::time_point{seconds(10)});
  timers.cancel(&c);
  timers.runDue(Clock::time_point{seconds(25)});
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(timers.next(), Clock::time_point{seconds(100)});  // a, again
  timers.runDue(Clock::time_point{seconds(99)});
  EXPECT_EQ(order.size(), 2u);
  timers.runDue(Clock::time_point{seconds(100)});
  EXPECT_EQ(order, (std::vector<int>{1, 2, 1}));
  EXPECT_FALSE(timers.next());
  EXPECT_EQ(timers.size(), 0u);
}

}  // namespace
}  // namespace nodemesh::waypoint
