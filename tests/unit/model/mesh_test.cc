// model/mesh.h: the one rule enrollment, the tunnel and `nodemeshctl explain` share.
#include "model/mesh.h"

#include <gtest/gtest.h>

namespace nodemesh::model {
namespace {

IpAddress ip(std::string_view text) {
  return IpAddress::parse(text).value();
}

Workload workload(std::string uid, std::string_view address, Protocol protocol,
                  NetworkMode mode = NetworkMode::Standard) {
  Workload w;
  w.uid = std::move(uid);
  w.namespace_name = "shop";
  w.workload_ips.push_back(ip(address));
  w.protocol = protocol;
  w.network_mode = mode;
  return w;
}

TEST(MeshTest, InMeshMeansHboneAndNotTheHostNetwork) {
  EXPECT_TRUE(inMesh(workload("a", "10.0.0.1", Protocol::Hbone)));
  EXPECT_FALSE(inMesh(workload("b", "10.0.0.2", Protocol::Tcp)));
  EXPECT_FALSE(inMesh(workload("c", "10.0.0.3", Protocol::Hbone, NetworkMode::HostNetwork)));
}

TEST(MeshTest, RoutesServicesFirstThenMeshWorkloadsThenTcp) {
  Service svc;
  svc.name = "cart";
  svc.namespace_name = "shop";
  svc.hostname = "cart.shop.svc.cluster.local";
  svc.vips.push_back(NetworkAddress{"", ip("10.96.0.10")});
  auto s = Snapshot::create(
      {workload("mesh", "10.0.0.1", Protocol::Hbone), workload("tcp", "10.0.0.2", Protocol::Tcp),
       workload("host", "10.0.0.3", Protocol::Hbone, NetworkMode::HostNetwork)},
      {svc}, {});

  auto to_service = routeOutbound(*s, ip("10.96.0.10"), true);
  EXPECT_EQ(to_service.route, OutboundRoute::kService);
  ASSERT_NE(to_service.service, nullptr);
  EXPECT_EQ(to_service.service->name, "cart");

  auto to_mesh = routeOutbound(*s, ip("10.0.0.1"), true);
  EXPECT_EQ(to_mesh.route, OutboundRoute::kHbone);
  ASSERT_NE(to_mesh.workload, nullptr);
  EXPECT_EQ(to_mesh.workload->uid, "mesh");
  // A client without an identity cannot speak HBONE.
  EXPECT_EQ(routeOutbound(*s, ip("10.0.0.1"), false).route, OutboundRoute::kTcp);

  auto to_tcp = routeOutbound(*s, ip("10.0.0.2"), true);
  EXPECT_EQ(to_tcp.route, OutboundRoute::kTcp);
  ASSERT_NE(to_tcp.workload, nullptr);  // known, but outside the mesh
  EXPECT_EQ(routeOutbound(*s, ip("10.0.0.3"), true).route, OutboundRoute::kTcp);
  auto unknown = routeOutbound(*s, ip("192.0.2.1"), true);
  EXPECT_EQ(unknown.route, OutboundRoute::kTcp);
  EXPECT_EQ(unknown.workload, nullptr);
}

// The waypoint of the demo and the e2e tests: a service "waypoint" whose one endpoint is the
// waypoint pod, and a "reviews" service that names it.
class WaypointRouteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Workload wp = workload("wp", "10.0.0.9", Protocol::Tcp);
    wp.service_account = "waypoint";
    wp.services["shop/waypoint.shop.svc.cluster.local"] = {{15008, 15008}};
    Workload client = workload("client", "10.0.0.5", Protocol::Hbone);
    Workload pod = workload("reviews-v1", "10.0.0.7", Protocol::Hbone);
    pod.services["shop/reviews.shop.svc.cluster.local"] = {{9080, 9080}};
    Workload direct = workload("direct", "10.0.0.8", Protocol::Hbone);
    direct.waypoint = GatewayAddress{NetworkAddress{"", ip("10.0.0.9")}, 15008};

