// RouteTable::route() for GRPCRoutes: service/method matching (Exact and RegularExpression),
// header matches, the GRPCRoute precedence rules, and which requests GRPCRoutes apply to.

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/waypoint/routing/routing_test_util.h"
#include "waypoint/routing/route_table.h"

namespace nodemesh::waypoint::routing_test {
namespace {

std::string grpcRule(const std::string& matches, const std::string& backend) {
  return "{matches: [" + matches + "], backendRefs: [{name: " + backend + ", port: 9090}]}";
}
std::string grpcSpec(const std::string& rules) {
  return std::string("{").append(kToGreeter) + ", rules: [" + rules + "]}";
}

RouteTarget toGreeter(bool grpc = true) {
  return RouteTarget{kGreeter, 9090, "shop", grpc};
}

std::string routeGrpc(const model::SnapshotPtr& snapshot, const std::string& path,
                      Headers headers = {}, bool grpc = true) {
  RouteTable table(snapshot);
  SeededRandom random(1);
  RouteDecision d =
      table.route(toGreeter(grpc), request("POST", path, std::move(headers), "greeter"), random);
  return d.action == RouteAction::Forward ? backendName(d) : std::to_string(d.status);
}

TEST(GrpcRouteTest, ExactServiceAndMethod) {
  auto snap = mesh(
      "",
      grpcRoute("g", grpcSpec(grpcRule("{method: {service: helloworld.Greeter, method: SayHello}}",
                                       "greeter-v2"))));
  EXPECT_EQ(routeGrpc(snap, "/helloworld.Greeter/SayHello"), "shop/greeter-v2");
  EXPECT_EQ(routeGrpc(snap, "/helloworld.Greeter/SayBye"), "404");
  EXPECT_EQ(routeGrpc(snap, "/helloworld.greeter/SayHello"), "404");  // case-sensitive
  EXPECT_EQ(routeGrpc(snap, "/other.Greeter/SayHello"), "404");
}

TEST(GrpcRouteTest, ServiceOnlyOrMethodOnlyMatchesAnyOfTheOther) {
  auto snap =
      mesh("", grpcRoute("g", grpcSpec(grpcRule("{method: {service: a.S}}", "greeter-v2") + ", " +
                                       grpcRule("{method: {method: Ping}}", "greeter"))));
  EXPECT_EQ(routeGrpc(snap, "/a.S/Anything"), "shop/greeter-v2");
  EXPECT_EQ(routeGrpc(snap, "/b.T/Ping"), "shop/greeter");
  EXPECT_EQ(routeGrpc(snap, "/b.T/Pong"), "404");
}

TEST(GrpcRouteTest, RegularExpressionMatchesServiceAndMethodWhole) {
  auto snap =
      mesh("", grpcRoute("g", grpcSpec(grpcRule(
                                  "{method: {type: RegularExpression, service: 'helloworld\\..*',"
                                  " method: 'Say.*'}}",
                                  "greeter-v2"))));
  EXPECT_EQ(routeGrpc(snap, "/helloworld.Greeter/SayHello"), "shop/greeter-v2");
  EXPECT_EQ(routeGrpc(snap, "/helloworld.Greeter/Hello"), "404");
  EXPECT_EQ(routeGrpc(snap, "/xhelloworld.Greeter/SayHello"), "404");
}

TEST(GrpcRouteTest, HeadersMustAllMatch) {
  auto snap =
      mesh("", grpcRoute("g", grpcSpec(grpcRule("{headers: [{name: x-tenant, value: a}, {type: "
                                                "RegularExpression, name: x-v, value: 'v[12]'}]}",
                                                "greeter-v2"))));
  EXPECT_EQ(routeGrpc(snap, "/a.S/M", {{"x-tenant", "a"}, {"x-v", "v2"}}), "shop/greeter-v2");
  EXPECT_EQ(routeGrpc(snap, "/a.S/M", {{"x-tenant", "a"}, {"x-v", "v3"}}), "404");
  EXPECT_EQ(routeGrpc(snap, "/a.S/M", {{"x-tenant", "a"}}), "404");
}

TEST(GrpcRouteTest, LongerServiceMatchWinsThenMethodThenHeaders) {
  auto snap = mesh(
      "",
      grpcRoute("g", grpcSpec(grpcRule("{method: {method: Get}, headers: [{name: a, value: "
                                       "'1'}]}",
                                       "greeter") +
                              ", " + grpcRule("{method: {service: pkg.Items}}", "greeter-v2"))));
  // The service match has more matching characters than a method-only match with a header.
  EXPECT_EQ(routeGrpc(snap, "/pkg.Items/Get", {{"a", "1"}}), "shop/greeter-v2");

  auto by_method = mesh(
      "",
      grpcRoute(
          "g",
          grpcSpec(grpcRule("{method: {service: pkg.Items}, headers: [{name: a, "
                            "value: '1'}]}",
                            "greeter") +
                   ", " + grpcRule("{method: {service: pkg.Items, method: Get}}", "greeter-v2"))));
  EXPECT_EQ(routeGrpc(by_method, "/pkg.Items/Get", {{"a", "1"}}), "shop/greeter-v2");

  auto by_headers = mesh(
      "", grpcRoute("g", grpcSpec(grpcRule("{method: {method: Get}}", "greeter") + ", " +
                                  grpcRule("{method: {method: Get}, headers: [{name: a, value: "
                                           "'1'}]}",
                                           "greeter-v2"))));
  EXPECT_EQ(routeGrpc(by_headers, "/pkg.Items/Get", {{"a", "1"}}), "shop/greeter-v2");
  EXPECT_EQ(routeGrpc(by_headers, "/pkg.Items/Get"), "shop/greeter");
}

TEST(GrpcRouteTest, TiesGoToTheOldestRouteThenTheFirstRule) {
  std::string rules = grpcRule("{method: {service: a.S}}", "greeter");
  std::string rules_v2 = grpcRule("{method: {service: a.S}}", "greeter-v2");
  auto snap = mesh("", grpcRoute("new", grpcSpec(rules), created("2024-06-01T00:00:00Z")) +
                           grpcRoute("old", grpcSpec(rules_v2), created("2023-06-01T00:00:00Z")));
  EXPECT_EQ(routeGrpc(snap, "/a.S/M"), "shop/greeter-v2");
  auto in_one = mesh("", grpcRoute("g", grpcSpec(rules_v2 + ", " + rules)));
  EXPECT_EQ(routeGrpc(in_one, "/a.S/M"), "shop/greeter-v2");
}

TEST(GrpcRouteTest, RuleWithoutMatchesTakesEveryGrpcRequest) {
  auto snap = mesh("", grpcRoute("g", std::string("{").append(kToGreeter) +
                                          ", rules: [{backendRefs: [{name: greeter-v2, port: "
                                          "9090}]}]}"));
  EXPECT_EQ(routeGrpc(snap, "/x.Y/Z"), "shop/greeter-v2");
  EXPECT_EQ(routeGrpc(snap, "/not-grpc"), "404");  // not a /service/method path
}

TEST(GrpcRouteTest, WeightsSplitGrpcTraffic) {
  auto snap = mesh("", grpcRoute("g", std::string("{").append(kToGreeter) +
                                          ", rules: [{backendRefs: [{name: greeter, port: 9090, "
                                          "weight: 1}, {name: greeter-v2, port: 9090, weight: "
                                          "3}]}]}"));
  RouteTable table(snap);
  SeededRandom random(11);
  int v2 = 0;
  for (int i = 0; i < 8000; ++i) {
    RouteDecision d = table.route(toGreeter(), request("POST", "/a.S/M"), random);
    if (backendName(d) == "shop/greeter-v2") ++v2;
  }
  EXPECT_NEAR(v2, 6000, 200);
}

TEST(GrpcRouteTest, GrpcRoutesDoNotServePlainHttpRequests) {
  auto snap =
      mesh("", grpcRoute("g", grpcSpec(grpcRule("{method: {service: a.S}}", "greeter-v2"))));
  EXPECT_EQ(routeGrpc(snap, "/a.S/M", {}, /*grpc=*/false), "404");
}

TEST(GrpcRouteTest, GrpcRequestsUseHttpRoutesWhenNoGrpcRouteIsAttached) {
  auto snap = mesh(httpRoute("h", std::string("{").append(kToGreeter) +
                                      ", rules: [{matches: [{path: {value: /a.S}}], backendRefs: "
                                      "[{name: greeter-v2, port: 9090}]}]}"));
  EXPECT_EQ(routeGrpc(snap, "/a.S/M"), "shop/greeter-v2");
}

TEST(GrpcRouteTest, ParsesGrpcPaths) {
  auto name = parseGrpcPath("/helloworld.Greeter/SayHello");
  ASSERT_TRUE(name);
  EXPECT_EQ(name->service, "helloworld.Greeter");
  EXPECT_EQ(name->method, "SayHello");
  EXPECT_FALSE(parseGrpcPath("/"));
  EXPECT_FALSE(parseGrpcPath("/a.S/"));
  EXPECT_FALSE(parseGrpcPath("//M"));
  EXPECT_FALSE(parseGrpcPath("/a/b/c"));
  EXPECT_FALSE(parseGrpcPath("a.S/M"));
}

}  // namespace
}  // namespace nodemesh::waypoint::routing_test
