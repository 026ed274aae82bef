#include "tunnel/lb/endpoint_picker.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace nodemesh::tunnel::lb {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::string_view kServiceKey = "shop/cart.shop.svc.cluster.local";

model::Workload workload(std::string name, std::string node = "node1", std::string zone = "z1",
                         std::string region = "r1") {
  static int next_ip = 1;
  model::Workload w;
  w.uid = "cluster1//v1/Pod/shop/" + name;
  w.name = std::move(name);
  w.namespace_name = "shop";
  w.workload_ips.push_back(IpAddress::parse("10.0.0." + std::to_string(next_ip++)).value());
  w.node = std::move(node);
  w.network = "net1";
  w.cluster_id = "cluster1";
  w.locality = model::Locality{std::move(region), std::move(zone), ""};
  w.protocol = model::Protocol::Hbone;
  w.services[std::string(kServiceKey)] = {};  // the service's target port applies
  return w;
}

model::Service service(std::optional<model::LoadBalancing> lb = std::nullopt) {
  model::Service s;
  s.name = "cart";
  s.namespace_name = "shop";
  s.hostname = "cart.shop.svc.cluster.local";
  s.vips.push_back(model::NetworkAddress{"", IpAddress::parse("10.96.0.10").value()});
  s.ports = {{80, 8080}};
  s.load_balancing = std::move(lb);
  return s;
}

model::LoadBalancing routing(model::LoadBalancingMode mode,
                             std::vector<model::LoadBalancingScope> preferences) {
  model::LoadBalancing lb;
  lb.mode = mode;
  lb.routing_preference = std::move(preferences);
  return lb;
}

ClientLocality client(std::string node = "node1", std::string zone = "z1",
                      std::string region = "r1") {
  ClientLocality c;
  c.network = "net1";
  c.cluster = "cluster1";
  c.region = std::move(region);
  c.zone = std::move(zone);
  c.node = std::move(node);
  return c;
}

LbOptions options(uint64_t seed = 42) {
  LbOptions o;
  o.seed = seed;
  return o;
}

// Drives a picker the way the tunnel does, with a clock the test moves.
class Harness {
 public:
  Harness(std::vector<model::Workload> workloads, model::Service svc, LbOptions opts = options())
      : picker_(opts), service_(std::move(svc)) {
    setWorkloads(std::move(workloads));
  }

  void setWorkloads(std::vector<model::Workload> workloads) {
    snapshot_ = model::Snapshot::create(std::move(workloads), {service_}, {});
  }

  Result<Pick> pick(const std::vector<std::string>& exclude = {},
                    const ClientLocality& from = client()) {
    return picker_.pick(*snapshot_, *snapshot_->serviceByKey(kServiceKey), 80, from, exclude, now_);
  }
  // The workload name of a pick that must succeed.
  std::string pickName(const std::vector<std::string>& exclude = {},
                       const ClientLocality& from = client()) {
    auto p = pick(exclude, from);
    EXPECT_TRUE(p.ok()) << p.error().message;
    return p.ok() ? p->workload->name : "";
  }

  // One connection: picked, connected with `latency` (a failure when 0), and, unless `keep_open`,
  // closed again. Returns the workload name.
  std::string connect(const std::map<std::string, milliseconds>& latency_by_name = {},
                      bool keep_open = false) {
    auto p = pick();
    EXPECT_TRUE(p.ok()) << p.error().message;
    if (!p.ok()) return "";
    std::string name = p->workload->name;
    auto it = latency_by_name.find(name);
    const std::chrono::nanoseconds latency = it != latency_by_name.end()
                                                 ? std::chrono::nanoseconds(it->second)
                                                 : std::chrono::microseconds(200 + jitter_++ % 100);
    picker_.connectStarted(p->endpoint, now_);
    picker_.connectSucceeded(p->endpoint, latency, now_);
    if (!keep_open) picker_.connectionClosed(p->endpoint);
    return name;
  }

  void fail(const std::string& name, uint16_t port = 8080) {
    EndpointId id{uidOf(name), port};
    picker_.connectStarted(id, now_);
    picker_.connectFailed(id, now_);
  }

  const EndpointStats* stats(const std::string& name, uint16_t port = 8080) {
    stats_ = picker_.stats(now_);
    for (const EndpointStats& s : stats_) {
      if (s.endpoint == EndpointId{uidOf(name), port}) return &s;
    }
    return nullptr;
  }

