// EndpointPicker: routing preferences (failover, strict), retries, ejection and probes.

#include <gtest/gtest.h>

#include "tests/unit/tunnel/lb/endpoint_picker_test_util.h"
#include "tunnel/lb/endpoint_picker.h"

namespace nodemesh::tunnel::lb::endpoint_picker_test {
namespace {

TEST(EndpointPickerTest, FailoverPrefersSameNodeThenZoneThenAnything) {
  using model::LoadBalancingScope;
  auto lb =
      routing(model::LoadBalancingMode::Failover,
              {LoadBalancingScope::Region, LoadBalancingScope::Zone, LoadBalancingScope::Node});
  auto local = workload("local", "node1", "z1", "r1");
  auto same_zone = workload("same-zone", "node2", "z1", "r1");
  auto same_zone2 = workload("same-zone2", "node3", "z1", "r1");
  auto far = workload("far", "node9", "z9", "r2");
  Harness h({local, same_zone, same_zone2, far}, service(lb));

  auto p = h.pick();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->workload->name, "local");
  EXPECT_NE(p->reason.find("failover: matches [Region, Zone, Node] (3 of 3)"), std::string::npos)
      << p->reason;
  EXPECT_EQ(spread(h, 100)["local"], 100);

  h.setWorkloads({same_zone, same_zone2, far});  // the same-node endpoint is gone
  auto count = spread(h, 200);
  EXPECT_EQ(count["far"], 0);
  EXPECT_GT(count["same-zone"], 50);
  EXPECT_GT(count["same-zone2"], 50);

  h.setWorkloads({far});
  p = h.pick();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->workload->name, "far");
  EXPECT_NE(p->reason.find("matches none of"), std::string::npos) << p->reason;
}

TEST(EndpointPickerTest, FailoverRanksByPrefixOfPreferences) {
  // ztunnel's rank stops at the first preference that does not match: a workload in the client's
  // zone but another region matches [Region, Zone] 0 times, like one that matches nothing.
  using model::LoadBalancingScope;
  auto lb = routing(model::LoadBalancingMode::Failover,
                    {LoadBalancingScope::Region, LoadBalancingScope::Zone});
  auto same_region = workload("same-region", "n2", "z2", "r1");
  auto zone_only = workload("zone-only", "n3", "z1", "r2");
  Harness h({same_region, zone_only}, service(lb));
  EXPECT_EQ(spread(h, 100)["same-region"], 100);
}

TEST(EndpointPickerTest, FailoverMovesOnWhenTheLocalEndpointIsEjected) {
  auto lb = routing(model::LoadBalancingMode::Failover, {model::LoadBalancingScope::Node});
  Harness h({workload("local", "node1"), workload("remote", "node2")}, service(lb));
  EXPECT_EQ(h.pickName(), "local");
  for (int i = 0; i < 3; ++i) h.fail("local");
  EXPECT_EQ(spread(h, 100)["remote"], 100);
  h.advance(seconds(6));  // back-off over: the local endpoint gets a probe
  EXPECT_EQ(h.pickName(), "local");
}

TEST(EndpointPickerTest, StrictUsesOnlyMatchingEndpoints) {
  auto lb = routing(model::LoadBalancingMode::Strict, {model::LoadBalancingScope::Node});
  Harness h({workload("local", "node1"), workload("remote", "node2")}, service(lb));
  EXPECT_EQ(spread(h, 100)["local"], 100);

  h.setWorkloads({workload("remote", "node2")});
  auto p = h.pick();
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, EHOSTUNREACH);
  EXPECT_NE(p.error().message.find("1 outside the STRICT routing preference [Node]"),
            std::string::npos)
      << p.error().message;
}

TEST(EndpointPickerTest, StrictWithAllPreferencesMatchingIsOrdinaryBalancing) {
  auto lb = routing(model::LoadBalancingMode::Strict,
                    {model::LoadBalancingScope::Network, model::LoadBalancingScope::Cluster});
  Harness h({workload("a", "n1"), workload("b", "n2")}, service(lb));
  auto count = spread(h, 1000);
  EXPECT_NEAR(count["a"], 500, 100);
}

TEST(EndpointPickerTest, UnspecifiedModeIgnoresRoutingPreferences) {
  auto lb = routing(model::LoadBalancingMode::UnspecifiedMode, {model::LoadBalancingScope::Node});
  Harness h({workload("local", "node1"), workload("remote", "node2")}, service(lb));
  auto count = spread(h, 1000);
  EXPECT_NEAR(count["remote"], 500, 100);
}

TEST(EndpointPickerTest, RetriesExcludeTriedEndpoints) {
  Harness h({workload("a"), workload("b"), workload("c")}, service());
  const std::vector<std::string> tried_a = {Harness::uidOf("a")};
  for (int i = 0; i < 100; ++i) EXPECT_NE(h.pickName(tried_a), "a");
  const std::vector<std::string> tried_ab = {Harness::uidOf("a"), Harness::uidOf("b")};
  EXPECT_EQ(h.pickName(tried_ab), "c");

  auto p = h.pick({Harness::uidOf("a"), Harness::uidOf("b"), Harness::uidOf("c")});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, EHOSTUNREACH);
  EXPECT_NE(p.error().message.find("3 already tried"), std::string::npos) << p.error().message;
}

TEST(EndpointPickerTest, FewerConsecutiveFailuresThanTheThresholdDoNotEject) {
  Harness h({workload("a"), workload("b")}, service());
  h.fail("a");
  h.fail("a");
  EXPECT_EQ(h.stats("a")->consecutive_failures, 2u);
  auto p = h.pick({Harness::uidOf("b")});
  ASSERT_TRUE(p.ok());
  h.picker().connectStarted(p->endpoint, h.now());
  h.picker().connectSucceeded(p->endpoint, std::chrono::microseconds(250), h.now());
  h.picker().connectionClosed(p->endpoint);
  EXPECT_EQ(h.stats("a")->consecutive_failures, 0u);
  h.fail("a");
  h.fail("a");  // 2 again, not 4
  EXPECT_FALSE(h.stats("a")->ejected_until.has_value());
  EXPECT_GT(spread(h, 200)["a"], 50);
}

