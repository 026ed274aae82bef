#include "model/snapshot.h"

#include <gtest/gtest.h>

#include "model/address.h"

namespace nodemesh::model {
namespace {

IpAddress ip(std::string_view text) {
  return IpAddress::parse(text).value();
}

Workload workload(std::string uid, std::string_view ip_text, std::string node,
                  Protocol protocol = Protocol::Hbone) {
  Workload w;
  w.uid = std::move(uid);
  w.namespace_name = "shop";
  w.workload_ips.push_back(ip(ip_text));
  w.node = std::move(node);
  w.protocol = protocol;
  return w;
}

TEST(SnapshotTest, EmptySnapshot) {
  Snapshot s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.summary(), "0 workloads, 0 services, 0 policies");
  EXPECT_EQ(s.workloadByUid("x"), nullptr);
  EXPECT_EQ(s.workloadByIp(ip("10.0.0.1")), nullptr);
  EXPECT_EQ(s.serviceByVip(ip("10.0.0.1")), nullptr);
  EXPECT_EQ(s.policy("a/b"), nullptr);
  EXPECT_TRUE(s.workloadsOnNode("node1").empty());
}

TEST(SnapshotTest, SummaryUsesSingularForOne) {
  Authorization p;
  p.name = "p";
  p.namespace_name = "shop";
  Service svc;
  svc.name = "cart";
  auto s = Snapshot::create({workload("a", "10.0.0.1", "n1")}, {svc}, {p});
  EXPECT_EQ(s->summary(), "1 workload, 1 service, 1 policy");
}

TEST(SnapshotTest, LooksUpWorkloads) {
  auto s = Snapshot::create({workload("a", "10.0.0.1", "node1"), workload("b", "10.0.0.2", "node2"),
                             workload("c", "fd00::3", "node1")},
                            {}, {});
  ASSERT_NE(s->workloadByUid("b"), nullptr);
  EXPECT_EQ(s->workloadByUid("b")->node, "node2");
  EXPECT_EQ(s->workloadByUid("missing"), nullptr);
  ASSERT_NE(s->workloadByIp(ip("10.0.0.1")), nullptr);
  EXPECT_EQ(s->workloadByIp(ip("10.0.0.1"))->uid, "a");
  ASSERT_NE(s->workloadByIp(ip("fd00::3")), nullptr);
  EXPECT_EQ(s->workloadByIp(ip("fd00::3"))->uid, "c");
  EXPECT_EQ(s->workloadByIp(ip("10.0.0.9")), nullptr);
  auto on_node1 = s->workloadsOnNode("node1");
  ASSERT_EQ(on_node1.size(), 2u);
  EXPECT_EQ(on_node1[0]->uid, "a");
  EXPECT_EQ(on_node1[1]->uid, "c");
}

TEST(SnapshotTest, SharedAddressPrefersHbonePod) {
  // ztunnel's ranking: a pod beats other kinds, then HBONE beats TCP; order does not matter.
  auto tcp_pod = workload("c1//v1/Pod/shop/tcp", "10.0.0.1", "n", Protocol::Tcp);
  auto hbone_pod = workload("c1//v1/Pod/shop/hbone", "10.0.0.1", "n", Protocol::Hbone);
  auto hbone_entry = workload("c1/networking.istio.io/WorkloadEntry/shop/we", "10.0.0.1", "n");
  auto s1 = Snapshot::create({hbone_entry, tcp_pod, hbone_pod}, {}, {});
  EXPECT_EQ(s1->workloadByIp(ip("10.0.0.1"))->uid, "c1//v1/Pod/shop/hbone");
  auto s2 = Snapshot::create({hbone_pod, hbone_entry, tcp_pod}, {}, {});
  EXPECT_EQ(s2->workloadByIp(ip("10.0.0.1"))->uid, "c1//v1/Pod/shop/hbone");
  auto s3 = Snapshot::create({hbone_entry, tcp_pod}, {}, {});
  EXPECT_EQ(s3->workloadByIp(ip("10.0.0.1"))->uid, "c1//v1/Pod/shop/tcp");
}

TEST(SnapshotTest, HostNetworkWorkloadsAreNotFoundByAddress) {
  auto w = workload("host", "10.0.0.5", "n");
  w.network_mode = NetworkMode::HostNetwork;
  auto s = Snapshot::create({w}, {}, {});
  EXPECT_EQ(s->workloadByIp(ip("10.0.0.5")), nullptr);
  EXPECT_NE(s->workloadByUid("host"), nullptr);
}

TEST(SnapshotTest, LooksUpServicesAndMergesEndpoints) {
  Service svc;
  svc.name = "cart";
  svc.namespace_name = "shop";
  svc.hostname = "cart.shop.svc.cluster.local";
  svc.vips.push_back(NetworkAddress{"", ip("10.96.0.20")});
  svc.ports = {{80, 8080}};
  svc.endpoints.push_back(Endpoint{"explicit", {{80, 9090}}, HealthStatus::Healthy});
  svc.endpoints.push_back(Endpoint{"b", {{80, 1}}, HealthStatus::Healthy});
  auto a = workload("a", "10.0.0.1", "n1");
  a.services["shop/cart.shop.svc.cluster.local"] = {{80, 8080}};
  auto b = workload("b", "10.0.0.2", "n1");
  b.status = HealthStatus::Unhealthy;
  b.services["shop/cart.shop.svc.cluster.local"] = {{80, 8081}};
  auto other = workload("c", "10.0.0.3", "n1");
  other.services["shop/other"] = {{80, 80}};
  auto s = Snapshot::create({a, b, other}, {svc}, {});

  const Service* found = s->serviceByVip(ip("10.96.0.20"));
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->name, "cart");
  EXPECT_EQ(s->serviceByKey("shop/cart.shop.svc.cluster.local"), found);
  EXPECT_EQ(s->serviceByVip(ip("10.96.0.21")), nullptr);