  static std::string uidOf(const std::string& name) { return "cluster1//v1/Pod/shop/" + name; }

  void advance(Clock::duration d) { now_ += d; }
  TimePoint now() const { return now_; }
  EndpointPicker& picker() { return picker_; }

 private:
  EndpointPicker picker_;
  model::Service service_;
  model::SnapshotPtr snapshot_;
  TimePoint now_{seconds(1000)};
  unsigned jitter_ = 0;
  std::vector<EndpointStats> stats_;
};

std::map<std::string, int> spread(Harness& h, int n,
                                  const std::map<std::string, milliseconds>& latency = {},
                                  bool keep_open = false, Clock::duration every = milliseconds(1)) {
  std::map<std::string, int> count;
  for (int i = 0; i < n; ++i) {
    ++count[h.connect(latency, keep_open)];
    h.advance(every);
  }
  return count;
}

void expectEven(const std::map<std::string, int>& count, int total, double tolerance) {
  ASSERT_FALSE(count.empty());
  const double even = static_cast<double>(total) / static_cast<double>(count.size());
  for (const auto& [name, n] : count) {
    EXPECT_GE(n, even * (1 - tolerance)) << name;
    EXPECT_LE(n, even * (1 + tolerance)) << name;
  }
}

TEST(EndpointPickerTest, EvenSpreadWhenConnectionsCloseAtOnce) {
  Harness h({workload("a"), workload("b"), workload("c")}, service());
  auto count = spread(h, 3000);
  ASSERT_EQ(count.size(), 3u);
  expectEven(count, 3000, 0.2);
}

TEST(EndpointPickerTest, EvenSpreadWhenConnectionsStayOpen) {
  Harness h({workload("a"), workload("b"), workload("c")}, service());
  auto count = spread(h, 3000, {}, /*keep_open=*/true);
  ASSERT_EQ(count.size(), 3u);
  expectEven(count, 3000, 0.2);
  // The active counts steer every draw of two different endpoints: closer than random.
  expectEven(count, 3000, 0.02);
  EXPECT_EQ(h.stats("a")->active, static_cast<uint32_t>(count["a"]));
}

TEST(EndpointPickerTest, SmallSystematicLatencyDifferencesDoNotSkewTheSpread) {
  // 200 vs 260 microseconds is noise for connection balancing, not a reason to send most
  // connections to one endpoint.
  Harness h({workload("a"), workload("b"), workload("c")}, service());
  std::map<std::string, int> count;
  for (int i = 0; i < 3000; ++i) {
    auto p = h.pick();
    ASSERT_TRUE(p.ok());
    const std::string name = p->workload->name;
    ++count[name];
    const auto us = name == "a" ? 200 : name == "b" ? 230 : 260;
    h.picker().connectStarted(p->endpoint, h.now());
    h.picker().connectSucceeded(p->endpoint, std::chrono::microseconds(us), h.now());
    h.picker().connectionClosed(p->endpoint);
    h.advance(milliseconds(1));
  }
  expectEven(count, 3000, 0.2);
}

TEST(EndpointPickerTest, OccasionalSlowConnectsDoNotSkewTheSpread) {
  // One connect in 100 takes 2-8 ms instead of 0.15-0.4 ms (a scheduling hiccup, a TLS handshake
  // for a new pooled connection). Each hiccup sets its endpoint's estimate to the peak, which
  // must be forgotten after a few connections, not after seconds.
  Harness h({workload("a"), workload("b"), workload("c")}, service());
  std::mt19937 noise(1);  // NOLINT(cert-msc51-cpp): the same noise on every run
  std::map<std::string, int> count;
  for (int i = 0; i < 3000; ++i) {
    auto p = h.pick();
    ASSERT_TRUE(p.ok());
    ++count[p->workload->name];
    const auto us = noise() % 100 == 0 ? 2000 + noise() % 6000 : 150 + noise() % 250;
    h.picker().connectStarted(p->endpoint, h.now());
    h.picker().connectSucceeded(p->endpoint, std::chrono::microseconds(us), h.now());
    h.picker().connectionClosed(p->endpoint);
    h.advance(milliseconds(1));
  }
  expectEven(count, 3000, 0.2);
}

