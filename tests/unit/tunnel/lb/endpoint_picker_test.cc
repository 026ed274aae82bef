// EndpointPicker: ports, the EWMA, reasons, determinism, pruning, and ClientLocality.

#include <gtest/gtest.h>

#include "tests/unit/tunnel/lb/endpoint_picker_test_util.h"
#include "tunnel/lb/endpoint_picker.h"

namespace nodemesh::tunnel::lb::endpoint_picker_test {
namespace {

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
}  // namespace nodemesh::tunnel::lb::endpoint_picker_test
