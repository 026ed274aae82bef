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

}  // namespace
}  // namespace nodemesh::model
