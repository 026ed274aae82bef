#include "tunnel/connection_limits.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace nodemesh::tunnel {
namespace {

using std::chrono::milliseconds;

class FakeClock final : public SteadyClock {
 public:
  TimePoint now() const override { return now_; }
  void advance(milliseconds d) { now_ += d; }

 private:
  TimePoint now_{std::chrono::hours(1)};
};

InboundLimits connections(unsigned n) {
  InboundLimits l;
  l.max_connections = n;
  return l;
}

InboundLimits rate(double per_second, unsigned burst = 0) {
  InboundLimits l;
  l.connections_per_second = per_second;
  l.burst = burst;
  return l;
}

// How many of `n` connections attempted at the clock's time are admitted (their slots are
// kept in `held`).
int admitted(const std::shared_ptr<WorkloadLimiter>& limiter, const FakeClock& clock, int n,
             std::vector<ConnectionSlot>& held) {
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    ConnectionSlot slot;
    if (admitConnection(limiter, clock.now(), &slot) == Refusal::kNone) {
      ++ok;
      held.push_back(std::move(slot));
    }
  }
  return ok;
}

TEST(ConnectionLimitsTest, TheOpenCapRefusesTheNextConnectionUntilOneEnds) {
  FakeClock clock;
  auto limiter = std::make_shared<WorkloadLimiter>(connections(3));
  std::vector<ConnectionSlot> held;
  EXPECT_EQ(admitted(limiter, clock, 3, held), 3);
  ConnectionSlot fourth;
  EXPECT_EQ(admitConnection(limiter, clock.now(), &fourth), Refusal::kConnections);
  EXPECT_FALSE(fourth.held());
  EXPECT_EQ(limiter->open(), 3u);  // the refusal took nothing

  held.pop_back();  // a connection ends: its slot is given back
  EXPECT_EQ(limiter->open(), 2u);
  EXPECT_EQ(admitConnection(limiter, clock.now(), &fourth), Refusal::kNone);
  EXPECT_TRUE(fourth.held());
  EXPECT_EQ(admitConnection(limiter, clock.now(), &fourth), Refusal::kConnections);
  // A moved slot is given back once, by its new owner: the move gives nothing back.
  ConnectionSlot moved = std::move(fourth);
  EXPECT_EQ(limiter->open(), 3u);
  moved.reset();
  held.clear();
  EXPECT_EQ(limiter->open(), 0u);
}

TEST(ConnectionLimitsTest, TheRateAdmitsItsBurstThenOnePerInterval) {
  FakeClock clock;
  // 2/s, the burst one second's worth: 2 at once, then one every 500 ms.
  auto limiter = std::make_shared<WorkloadLimiter>(rate(2));
  std::vector<ConnectionSlot> held;
  EXPECT_EQ(admitted(limiter, clock, 10, held), 2);
  clock.advance(milliseconds(499));
  EXPECT_EQ(admitted(limiter, clock, 10, held), 0);
  clock.advance(milliseconds(1));
  EXPECT_EQ(admitted(limiter, clock, 10, held), 1);
  clock.advance(milliseconds(1000));
  EXPECT_EQ(admitted(limiter, clock, 10, held), 2);
  // Idle for long: the burst again, not the whole idle time's worth.
  clock.advance(milliseconds(60000));
  EXPECT_EQ(admitted(limiter, clock, 10, held), 2);
  // The rate caps new connections, not open ones: every admitted one is still held.
  EXPECT_EQ(limiter->open(), 7u);
}

TEST(ConnectionLimitsTest, ABurstOfNOverTimeAdmitsBurstPlusRateTimesElapsed) {
  FakeClock clock;
  auto limiter = std::make_shared<WorkloadLimiter>(rate(5, 3));
  std::vector<ConnectionSlot> held;
  // One attempt every 50 ms for 2 s: 3 at once, then 5/s for the remaining 1.95 s (9 more).
  int ok = 0;
  for (int i = 0; i < 40; ++i) {
    ok += admitted(limiter, clock, 1, held);
    clock.advance(milliseconds(50));
  }
  EXPECT_EQ(ok, 3 + 9);
}

TEST(ConnectionLimitsTest, AFractionalRateHasABurstOfOne) {
  FakeClock clock;
  auto limiter = std::make_shared<WorkloadLimiter>(rate(0.5));
  EXPECT_EQ(rate(0.5).effectiveBurst(), 1u);
  EXPECT_EQ(rate(2.5).effectiveBurst(), 3u);
  EXPECT_EQ(rate(2.5, 7).effectiveBurst(), 7u);
  std::vector<ConnectionSlot> held;
  EXPECT_EQ(admitted(limiter, clock, 5, held), 1);
  clock.advance(milliseconds(1999));
  EXPECT_EQ(admitted(limiter, clock, 5, held), 0);
  clock.advance(milliseconds(1));
  EXPECT_EQ(admitted(limiter, clock, 5, held), 1);
}