TEST(EndpointPickerTest, SlowEndpointGetsClearlyFewer) {
  Harness h({workload("a"), workload("b"), workload("slow")}, service());
  auto count = spread(h, 3000, {{"slow", milliseconds(20)}});
  EXPECT_LT(count["slow"], 3000 / 3 / 2);
  EXPECT_GT(count["a"], count["slow"] * 2);
  EXPECT_GT(count["b"], count["slow"] * 2);
  EXPECT_GT(count["slow"], 0);  // still drawn now and then, so a recovery would be seen
}

TEST(EndpointPickerTest, SlowEndpointGetsFewerAlsoWithOpenConnections) {
  Harness h({workload("a"), workload("b"), workload("slow")}, service());
  auto count = spread(h, 3000, {{"slow", milliseconds(20)}}, /*keep_open=*/true);
  EXPECT_LT(count["slow"], 3000 / 3 / 2);
}

TEST(EndpointPickerTest, EndpointHoldingConnectionsLongerGetsFewer) {
  // Same connect latency everywhere, but "sticky" never closes its connections.
  Harness h({workload("a"), workload("b"), workload("sticky")}, service());
  std::map<std::string, int> count;
  for (int i = 0; i < 3000; ++i) {
    auto p = h.pick();
    ASSERT_TRUE(p.ok());
    ++count[p->workload->name];
    h.picker().connectStarted(p->endpoint, h.now());
    h.picker().connectSucceeded(p->endpoint, std::chrono::microseconds(200), h.now());
    if (p->workload->name != "sticky") h.picker().connectionClosed(p->endpoint);
    h.advance(milliseconds(1));
  }
  EXPECT_LT(count["sticky"], 3000 / 3 / 2);
}

TEST(EndpointPickerTest, SlowEndpointThatRecoversWinsItsShareBack) {
  Harness h({workload("a"), workload("b"), workload("c")}, service());
  spread(h, 1000, {{"c", milliseconds(20)}});
  // c is fast again. It is still drawn against itself now and then (1 in 9 picks), and each of
  // its samples pulls its estimate at least 20% of the way down: back within about a hundred
  // picks, so the next 3,000 are even again.
  auto count = spread(h, 3000);
  expectEven(count, 3000, 0.2);
}

TEST(EndpointPickerTest, CapacityTwoGetsTwiceTheConnections) {
  auto big = workload("big");
  big.capacity = 2;
  {
    Harness h({big, workload("a"), workload("b")}, service());
    auto count = spread(h, 4000);
    EXPECT_NEAR(count["big"], 2000, 200);
    EXPECT_NEAR(count["a"], 1000, 200);
    EXPECT_NEAR(count["b"], 1000, 200);
  }
  {
    Harness h({big, workload("a"), workload("b")}, service());
    auto count = spread(h, 4000, {}, /*keep_open=*/true);
    EXPECT_NEAR(count["big"], 2000, 200);
    EXPECT_NEAR(count["a"], 1000, 200);
    EXPECT_NEAR(count["b"], 1000, 200);
  }
}

TEST(EndpointPickerTest, ZeroCapacityIsNeverPickedWhileOthersHaveCapacity) {
  auto drained = workload("drained");
  drained.capacity = 0;
  Harness h({drained, workload("a")}, service());
  auto count = spread(h, 200);
  EXPECT_EQ(count["drained"], 0);
  Harness only({drained}, service());
  EXPECT_EQ(only.pickName(), "drained");
}

TEST(EndpointPickerTest, UnhealthyWorkloadsAreSkipped) {
  auto sick = workload("sick");
  sick.status = model::HealthStatus::Unhealthy;
  Harness h({workload("a"), sick}, service());
  auto count = spread(h, 300);
  EXPECT_EQ(count["a"], 300);

  Harness none({sick}, service());
  auto p = none.pick();
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, EHOSTUNREACH);
  EXPECT_NE(p.error().message.find("1 unhealthy"), std::string::npos) << p.error().message;
}

TEST(EndpointPickerTest, UnhealthyServiceEndpointIsSkipped) {
  // An endpoint listed by the service itself carries its own status.
  auto svc = service();
  auto a = workload("a");
  auto b = workload("b");
  a.services.clear();
  b.services.clear();
  svc.endpoints.push_back(model::Endpoint{a.uid, {}, model::HealthStatus::Unhealthy});
  svc.endpoints.push_back(model::Endpoint{b.uid, {}, model::HealthStatus::Healthy});
  Harness h({a, b}, svc);
  auto count = spread(h, 100);
  EXPECT_EQ(count["b"], 100);
}

