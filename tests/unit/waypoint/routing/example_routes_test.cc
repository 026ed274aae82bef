// examples/waypoint-routes.yaml loads, and routes the way its comment says.

#include <gtest/gtest.h>

#include <string>

#include "config/local/local_config.h"
#include "tests/unit/waypoint/routing/routing_test_util.h"
#include "waypoint/routing/filters.h"
#include "waypoint/routing/route_table.h"

namespace nodemesh::waypoint::routing_test {
namespace {

TEST(ExampleRoutesTest, LoadsAndRoutesAsDocumented) {
  config::LoadResult r =
      config::loadLocalConfigFile(std::string(NODEMESH_EXAMPLES_DIR) + "/waypoint-routes.yaml");
  ASSERT_TRUE(r.ok()) << r.problemsText();
  EXPECT_TRUE(r.warnings.empty()) << r.warnings[0].toString();
  EXPECT_EQ(r.snapshot->summary(), "2 workloads, 6 services, 0 policies, 2 routes");
  RouteTable table(r.snapshot);
  SeededRandom random(1);

  auto tester = table.route(toCart(), request("GET", "/api/cart", {{"x-canary", "yes"}}), random);
  EXPECT_EQ(backendName(tester), "shop/cart-v2");

  int v2 = 0;
  for (int i = 0; i < 2000; ++i) {
    auto d = table.route(toCart(), request("GET", "/api/cart"), random);
    ASSERT_EQ(d.matched->rule_name, "api");
    v2 += backendName(d) == "shop/cart-v2" ? 1 : 0;
  }
  EXPECT_NEAR(v2, 200, 60);

  auto legacy = table.route(toCart(), request("GET", "/legacy/items", {}, "cart"), random);
  EXPECT_EQ(legacy.status, 301);
  EXPECT_EQ(headerValue(legacy.response->headers, "location"), "http://cart/api/items");

  EXPECT_EQ(backendName(table.route(toCart(), request("GET", "/"), random)), "shop/cart-v1");

  RouteTarget greeter{"shop/greeter.shop.svc.cluster.local", 9090, "shop", true};
  EXPECT_EQ(
      backendName(table.route(greeter, request("POST", "/helloworld.Greeter/SayHello"), random)),
      "shop/greeter-v2");
  EXPECT_EQ(
      backendName(table.route(greeter, request("POST", "/helloworld.Greeter/SayBye"), random)),
      "shop/greeter");
}

}  // namespace
}  // namespace nodemesh::waypoint::routing_test
