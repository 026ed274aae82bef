// Adaptive busy polling's rule (tunnel/poll_backoff.h): when a worker polls and when it skips.
#include "tunnel/poll_backoff.h"

#include <gtest/gtest.h>

#include <functional>

namespace nodemesh::tunnel {
namespace {

struct Tally {
  uint32_t polls = 0;
  uint32_t misses = 0;
};

// Runs `waits` waits; a wait that polls hits or misses as `hits(wait index)` says.
Tally run(PollBackoff& b, uint32_t waits, const std::function<bool(uint32_t)>& hits,
          uint32_t first = 0) {
  Tally t;
  for (uint32_t i = first; i < first + waits; ++i) {
    if (!b.shouldPoll()) continue;
    ++t.polls;
    if (hits(i)) {
      b.hit();
    } else {
      ++t.misses;
      b.miss();
    }
  }
  return t;
}

TEST(PollBackoffTest, PollsThatHitKeepItPollingAndAFewMissesDoNotStopIt) {
  PollBackoff b(/*adaptive=*/true);
  EXPECT_EQ(run(b, 1000, [](uint32_t) { return true; }).polls, 1000u);
  // One miss in four: two in any window of eight, within the limit.
  EXPECT_EQ(run(b, 1000, [](uint32_t i) { return i % 4 != 0; }).polls, 1000u);
}

TEST(PollBackoffTest, MissesPauseItAndEachMissedProbeDoublesThePause) {
  PollBackoff b(/*adaptive=*/true);
  auto never = [](uint32_t) { return false; };
  // kMissesAllowed + 1 misses pause polling for kFirstPause waits; then one probe.
  EXPECT_EQ(run(b, PollBackoff::kMissesAllowed + 1, never).polls, PollBackoff::kMissesAllowed + 1);
  EXPECT_EQ(run(b, PollBackoff::kFirstPause, never).polls, 0u);
  EXPECT_EQ(run(b, 1, never).polls, 1u);  // the probe misses: twice as long
  EXPECT_EQ(run(b, 2 * PollBackoff::kFirstPause, never).polls, 0u);
  EXPECT_EQ(run(b, 1, never).polls, 1u);
  // Missing on and on (an idle or sparse worker): one probe per kMaxPause + 1 waits at most.
  Tally t = run(b, 64 * PollBackoff::kMaxPause, never);
  EXPECT_LE(t.polls, 64u + 8u);
  EXPECT_GE(t.polls, 60u);
}

TEST(PollBackoffTest, AProbeThatHitsResumesPolling) {
  PollBackoff b(/*adaptive=*/true);
  auto never = [](uint32_t) { return false; };
  auto always = [](uint32_t) { return true; };
  run(b, 10 * PollBackoff::kMaxPause, never);  // paused at the longest
  while (!b.shouldPoll()) {
  }
  b.hit();
  EXPECT_EQ(run(b, 500, always).polls, 500u);
  // Polling went well for long: the next pause is the first one again.
  run(b, PollBackoff::kMissesAllowed + 1, never);
  EXPECT_EQ(run(b, PollBackoff::kFirstPause, never).polls, 0u);
  EXPECT_EQ(run(b, 1, never).polls, 1u);
}

// A server at a low request rate: the wait for the application's answer is short (a hit), the
// wait for the next request long (a miss). Polling must not cost a miss per request.
TEST(PollBackoffTest, EveryOtherWaitMissingSettlesAtTheLongestPause) {
  PollBackoff b(/*adaptive=*/true);
  auto every_other = [](uint32_t i) { return i % 2 == 0; };
  constexpr uint32_t kWaits = 256 * PollBackoff::kMaxPause;
  Tally t = run(b, kWaits, every_other);
  // A probe every kMaxPause waits, and at most kMissesAllowed + 1 misses after each that hits.
  EXPECT_LE(t.misses, (kWaits / PollBackoff::kMaxPause) * (PollBackoff::kMissesAllowed + 2) + 64)
      << t.polls << " polls";
  // And it stays there: the next kWaits waits cost as little.
  Tally later = run(b, kWaits, every_other, kWaits);
  EXPECT_LE(later.misses, (kWaits / PollBackoff::kMaxPause) * (PollBackoff::kMissesAllowed + 2));
}

TEST(PollBackoffTest, FixedPollingNeverSkips) {
  PollBackoff b(/*adaptive=*/false);
  EXPECT_EQ(run(b, 1000, [](uint32_t) { return false; }).polls, 1000u);
}

}  // namespace
}  // namespace nodemesh::tunnel
