#include "bench/congestion_control.h"

#include <gtest/gtest.h>

namespace nodemesh::bench {
namespace {

// The state CI's machines are in: bbr by default, cubic built in but not allowed.
constexpr std::string_view kAllowed = "reno bbr";
constexpr std::string_view kAvailable = "reno bbr cubic";

TEST(CongestionControlTest, AllowedAlgorithmIsSet) {
  auto c = chooseCongestionControl("reno", kAllowed, kAvailable, "bbr");
  EXPECT_EQ(c.set, "reno");
  EXPECT_EQ(c.expected, "reno");
  EXPECT_EQ(c.fallback_reason, "");
}

TEST(CongestionControlTest, AvailableButNotAllowedKeepsTheHostDefault) {
  auto c = chooseCongestionControl("cubic", kAllowed, kAvailable, "bbr");
  EXPECT_EQ(c.set, "");  // setting it would fail with EPERM in the pod's namespace
  EXPECT_EQ(c.expected, "bbr");
  EXPECT_NE(c.fallback_reason.find("cubic is not in the host's "
                                   "net.ipv4.tcp_allowed_congestion_control (reno bbr)"),
            std::string::npos)
      << c.fallback_reason;
}

TEST(CongestionControlTest, UnknownAlgorithmKeepsTheHostDefault) {
  auto c = chooseCongestionControl("nosuchcc", kAllowed, kAvailable, "bbr");
  EXPECT_EQ(c.set, "");
  EXPECT_EQ(c.expected, "bbr");
  EXPECT_NE(c.fallback_reason.find("no TCP congestion control named nosuchcc"), std::string::npos)
      << c.fallback_reason;
}

TEST(CongestionControlTest, NameMatchesWholeWordsOnly) {
  // "bb" is a prefix of an allowed name, not an allowed name.
  auto c = chooseCongestionControl("bb", kAllowed, kAvailable, "bbr");
  EXPECT_EQ(c.set, "");
  EXPECT_FALSE(c.fallback_reason.empty());
}

TEST(CongestionControlTest, HostKeepsTheHostDefault) {
  auto c = chooseCongestionControl("host", kAllowed, kAvailable, "bbr");
  EXPECT_EQ(c.set, "");
  EXPECT_EQ(c.expected, "bbr");
  EXPECT_EQ(c.fallback_reason, "");
}

TEST(CongestionControlTest, CubicAllowedOnAHostThatAllowsIt) {
  auto c = chooseCongestionControl("cubic", "reno cubic", "reno cubic", "cubic");
  EXPECT_EQ(c.set, "cubic");
  EXPECT_EQ(c.fallback_reason, "");
}

}  // namespace
}  // namespace nodemesh::bench