    Service waypoint;
    waypoint.name = "waypoint";
    waypoint.namespace_name = "shop";
    waypoint.hostname = "waypoint.shop.svc.cluster.local";
    waypoint.vips.push_back(NetworkAddress{"", ip("10.96.0.9")});
    waypoint.ports = {{15008, 15008}};
    Service reviews;
    reviews.name = "reviews";
    reviews.namespace_name = "shop";
    reviews.hostname = "reviews.shop.svc.cluster.local";
    reviews.vips.push_back(NetworkAddress{"", ip("10.96.0.20")});
    reviews.ports = {{9080, 9080}};
    reviews.waypoint = GatewayAddress{NamespacedHostname{"shop", waypoint.hostname}, 15008};
    Service by_vip = reviews;
    by_vip.name = "ratings";
    by_vip.hostname = "ratings.shop.svc.cluster.local";
    by_vip.vips = {NetworkAddress{"", ip("10.96.0.21")}};
    by_vip.waypoint = GatewayAddress{NetworkAddress{"", ip("10.96.0.9")}, 15008};
    Service lost = reviews;
    lost.name = "lost";
    lost.hostname = "lost.shop.svc.cluster.local";
    lost.vips = {NetworkAddress{"", ip("10.96.0.22")}};
    lost.waypoint = GatewayAddress{NamespacedHostname{"shop", "nowhere"}, 15008};
    snapshot_ = Snapshot::create({wp, client, pod, direct}, {waypoint, reviews, by_vip, lost}, {});
    client_.has_identity = true;
    client_.identity = "spiffe://cluster.local/ns/shop/sa/default";
    client_.ip = ip("10.0.0.5");
  }

  SnapshotPtr snapshot_;
  OutboundSource client_;
};

TEST_F(WaypointRouteTest, AServiceWithAWaypointSendsEverythingToIt) {
  auto d = routeOutbound(*snapshot_, ip("10.96.0.20"), client_);
  ASSERT_EQ(d.route, OutboundRoute::kWaypoint);
  ASSERT_NE(d.service, nullptr);
  EXPECT_EQ(d.service->name, "reviews");  // the original destination stays known
  ASSERT_TRUE(d.waypoint);
  ASSERT_EQ(d.waypoint->workloads.size(), 1U);
  EXPECT_EQ(d.waypoint->workloads[0]->uid, "wp");
  EXPECT_EQ(d.waypoint->address->hbone_mtls_port, 15008);

  // The same waypoint named by its service's VIP.
  auto by_vip = routeOutbound(*snapshot_, ip("10.96.0.21"), client_);
  ASSERT_EQ(by_vip.route, OutboundRoute::kWaypoint);
  ASSERT_EQ(by_vip.waypoint->workloads.size(), 1U);
  EXPECT_EQ(by_vip.waypoint->workloads[0]->uid, "wp");
}

TEST_F(WaypointRouteTest, AWorkloadWaypointAppliesWhenThePodIsAddressedDirectly) {
  auto d = routeOutbound(*snapshot_, ip("10.0.0.8"), client_);
  ASSERT_EQ(d.route, OutboundRoute::kWaypoint);
  ASSERT_NE(d.workload, nullptr);
  EXPECT_EQ(d.workload->uid, "direct");
  ASSERT_EQ(d.waypoint->workloads.size(), 1U);
  EXPECT_EQ(d.waypoint->workloads[0]->uid, "wp");
  // A pod without a waypoint: straight to it.
  EXPECT_EQ(routeOutbound(*snapshot_, ip("10.0.0.7"), client_).route, OutboundRoute::kHbone);
}

TEST_F(WaypointRouteTest, TheWaypointsOwnTrafficIsNeverSentBackToIt) {
  OutboundSource from_wp;
  from_wp.has_identity = true;
  from_wp.identity = "spiffe://cluster.local/ns/shop/sa/waypoint";
  from_wp.ip = ip("10.0.0.9");
  EXPECT_EQ(routeOutbound(*snapshot_, ip("10.96.0.20"), from_wp).route, OutboundRoute::kService);
  EXPECT_EQ(routeOutbound(*snapshot_, ip("10.0.0.8"), from_wp).route, OutboundRoute::kHbone);
  // Its identity from another address is not the waypoint (ztunnel checks both).
  from_wp.ip = ip("10.0.0.5");
  EXPECT_EQ(routeOutbound(*snapshot_, ip("10.96.0.20"), from_wp).route, OutboundRoute::kWaypoint);
}

TEST_F(WaypointRouteTest, WithoutAnIdentityThereIsNoWaypoint) {
  OutboundSource plain;
  plain.ip = ip("10.0.0.5");
  EXPECT_EQ(routeOutbound(*snapshot_, ip("10.96.0.20"), plain).route, OutboundRoute::kService);
  EXPECT_EQ(routeOutbound(*snapshot_, ip("10.0.0.8"), plain).route, OutboundRoute::kTcp);
}

TEST_F(WaypointRouteTest, AMissingWaypointSaysWhy) {
  auto d = routeOutbound(*snapshot_, ip("10.96.0.22"), client_);
  ASSERT_EQ(d.route, OutboundRoute::kWaypoint);
  EXPECT_TRUE(d.waypoint->workloads.empty());
  EXPECT_EQ(d.waypoint->error, "waypoint shop/nowhere:15008 not found");
}

}  // namespace
}  // namespace nodemesh::model