TEST(EndpointPickerTest, AllowAllIncludesUnhealthyWorkloads) {
  auto sick = workload("sick");
  sick.status = model::HealthStatus::Unhealthy;
  model::LoadBalancing lb;
  lb.health_policy = model::LoadBalancingHealthPolicy::AllowAll;
  Harness h({workload("a"), sick}, service(lb));
  auto count = spread(h, 1000);
  EXPECT_NEAR(count["sick"], 500, 100);
}

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

TEST(EndpointPickerTest, PortMapping) {
  auto svc = service();
  svc.ports = {{80, 8080}, {443, 0}};
  auto plain = workload("plain");  // no mapping of its own: the service's 8080
  plain.services[std::string(kServiceKey)] = {{443, 8443}};
  auto own = workload("own");  // its own mapping wins
  own.services[std::string(kServiceKey)] = {{80, 9090}};
  Harness h({plain, own}, svc);

  std::map<std::string, uint16_t> port_of;
  for (int i = 0; i < 100; ++i) {
    auto p = h.pick();
    ASSERT_TRUE(p.ok());
    port_of[p->workload->name] = p->endpoint.port;
    EXPECT_EQ(p->endpoint.workload_uid, p->workload->uid);
  }
  EXPECT_EQ(port_of["plain"], 8080);
  EXPECT_EQ(port_of["own"], 9090);

  // Target port 0: each endpoint names its own; "own" has none for 443 and is skipped.
  model::SnapshotPtr snap = model::Snapshot::create({plain, own}, {svc}, {});
  EndpointPicker picker(options());
  for (int i = 0; i < 50; ++i) {
    auto p = picker.pick(*snap, *snap->serviceByKey(kServiceKey), 443, client(), {}, TimePoint{});
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->workload->name, "plain");
    EXPECT_EQ(p->endpoint.port, 8443);
  }

  auto p = picker.pick(*snap, *snap->serviceByKey(kServiceKey), 81, client(), {}, TimePoint{});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, EINVAL);
  EXPECT_NE(p.error().message.find("has no port 81"), std::string::npos) << p.error().message;
}

TEST(EndpointPickerTest, EndpointWithoutTheTargetPortIsReported) {
  auto svc = service();
  svc.ports = {{80, 0}};
  Harness h({workload("a")}, svc);
  auto p = h.pick();
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("1 not serving the port"), std::string::npos)
      << p.error().message;
}

TEST(EndpointPickerTest, ServiceWithoutEndpoints) {
  Harness h({}, service());
  auto p = h.pick();
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, EHOSTUNREACH);
  EXPECT_NE(p.error().message.find("(it has none)"), std::string::npos) << p.error().message;
}

TEST(EndpointPickerTest, WorkloadWithoutAddressIsSkipped) {
  auto nowhere = workload("nowhere");
  nowhere.workload_ips.clear();
  Harness h({nowhere, workload("a")}, service());
  EXPECT_EQ(spread(h, 50)["a"], 50);
}

TEST(EndpointPickerTest, PassthroughHasNoEndpointToPick) {
  model::LoadBalancing lb;
  lb.mode = model::LoadBalancingMode::Passthrough;
  Harness h({workload("a")}, service(lb));
  auto p = h.pick();
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, EINVAL);
  EXPECT_NE(p.error().message.find("PASSTHROUGH"), std::string::npos);
}

