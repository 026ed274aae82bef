#include "tunnel/tunnel_stats.h"

#include <set>
#include <string>

#include <gtest/gtest.h>

namespace nodemesh::tunnel {
namespace {

TEST(TunnelStatsTest, OneListMakesTheSumTheLineAndTheMetricsTable) {
  TunnelCounters a;
  TunnelCounters b;
  bump(a.accepted_outbound, 2);
  bump(b.accepted_outbound);
  bump(b.busy_poll_misses, 7);
  bump(a.active, 3);
  subtract(a.active);
  TunnelStats sum = a.snapshot();
  sum += b.snapshot();
  EXPECT_EQ(sum.accepted_outbound, 3u);
  EXPECT_EQ(sum.active, 2u);
  EXPECT_EQ(sum.busy_poll_misses, 7u);

  const std::string line = formatTunnelStats(sum);
  EXPECT_EQ(line.rfind("accepted_outbound=3 accepted_inbound=0 ", 0), 0u) << line;
  EXPECT_NE(line.find(" active=2 "), std::string::npos) << line;
  EXPECT_NE(line.find(" busy_poll_misses=7"), std::string::npos) << line;

  // Every counter is in the line, and has a metric family in which its label value is its own.
  std::set<std::string> series;
  for (const TunnelStatInfo& info : kTunnelStatInfo) {
    EXPECT_NE(line.find(std::string(info.field) + "="), std::string::npos) << info.field;
    EXPECT_EQ(std::string(info.family).rfind("nodemesh_", 0), 0u) << info.field;
    EXPECT_TRUE(series.insert(std::string(info.family) + "{" + info.label_value + "}").second)
        << info.field << " shares a series";
  }
  EXPECT_EQ(series.size(), std::size(kTunnelStatInfo));
  EXPECT_EQ(sum.*kTunnelStatInfo[0].value, 3u);
}

}  // namespace
}  // namespace nodemesh::tunnel