TEST(EndpointPickerTest, EjectionProbeAndReset) {
  Harness h({workload("a"), workload("b")}, service());
  for (int i = 0; i < 3; ++i) h.fail("a");
  const EndpointStats* s = h.stats("a");
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->ejected_until.has_value());
  EXPECT_EQ(*s->ejected_until, h.now() + seconds(5));
  EXPECT_EQ(s->ejection_streak, 1u);
  EXPECT_EQ(s->ejections_total, 1u);
  EXPECT_EQ(s->failures_total, 3u);

  // Ejected: no connection goes to it until the back-off is over.
  for (int i = 0; i < 49; ++i) {
    EXPECT_EQ(h.connect(), "b");
    h.advance(milliseconds(100));
  }
  h.advance(milliseconds(100));  // exactly 5 s later
  EXPECT_TRUE(h.stats("a")->probation);

  // One probe: the next connections go to b while it is in flight. (a has no latency sample, so
  // its 1 ms guess loses to b's 0.25 ms: it comes up when drawn twice, a quarter of the picks.)
  Result<Pick> probe = Error{};
  for (int i = 0; i < 200 && !(probe.ok() && probe->workload->name == "a"); ++i) probe = h.pick();
  ASSERT_TRUE(probe.ok());
  ASSERT_EQ(probe->workload->name, "a");
  EXPECT_NE(probe->reason.find("probe after ejection"), std::string::npos) << probe->reason;
  h.picker().connectStarted(probe->endpoint, h.now());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(h.connect(), "b");

  // The probe fails: ejected again, for twice as long.
  h.picker().connectFailed(probe->endpoint, h.now());
  s = h.stats("a");
  ASSERT_TRUE(s->ejected_until.has_value());
  EXPECT_EQ(*s->ejected_until, h.now() + seconds(10));
  EXPECT_EQ(s->ejection_streak, 2u);
  h.advance(seconds(9));
  EXPECT_EQ(spread(h, 50)["a"], 0);
  h.advance(seconds(1));

  // The next probe succeeds: the endpoint is back in full and its history is forgotten.
  EXPECT_EQ(h.pickName({Harness::uidOf("b")}), "a");
  EndpointId a{Harness::uidOf("a"), 8080};
  h.picker().connectStarted(a, h.now());
  h.picker().connectSucceeded(a, std::chrono::microseconds(250), h.now());
  s = h.stats("a");
  EXPECT_EQ(s->ejection_streak, 0u);
  EXPECT_FALSE(s->probation);
  EXPECT_FALSE(s->ejected_until.has_value());
  EXPECT_EQ(s->ejections_total, 2u);
  h.picker().connectionClosed(a);
  auto count = spread(h, 1000);
  EXPECT_NEAR(count["a"], 500, 100);

  // A later run of failures starts the back-off from the base again.
  for (int i = 0; i < 3; ++i) h.fail("a");
  EXPECT_EQ(*h.stats("a")->ejected_until, h.now() + seconds(5));
}

TEST(EndpointPickerTest, BackoffDoublesUpToTheCap) {
  LbOptions o = options();
  o.base_ejection = seconds(1);
  o.max_ejection = seconds(10);
  Harness h({workload("a")}, service(), o);
  for (int i = 0; i < 3; ++i) h.fail("a");
  std::vector<int64_t> backoffs;
  for (int i = 0; i < 6; ++i) {
    const TimePoint until = *h.stats("a")->ejected_until;
    backoffs.push_back(std::chrono::duration_cast<seconds>(until - h.now()).count());
    h.advance(until - h.now());
    h.fail("a");  // the probe fails
  }
  EXPECT_EQ(backoffs, (std::vector<int64_t>{1, 2, 4, 8, 10, 10}));
}

TEST(EndpointPickerTest, FailuresDuringAnEjectionDoNotExtendIt) {
  // Connects that started before the ejection and fail during it.
  Harness h({workload("a")}, service());
  for (int i = 0; i < 3; ++i) h.fail("a");
  const TimePoint until = *h.stats("a")->ejected_until;
  h.advance(seconds(1));
  h.fail("a");
  EXPECT_EQ(*h.stats("a")->ejected_until, until);
  EXPECT_EQ(h.stats("a")->ejection_streak, 1u);
}

TEST(EndpointPickerTest, ProbeWithoutAnOutcomeStopsBlockingAfterTheConnectTimeout) {
  Harness h({workload("a"), workload("b")}, service());
  for (int i = 0; i < 3; ++i) h.fail("a");
  h.advance(seconds(5));
  EndpointId a{Harness::uidOf("a"), 8080};
  h.picker().connectStarted(a, h.now());  // a probe whose outcome never comes
  EXPECT_EQ(spread(h, 100)["a"], 0);
  h.advance(seconds(10));
  EXPECT_EQ(h.pickName({Harness::uidOf("b")}), "a");
}

TEST(EndpointPickerTest, WhenAllEndpointsAreEjectedOneIsTriedAnyway) {
  Harness h({workload("a"), workload("b")}, service());
  for (int i = 0; i < 3; ++i) {
    h.fail("a");
    h.fail("b");
  }
  auto p = h.pick();
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_NE(p->reason.find("all 2 candidates ejected"), std::string::npos) << p->reason;
}

}  // namespace
}  // namespace nodemesh::tunnel::lb::endpoint_picker_test