TEST(EndpointPickerTest, PeakEwmaTakesPeaksAtOnceAndDecaysTowardLowerSamples) {
  Harness h({workload("a")}, service());
  EndpointId a{Harness::uidOf("a"), 8080};
  auto sample = [&](milliseconds latency) {
    h.picker().connectStarted(a, h.now());
    h.picker().connectSucceeded(a, latency, h.now());
    h.picker().connectionClosed(a);
  };
  EXPECT_FALSE(h.stats("a") != nullptr && h.stats("a")->measured);
  sample(milliseconds(1));
  EXPECT_EQ(h.stats("a")->latency, milliseconds(1));  // the first sample replaces the guess
  sample(milliseconds(10));
  EXPECT_EQ(h.stats("a")->latency, milliseconds(10));  // a peak counts at once
  h.advance(seconds(10));                              // one time constant
  sample(milliseconds(1));
  // 10 * e^-1 + 1 * (1 - e^-1) = 4.31 ms
  EXPECT_NEAR(static_cast<double>(h.stats("a")->latency.count()) / 1e6, 4.31, 0.01);
  // Without samples the estimate fades toward zero, so a once-slow endpoint is tried again.
  h.advance(seconds(10));
  EXPECT_NEAR(static_cast<double>(h.stats("a")->latency.count()) / 1e6, 4.31 / 2.718, 0.01);
}

TEST(EndpointPickerTest, ReasonNamesBothDraws) {
  Harness h({workload("a"), workload("b")}, service());
  bool saw_p2c = false;
  for (int i = 0; i < 20; ++i) {
    auto p = h.pick();
    ASSERT_TRUE(p.ok());
    if (p->reason.rfind("p2c: ", 0) == 0 && p->reason.find(" over ") != std::string::npos) {
      saw_p2c = true;
    }
  }
  EXPECT_TRUE(saw_p2c);
  Harness one({workload("a")}, service());
  auto p = one.pick();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->reason, "only candidate");
}

TEST(EndpointPickerTest, SameSeedSameChoices) {
  Harness h1({workload("a"), workload("b"), workload("c")}, service(), options(7));
  Harness h2({workload("a"), workload("b"), workload("c")}, service(), options(7));
  for (int i = 0; i < 200; ++i) EXPECT_EQ(h1.connect(), h2.connect());
}

TEST(EndpointPickerTest, StatePerTargetPort) {
  // A workload refusing on one port stays in use on another.
  Harness h({workload("a")}, service());
  for (int i = 0; i < 3; ++i) h.fail("a", 8080);
  EXPECT_TRUE(h.stats("a", 8080)->ejected_until.has_value());
  h.picker().connectStarted(EndpointId{Harness::uidOf("a"), 9090}, h.now());
  EXPECT_FALSE(h.stats("a", 9090)->ejected_until.has_value());
  EXPECT_EQ(h.stats("a", 9090)->active, 1u);
}

TEST(EndpointPickerTest, PruneForgetsIdleEndpoints) {
  Harness h({workload("a"), workload("b")}, service());
  EndpointId a{Harness::uidOf("a"), 8080};
  EndpointId b{Harness::uidOf("b"), 8080};
  h.picker().connectStarted(a, h.now());
  h.picker().connectSucceeded(a, milliseconds(1), h.now());  // stays open
  h.picker().connectStarted(b, h.now());
  h.picker().connectSucceeded(b, milliseconds(1), h.now());
  h.picker().connectionClosed(b);
  h.advance(seconds(299));
  h.picker().prune(h.now());
  EXPECT_EQ(h.picker().stats(h.now()).size(), 2u);
  h.advance(seconds(2));
  h.picker().prune(h.now());
  auto stats = h.picker().stats(h.now());
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].endpoint, a);  // an open connection keeps its state
}

TEST(EndpointPickerTest, ReportsForUnknownEndpointsAreHarmless) {
  EndpointPicker picker(options());
  EndpointId ghost{"ghost", 1};
  picker.connectionClosed(ghost);
  picker.connectFailed(ghost, TimePoint{});
  picker.connectSucceeded(ghost, milliseconds(1), TimePoint{});
  auto stats = picker.stats(TimePoint{});
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].active, 0u);
}

TEST(ClientLocalityTest, TakesTheWorkloadsLocalityAndThisNode) {
  auto w = workload("a", "node-in-config", "z1", "r1");
  w.locality.subzone = "s1";
  auto c = ClientLocality::of(w, "this-node");
  EXPECT_EQ(c.node, "this-node");
  EXPECT_EQ(c.region, "r1");
  EXPECT_EQ(c.zone, "z1");
  EXPECT_EQ(c.subzone, "s1");
  EXPECT_EQ(c.network, "net1");
  EXPECT_EQ(c.cluster, "cluster1");
  EXPECT_EQ(ClientLocality::of(w).node, "node-in-config");
}

}  // namespace
}  // namespace nodemesh::tunnel::lb
