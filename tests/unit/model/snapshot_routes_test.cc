// Snapshot's route indexes: services by namespace/name, and the routes attached to a service.

#include <gtest/gtest.h>

#include "model/snapshot.h"

namespace nodemesh::model {
namespace {

Service service(std::string name, std::string ns) {
  Service s;
  s.name = std::move(name);
  s.namespace_name = std::move(ns);
  s.hostname = s.name + "." + s.namespace_name + ".svc.cluster.local";
  return s;
}

ParentRef serviceParent(std::string name, std::optional<std::string> ns = std::nullopt) {
  ParentRef p;
  p.group = "";
  p.kind = "Service";
  p.name = std::move(name);
  p.namespace_name = std::move(ns);
  return p;
}

HttpRoute httpRoute(std::string name, std::string ns, std::vector<ParentRef> parents) {
  HttpRoute r;
  r.metadata.name = std::move(name);
  r.metadata.namespace_name = std::move(ns);
  r.parent_refs = std::move(parents);
  return r;
}

TEST(SnapshotRoutesTest, IndexesRoutesByTheServiceTheirParentRefsName) {
  GrpcRoute grpc;
  grpc.metadata = {"g", "shop", std::nullopt};
  grpc.parent_refs = {serviceParent("cart")};
  ParentRef gateway;  // the API's default: a Gateway
  gateway.name = "cart";
  auto s = Snapshot::create(
      {}, {service("cart", "shop"), service("cart", "web")}, {},
      {httpRoute("a", "shop", {serviceParent("cart"), serviceParent("cart", "shop")}),
       httpRoute("b", "web", {serviceParent("cart", "shop")}),
       httpRoute("c", "web", {serviceParent("cart")}), httpRoute("d", "shop", {gateway}),
       httpRoute("e", "shop", {serviceParent("missing")})},
      {grpc});
  EXPECT_EQ(s->summary(), "0 workloads, 2 services, 0 policies, 6 routes");
  ASSERT_NE(s->serviceByName("web/cart"), nullptr);
  EXPECT_EQ(s->serviceByName("web/cart")->key(), "web/cart.web.svc.cluster.local");
  EXPECT_EQ(s->serviceByName("shop/nothing"), nullptr);

  AttachedRoutes shop = s->routesForService("shop/cart.shop.svc.cluster.local");
  ASSERT_EQ(shop.http.size(), 2u);  // "a" once despite two parentRefs, then "b"
  EXPECT_EQ(shop.http[0]->key(), "shop/a");
  EXPECT_EQ(shop.http[1]->key(), "web/b");
  ASSERT_EQ(shop.grpc.size(), 1u);
  AttachedRoutes web = s->routesForService("web/cart.web.svc.cluster.local");
  ASSERT_EQ(web.http.size(), 1u);
  EXPECT_EQ(web.http[0]->key(), "web/c");
  EXPECT_TRUE(s->routesForService("shop/none").empty());
}

TEST(SnapshotRoutesTest, OldConstructorsStillWorkWithoutRoutes) {
  Snapshot empty;
  EXPECT_TRUE(empty.httpRoutes().empty());
  auto s = Snapshot::create({}, {service("cart", "shop")}, {});
  EXPECT_TRUE(s->routesForService("shop/cart.shop.svc.cluster.local").empty());
  EXPECT_FALSE(s->empty());
  EXPECT_FALSE(Snapshot({}, {}, {}, {httpRoute("a", "s", {})}).empty());
}

}  // namespace
}  // namespace nodemesh::model
