// EndpointPicker: outlier detection on response status (responseReceived), as the waypoint uses
// it for a DestinationRule's outlierDetection: consecutive 5xx and gateway errors, ejection time
// growing linearly with the ejection count and capped, max ejection percent, the multiplier
// lowered per interval, the panic threshold, and no change to connect-failure ejection.

#include <gtest/gtest.h>

#include "tests/unit/tunnel/lb/endpoint_picker_test_util.h"

namespace nodemesh::tunnel::lb::endpoint_picker_test {
namespace {

OutlierPolicy policy(uint32_t consecutive_5xx = 3, uint32_t max_percent = 50) {
  OutlierPolicy p;
  p.consecutive_5xx = consecutive_5xx;
  p.interval = seconds(10);
  p.base_ejection = seconds(30);
  p.max_ejection = seconds(300);
  p.max_ejection_percent = max_percent;
  return p;
}

// Reports `n` responses with `status` from `name` (the service has `size` endpoints).
OutlierVerdict respond(Harness& h, const std::string& name, int status, int n,
                       const OutlierPolicy& p, size_t size = 2) {
  OutlierVerdict last;
  for (int i = 0; i < n; ++i) {
    last = h.picker().responseReceived(EndpointId{Harness::uidOf(name), 8080}, status, p,
                                       kServiceKey, size, h.now());
  }
  return last;
}

// Picks with the policy `n` times; the names picked.
std::map<std::string, int> picks(Harness& h, const OutlierPolicy& p, int n) {
  std::map<std::string, int> count;
  for (int i = 0; i < n; ++i) {
    auto r = h.picker().pick(*h.snapshot(), *h.snapshot()->serviceByKey(kServiceKey), 80, client(),
                             {}, h.now(), &p);
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (r.ok()) ++count[r->workload->name];
  }
  return count;
}

TEST(EndpointPickerOutlierTest, ConsecutiveFiveHundredsEject) {
  Harness h({workload("a"), workload("b")}, service());
  const OutlierPolicy p = policy(3);
  EXPECT_EQ(respond(h, "a", 500, 2, p).kind, OutlierVerdict::Kind::kNone);
  EXPECT_EQ(respond(h, "a", 200, 1, p).kind, OutlierVerdict::Kind::kNone);  // resets the count
  EXPECT_EQ(respond(h, "a", 503, 2, p).kind, OutlierVerdict::Kind::kNone);
  OutlierVerdict v = respond(h, "a", 500, 1, p);
  ASSERT_EQ(v.kind, OutlierVerdict::Kind::kEjected);
  EXPECT_EQ(v.cause, "consecutive 5xx");
  EXPECT_EQ(v.errors, 3u);
  EXPECT_EQ(v.ejections, 1u);
  EXPECT_EQ(v.duration, seconds(30));
  const EndpointStats* s = h.stats("a");
  ASSERT_TRUE(s && s->outlier_ejected_until);
  EXPECT_EQ(*s->outlier_ejected_until, h.now() + seconds(30));

  // Only b while a is out; a again once its time has passed.
  EXPECT_EQ(picks(h, p, 50), (std::map<std::string, int>{{"b", 50}}));
  h.advance(seconds(30));
  EXPECT_EQ(picks(h, p, 200).size(), 2u);
}

TEST(EndpointPickerOutlierTest, GatewayErrorsCountOnlyGatewayCodes) {
  Harness h({workload("a"), workload("b")}, service());
  OutlierPolicy p = policy(0);
  p.consecutive_gateway = 2;
  EXPECT_EQ(respond(h, "a", 500, 5, p).kind, OutlierVerdict::Kind::kNone);  // 500: not one
  EXPECT_EQ(respond(h, "a", 502, 1, p).kind, OutlierVerdict::Kind::kNone);
  EXPECT_EQ(respond(h, "a", 500, 1, p).kind, OutlierVerdict::Kind::kNone);  // resets it
  EXPECT_EQ(respond(h, "a", 504, 1, p).kind, OutlierVerdict::Kind::kNone);
  OutlierVerdict v = respond(h, "a", 503, 1, p);
  ASSERT_EQ(v.kind, OutlierVerdict::Kind::kEjected);
  EXPECT_EQ(v.cause, "consecutive gateway errors");
}

TEST(EndpointPickerOutlierTest, EjectionTimeGrowsLinearlyUpToTheCapAndDecaysPerInterval) {
  Harness h({workload("a"), workload("b")}, service());
  const OutlierPolicy p = policy(1);
  std::vector<std::chrono::milliseconds> durations;
  for (int i = 0; i < 12; ++i) {
    OutlierVerdict v = respond(h, "a", 500, 1, p);
    ASSERT_EQ(v.kind, OutlierVerdict::Kind::kEjected) << i;
    durations.push_back(v.duration);
    // Back in, and failing again at once: no interval passes in between.
    h.advance(v.duration);
  }
  EXPECT_EQ(durations[0], seconds(30));
  EXPECT_EQ(durations[1], seconds(60));
  EXPECT_EQ(durations[2], seconds(90));
  EXPECT_EQ(durations[9], seconds(300));
  EXPECT_EQ(durations[11], seconds(300));  // capped (Envoy's max_ejection_time)
  // Healthy for three intervals: the multiplier (10, the cap's) drops by three.
  h.advance(seconds(30) + milliseconds(1));
  EXPECT_EQ(respond(h, "a", 200, 1, p).kind, OutlierVerdict::Kind::kNone);
  OutlierVerdict v = respond(h, "a", 500, 1, p);
  ASSERT_EQ(v.kind, OutlierVerdict::Kind::kEjected);
  EXPECT_EQ(v.duration, seconds(30) * 8);  // 10 - 3, plus this ejection
}

TEST(EndpointPickerOutlierTest, MaxEjectionPercentLeavesTheRestIn) {
  Harness h({workload("a"), workload("b"), workload("c"), workload("d")}, service());
  const OutlierPolicy p = policy(1, 50);
  EXPECT_EQ(respond(h, "a", 500, 1, p, 4).kind, OutlierVerdict::Kind::kEjected);
  EXPECT_EQ(respond(h, "b", 500, 1, p, 4).kind, OutlierVerdict::Kind::kEjected);
  OutlierVerdict v = respond(h, "c", 500, 1, p, 4);
  EXPECT_EQ(v.kind, OutlierVerdict::Kind::kCapped);
  EXPECT_EQ(v.ejected, 2u);
  EXPECT_FALSE(h.stats("c")->outlier_ejected_until);
  // The default 10% still lets one of two go (as Envoy counts the ejected before this one).
  Harness two({workload("x"), workload("y")}, service());
  const OutlierPolicy ten = policy(1, 10);
  EXPECT_EQ(respond(two, "x", 500, 1, ten).kind, OutlierVerdict::Kind::kEjected);
  EXPECT_EQ(respond(two, "y", 500, 1, ten).kind, OutlierVerdict::Kind::kCapped);
}

TEST(EndpointPickerOutlierTest, AllEjectedMeansNoEndpointUnlessBelowMinHealth) {
  Harness h({workload("a"), workload("b")}, service());
  OutlierPolicy p = policy(1, 100);
  respond(h, "a", 500, 1, p);
  respond(h, "b", 500, 1, p);
  auto r = h.picker().pick(*h.snapshot(), *h.snapshot()->serviceByKey(kServiceKey), 80, client(),
                           {}, h.now(), &p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EHOSTUNREACH);
  EXPECT_NE(r.error().message.find("all 2 endpoints ejected by outlier detection"),
            std::string::npos);
  // minHealthPercent: with fewer than 50% in, the ejections are ignored (Envoy's panic).
  p.min_health_percent = 50;
  EXPECT_EQ(picks(h, p, 100).size(), 2u);
  // Without a policy (the node agent, or the rule removed) outlier ejections do not count.
  EXPECT_EQ(h.pickName().empty(), false);
}

TEST(EndpointPickerOutlierTest, ConnectFailureEjectionIsUnchanged) {
  Harness h({workload("a"), workload("b")}, service());
  const OutlierPolicy p = policy(3);
  // 5xx responses below the threshold do not touch the connect-failure state, and connect
  // failures do not count as 5xx.
  respond(h, "a", 503, 2, p);
  h.fail("a");
  h.fail("a");
  EXPECT_EQ(respond(h, "a", 200, 1, p).kind, OutlierVerdict::Kind::kNone);
  EXPECT_FALSE(h.stats("a")->ejected_until);
  h.fail("a");  // the third connect failure in a row
  ASSERT_TRUE(h.stats("a")->ejected_until);
  EXPECT_EQ(*h.stats("a")->ejected_until, h.now() + seconds(5));
  EXPECT_FALSE(h.stats("a")->outlier_ejected_until);
}

}  // namespace
}  // namespace nodemesh::tunnel::lb::endpoint_picker_test
