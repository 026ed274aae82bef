// Adaptive busy polling's rule (tunnel/poll_backoff.h): when a worker polls and when it skips.
#include "tunnel/poll_backoff.h"

#include <gtest/gtest.h>

namespace nodemesh::tunnel {
namespace {

// How many of the next `waits` waits poll.
int pollsIn(PollBackoff& b, uint32_t waits) {
  int polls = 0;
  for (uint32_t i = 0; i < waits; ++i) polls += b.shouldPoll() ? 1 : 0;
  return polls;
}

TEST(PollBackoffTest, HitsKeepItPollingAndAFewMissesDoNotStopIt) {
  PollBackoff b(/*adaptive=*/true);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(b.shouldPoll());
    if (i % 3 == 0) {
      b.miss();
    } else {
      b.hit();
    }
  }
}

TEST(PollBackoffTest, MissesInARowBackOffExponentiallyAndAHitEndsIt) {
  PollBackoff b(/*adaptive=*/true);
  for (uint32_t i = 0; i < PollBackoff::kMissesToBackOff; ++i) {
    ASSERT_TRUE(b.shouldPoll());
    b.miss();
  }
  // Skips kFirstSkip waits, then probes.
  EXPECT_EQ(pollsIn(b, PollBackoff::kFirstSkip), 0);
  ASSERT_TRUE(b.shouldPoll());
  b.miss();  // the probe missed: twice as long
  EXPECT_EQ(pollsIn(b, 2 * PollBackoff::kFirstSkip), 0);
  // Missing on and on: one probe per kMaxSkip + 1 waits at most (an idle or sparse worker).
  int probes = 0;
  for (int i = 0; i < 64 * static_cast<int>(PollBackoff::kMaxSkip); ++i) {
    if (b.shouldPoll()) {
      ++probes;
      b.miss();
    }
  }
  EXPECT_LE(probes, 64 + 8);
  EXPECT_GE(probes, 60);
  // A probe that hits: polling before every wait again.
  while (!b.shouldPoll()) {
  }
  b.hit();
  EXPECT_EQ(pollsIn(b, 50), 50);
}

TEST(PollBackoffTest, FixedPollingNeverSkips) {
  PollBackoff b(/*adaptive=*/false);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(b.shouldPoll());
    b.miss();
  }
}

}  // namespace
}  // namespace nodemesh::tunnel