TEST(ConnectionLimitsTest, ARefusalUsesUpNeitherCap) {
  FakeClock clock;
  InboundLimits both = rate(1, 2);
  both.max_connections = 1;
  auto limiter = std::make_shared<WorkloadLimiter>(both);
  std::vector<ConnectionSlot> held;
  EXPECT_EQ(admitted(limiter, clock, 1, held), 1);
  // Refused for the open cap, many times: the rate's burst is untouched.
  ConnectionSlot slot;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(admitConnection(limiter, clock.now(), &slot), Refusal::kConnections);
  }
  held.clear();
  EXPECT_EQ(admitted(limiter, clock, 1, held), 1);  // the burst's second
  held.clear();
  // Refused for the rate: no open slot is kept.
  EXPECT_EQ(admitConnection(limiter, clock.now(), &slot), Refusal::kRate);
  EXPECT_EQ(limiter->open(), 0u);
}

TEST(ConnectionLimitsTest, ExtremeFlagsDoNotOverflow) {
  FakeClock clock;
  // A rate of one per ~32 years and a burst of ten million: the burst is admitted, then nothing.
  auto slow = std::make_shared<WorkloadLimiter>(rate(1e-9, 10000000));
  std::vector<ConnectionSlot> held;
  EXPECT_EQ(admitted(slow, clock, 10, held), 10);
  clock.advance(milliseconds(3600 * 1000));
  EXPECT_EQ(admitted(slow, clock, 10, held), 10);
  // The fastest rate the flag allows: a million per second.
  auto fast = std::make_shared<WorkloadLimiter>(rate(1e6));
  held.clear();
  EXPECT_EQ(admitted(fast, clock, 2000000, held), 1000000);
}

TEST(ConnectionLimitsTest, RefusalsSayWhichCapAndItsValue) {
  InboundLimits both = rate(2.5);
  both.max_connections = 3;
  EXPECT_EQ(refusalText(Refusal::kConnections, both),
            "refused: the workload has 3 inbound connections open (the cap)");
  EXPECT_EQ(refusalText(Refusal::kRate, both),
            "refused: over the workload's 2.5 new inbound connections/s (burst 3)");
  EXPECT_EQ(refusalText(Refusal::kNone, both), "");
}

TEST(ConnectionLimitsTest, NoCapsMeansNoLimiter) {
  FakeClock clock;
  ConnectionLimits limits(InboundLimits{}, clock);
  EXPECT_EQ(limits.forPod(7), nullptr);
  ConnectionSlot slot;
  EXPECT_EQ(admitConnection(nullptr, clock.now(), &slot), Refusal::kNone);
  EXPECT_FALSE(slot.held());
}

TEST(ConnectionLimitsTest, APodsWorkersShareOneLimiterThatOutlivesThePodWhileConnectionsHoldIt) {
  FakeClock clock;
  ConnectionLimits limits(connections(2), clock);
  auto worker_a = limits.forPod(7);
  auto worker_b = limits.forPod(7);
  ASSERT_NE(worker_a, nullptr);
  EXPECT_EQ(worker_a, worker_b);  // counted over the node, not per worker
  EXPECT_NE(limits.forPod(8), worker_a);

  ConnectionSlot one;
  ConnectionSlot two;
  ASSERT_EQ(admitConnection(worker_a, limits.now(), &one), Refusal::kNone);
  ASSERT_EQ(admitConnection(worker_b, limits.now(), &two), Refusal::kNone);
  // The pod is removed (its workers drop the limiter) while a connection is still open, and
  // enrolled again: the open connection still counts.
  worker_a.reset();
  worker_b.reset();
  two.reset();
  auto again = limits.forPod(7);
  EXPECT_EQ(again->open(), 1u);
  // Once nothing holds it, a new enrollment starts from zero.
  one.reset();
  again.reset();
  EXPECT_EQ(limits.forPod(7)->open(), 0u);
}

TEST(ConnectionLimitsTest, WorkersAdmittingAtOnceNeverExceedTheCap) {
  auto limiter = std::make_shared<WorkloadLimiter>(connections(5));
  std::atomic<int> admitted_total = 0;
  std::atomic<bool> over = false;
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      const auto now = std::chrono::steady_clock::now();
      for (int i = 0; i < 20000; ++i) {
        ConnectionSlot slot;
        if (admitConnection(limiter, now, &slot) == Refusal::kNone) {
          admitted_total.fetch_add(1);
          if (limiter->open() > 5) over = true;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(over.load());
  EXPECT_GT(admitted_total.load(), 0);
  EXPECT_EQ(limiter->open(), 0u);
}

}  // namespace
}  // namespace nodemesh::tunnel