  auto eps = s->endpoints(*found);
  ASSERT_EQ(eps.size(), 3u);
  EXPECT_EQ(eps[0], (Endpoint{"a", {{80, 8080}}, HealthStatus::Healthy}));
  // The workload's own entry replaces the explicit endpoint with the same uid.
  EXPECT_EQ(eps[1], (Endpoint{"b", {{80, 8081}}, HealthStatus::Unhealthy}));
  EXPECT_EQ(eps[2], (Endpoint{"explicit", {{80, 9090}}, HealthStatus::Healthy}));
}

TEST(SnapshotTest, LooksUpPolicies) {
  Authorization p;
  p.name = "allow-frontend";
  p.namespace_name = "shop";
  auto s = Snapshot::create({}, {}, {p});
  ASSERT_NE(s->policy("shop/allow-frontend"), nullptr);
  EXPECT_EQ(s->policy("shop/allow-frontend")->name, "allow-frontend");
  EXPECT_EQ(s->policy("allow-frontend"), nullptr);
}

TEST(WorkloadTest, IdentityDefaults) {
  Workload w;
  w.namespace_name = "shop";
  EXPECT_EQ(w.identity(), "spiffe://cluster.local/ns/shop/sa/default");
  w.trust_domain = "example.org";
  w.service_account = "cart";
  EXPECT_EQ(w.identity(), "spiffe://example.org/ns/shop/sa/cart");
  EXPECT_EQ(toString(Protocol::Hbone), "HBONE");
  EXPECT_EQ(toString(Protocol::Tcp), "TCP");
}

TEST(SnapshotTest, WorkloadByName) {
  Workload a = workload("c//Pod/shop/a", "10.0.0.1", "n1");
  a.name = "a";
  Snapshot s({a}, {}, {});
  ASSERT_NE(s.workloadByName("shop/a"), nullptr);
  EXPECT_EQ(s.workloadByName("shop/a")->uid, "c//Pod/shop/a");
  EXPECT_EQ(s.workloadByName("other/a"), nullptr);
}

}  // namespace
}  // namespace nodemesh::model
