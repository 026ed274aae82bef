// RateLimitedLog: at most `burst` lines per interval; the next line written says how many were
// held back.

#include "tunnel/rate_limited_log.h"

#include <gtest/gtest.h>

namespace nodemesh::tunnel {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RateLimitedLogTest, ABurstPerIntervalThenTheRestAreCountedIntoTheNextLine) {
  RateLimitedLog log(seconds(10), 3);
  const RateLimitedLog::Clock::time_point t0{seconds(100)};
  uint64_t held = 99;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(log.admit(t0 + milliseconds(i), &held));
    EXPECT_EQ(held, 0u);
  }
  for (int i = 0; i < 7; ++i) EXPECT_FALSE(log.admit(t0 + seconds(1), &held));
  EXPECT_FALSE(log.admit(t0 + milliseconds(9999), &held));
  ASSERT_TRUE(log.admit(t0 + seconds(10), &held));
  EXPECT_EQ(held, 8u);
  ASSERT_TRUE(log.admit(t0 + seconds(11), &held));
  EXPECT_EQ(held, 0u);
}

}  // namespace
}  // namespace nodemesh::tunnel
