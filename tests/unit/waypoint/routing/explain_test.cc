// explainRoute(): it describes the decision route() makes (same route, rule and outcome), the
// rule's backends with their shares, the filters, and why other routes did not count.

#include "waypoint/routing/explain.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/waypoint/routing/routing_test_util.h"

namespace nodemesh::waypoint::routing_test {
namespace {

using ::testing::HasSubstr;

model::SnapshotPtr canaryMesh() {
  return mesh(
      httpRoute("canary",
                std::string("{").append(kToCart) +
                    ", rules: [{name: api, matches: [{path: {value: /api}, headers: [{name: "
                    "x-canary, value: 'yes'}]}], filters: [{type: RequestHeaderModifier, "
                    "requestHeaderModifier: {set: [{name: x-route, value: canary}]}}, {type: "
                    "RequestMirror, requestMirror: {backendRef: {name: shadow, port: 80}, "
                    "percent: 10}}], backendRefs: [{name: cart-v1, port: 80, weight: 75}, {name: "
                    "cart-v2, port: 80, weight: 25, filters: [{type: URLRewrite, urlRewrite: "
                    "{hostname: v2.internal}}]}, {name: gone, port: 80, weight: 0}]}]}",
                created("2024-01-01T00:00:00Z")) +
      httpRoute("fallback",
                std::string("{").append(kToCart) +
                    ", rules: [{matches: [{path: {value: /}}], backendRefs: [{name: cart, port: "
                    "80}]}]}") +
      httpRoute("elsewhere",
                "{parentRefs: [{group: '', kind: Service, name: cart, port: 9000}], "
                "rules: [{backendRefs: [{name: cart, port: 9000}]}]}"));
}

TEST(RouteExplainTest, DescribesTheSameDecisionAsRoute) {
  RouteTable table(canaryMesh());
  RequestHead head = request("GET", "/api/items", {{"x-canary", "yes"}});
  RouteExplanation e = explainRoute(table, toCart(), head);
  SeededRandom random(99);
  RouteDecision d = table.route(toCart(), head, random);
  ASSERT_TRUE(e.decision.matched);
  ASSERT_TRUE(d.matched);
  EXPECT_EQ(e.decision.matched->describe(), d.matched->describe());
  EXPECT_EQ(e.decision.matched->describe(), "HTTPRoute shop/canary rule 0 (api) match 0");
  EXPECT_EQ(e.outcome, "forward");

  ASSERT_EQ(e.backends.size(), 3u);
  EXPECT_EQ(e.backends[0].service, "shop/cart-v1");
  EXPECT_DOUBLE_EQ(e.backends[0].percent, 75.0);
  EXPECT_TRUE(e.backends[0].exists);
  EXPECT_DOUBLE_EQ(e.backends[1].percent, 25.0);
  EXPECT_EQ(e.backends[1].filters, std::vector<std::string>{"URLRewrite: hostname v2.internal"});
  EXPECT_FALSE(e.backends[2].exists);
  EXPECT_DOUBLE_EQ(e.backends[2].percent, 0.0);
  EXPECT_THAT(e.filters, ::testing::ElementsAre("RequestHeaderModifier: set x-route: canary",
                                                "RequestMirror: to shadow (10/100)"));
  ASSERT_EQ(e.mirrors.size(), 1u);
  EXPECT_EQ(e.mirrors[0].service, "shop/shadow");
  EXPECT_DOUBLE_EQ(e.mirrors[0].percent, 10.0);

  // Both routes matched; the canary won on the longer prefix.
  ASSERT_EQ(e.trace.matches.size(), 2u);
  EXPECT_EQ(e.trace.matches[1].route->key(), "shop/fallback");
  // The route for port 9000 was seen and left out, with the reason.
  EXPECT_THAT(e.trace.notes,
              ::testing::Contains(HasSubstr("shop/elsewhere: no parentRef for port 80")));
}

TEST(RouteExplainTest, JsonAndTextCarryTheStory) {
  RouteTable table(canaryMesh());
  RouteExplanation e =
      explainRoute(table, toCart(), request("GET", "/api/items", {{"x-canary", "yes"}}));
  nlohmann::json j = e.toJson();
  EXPECT_EQ(j["route"]["name"], "shop/canary");
  EXPECT_EQ(j["route"]["ruleName"], "api");
  EXPECT_EQ(j["backends"].size(), 3u);
  EXPECT_EQ(j["backends"][1]["weight"], 25);
  EXPECT_EQ(j["mirrors"][0]["service"], "shop/shadow");
  EXPECT_EQ(j["outcome"], "forward");
  std::string text = e.toText();
  EXPECT_THAT(text, HasSubstr("winner: HTTPRoute shop/canary rule 0 (api) match 0"));
  EXPECT_THAT(text, HasSubstr("also matched: HTTPRoute shop/fallback rule 0 match 0"));
  EXPECT_THAT(text, HasSubstr("backend shop/cart-v1:80 weight 75 (75.0%)"));
  EXPECT_THAT(text, HasSubstr("backend shop/gone:80 weight 0 (0.0%) MISSING: 500"));
}

TEST(RouteExplainTest, NoRouteAndDefaultRoute) {
  auto snap = mesh(httpRoute("r",
                             "{parentRefs: [{group: '', kind: Service, name: cart, port: 80}], "
                             "rules: [{matches: [{path: {value: /api}}], backendRefs: [{name: "
                             "cart, port: 80}]}]}"));
  RouteTable table(snap);
  RouteExplanation none = explainRoute(table, toCart(), request("GET", "/web"));
  EXPECT_EQ(none.outcome, "respond 404 (NR)");
  EXPECT_EQ(none.toJson()["status"], 404);
  RouteExplanation fallback = explainRoute(table, toCart(9000), request("GET", "/web"));
  EXPECT_EQ(fallback.outcome, "forward (default)");
  EXPECT_THAT(fallback.decision.reason, HasSubstr("default route to the service"));
}

TEST(RouteExplainTest, RedirectShowsTheLocation) {
  auto snap = mesh(httpRoute("r", std::string("{").append(kToCart) +
                                      ", rules: [{filters: [{type: RequestRedirect, "
                                      "requestRedirect: {scheme: https, statusCode: 301}}]}]}"));
  RouteTable table(snap);
  RouteExplanation e = explainRoute(table, toCart(), request("GET", "/x", {}, "cart.shop"));
  EXPECT_EQ(e.outcome, "redirect 301");
  EXPECT_EQ(e.toJson()["location"], "https://cart.shop/x");
  EXPECT_THAT(e.filters, ::testing::ElementsAre("RequestRedirect: status 301, scheme https"));
}

TEST(RouteExplainTest, ShowsTheRetryPolicyOfTheRuleOrTheDefault) {
  RouteTable table(
      mesh(httpRoute("retrying", std::string("{").append(kToCart) +
                                     ", rules: [{matches: [{path: {value: /pay}}], backendRefs: "
                                     "[{name: cart, port: 80}], retry: {codes: [500, 502], "
                                     "attempts: 1, backoff: 10ms}}, {backendRefs: [{name: cart, "
                                     "port: 80}]}]}")));
  RouteExplanation pay = explainRoute(table, toCart(), request("GET", "/pay", {}));
  EXPECT_THAT(
      pay.toText(),
      HasSubstr("  retry: 1 retry on 500, 502, gRPC UNAVAILABLE/CANCELLED and failures before a "
                "response, backoff 10 ms (the rule's)\n"));
  EXPECT_EQ(pay.toJson()["retry"]["source"], "rule");
  EXPECT_EQ(pay.toJson()["retry"]["attempts"], 1);
  RouteExplanation other = explainRoute(table, toCart(), request("GET", "/", {}));
  EXPECT_THAT(
      other.toText(),
      HasSubstr("  retry: 2 retries on 503, gRPC UNAVAILABLE/CANCELLED and failures before a "
                "response, backoff 25 ms (default)\n"));
}

}  // namespace
}  // namespace nodemesh::waypoint::routing_test
