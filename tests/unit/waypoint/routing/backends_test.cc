// RouteTable::route(): backends chosen by weight, the 500 answers for rules that cannot forward,
// the backend port and per-backend filters, and which mirrors a request goes to.

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "tests/unit/waypoint/routing/routing_test_util.h"
#include "waypoint/routing/route_table.h"

namespace nodemesh::waypoint::routing_test {
namespace {

// A route for cart whose one rule has these backendRefs (a flow-style list body).
model::SnapshotPtr withBackends(const std::string& backends, const std::string& filters = "") {
  std::string rule = "{backendRefs: [" + backends + "]" +
                     (filters.empty() ? "" : ", filters: [" + filters + "]") + "}";
  return mesh(httpRoute("r", std::string("{").append(kToCart) + ", rules: [" + rule + "]}"));
}

// How many of `n` requests each outcome got: a backend's "namespace/name", or "500".
std::map<std::string, int> spread(const model::SnapshotPtr& snapshot, int n, uint64_t seed = 7) {
  RouteTable table(snapshot);
  SeededRandom random(seed);
  std::map<std::string, int> out;
  for (int i = 0; i < n; ++i) {
    RouteDecision d = table.route(toCart(), request("GET", "/"), random);
    out[d.action == RouteAction::Forward ? backendName(d) : std::to_string(d.status)]++;
  }
  return out;
}

TEST(BackendsTest, NinetyTenSplitOverTenThousandRequests) {
  auto counts = spread(withBackends("{name: cart-v1, port: 80, weight: 90}, "
                                    "{name: cart-v2, port: 80, weight: 10}"),
                       10000);
  // Binomial(10000, 0.1): sigma = 30, so +-150 is five sigma.
  EXPECT_NEAR(counts["shop/cart-v2"], 1000, 150);
  EXPECT_EQ(counts["shop/cart-v1"] + counts["shop/cart-v2"], 10000);
}

TEST(BackendsTest, EqualWeightsSplitEvenly) {
  auto counts = spread(withBackends("{name: cart-v1, port: 80}, {name: cart-v2, port: 80}, "
                                    "{name: cart, port: 80}"),
                       9000);
  for (const char* name : {"shop/cart", "shop/cart-v1", "shop/cart-v2"}) {
    EXPECT_NEAR(counts[name], 3000, 225) << name;
  }
}

TEST(BackendsTest, ZeroWeightIsNeverChosen) {
  auto counts = spread(withBackends("{name: cart-v1, port: 80, weight: 0}, "
                                    "{name: cart-v2, port: 80, weight: 1}, "
                                    "{name: cart, port: 80, weight: 0}"),
                       2000);
  EXPECT_EQ(counts["shop/cart-v2"], 2000);
  // Even the extreme draws of the random source land on the weighted backend.
  RouteTable table(
      withBackends("{name: cart-v1, port: 80, weight: 0}, "
                   "{name: cart-v2, port: 80, weight: 5}, "
                   "{name: cart, port: 80, weight: 0}"));
  for (uint64_t draw : {0u, 4u}) {
    FixedRandom random({draw});
    EXPECT_EQ(backendName(table.route(toCart(), request("GET", "/"), random)), "shop/cart-v2");
  }
}

TEST(BackendsTest, AllWeightsZeroIs500) {
  auto counts = spread(withBackends("{name: cart-v1, port: 80, weight: 0}, "
                                    "{name: cart-v2, port: 80, weight: 0}"),
                       100);
  EXPECT_EQ(counts["500"], 100);
  RouteTable table(withBackends("{name: cart-v1, port: 80, weight: 0}"));
  SeededRandom random(1);
  RouteDecision d = table.route(toCart(), request("GET", "/"), random);
  EXPECT_EQ(d.action, RouteAction::Respond);
  EXPECT_EQ(d.response_flag, "NC");
  EXPECT_NE(d.reason.find("every backendRef has weight 0"), std::string::npos) << d.reason;
  ASSERT_TRUE(d.matched);  // the rule matched; it just cannot forward
}

TEST(BackendsTest, RuleWithoutBackendRefsIs500) {
  auto snap = mesh(httpRoute("r", std::string("{").append(kToCart) + "}"));  // the default rule
  RouteTable table(snap);
  SeededRandom random(1);
  RouteDecision d = table.route(toCart(), request("GET", "/anything"), random);
  EXPECT_EQ(d.status, 500);
  EXPECT_NE(d.reason.find("no backendRefs"), std::string::npos) << d.reason;
}

TEST(BackendsTest, MissingBackendServiceIs500ForItsShareOnly) {
  auto all_missing = spread(withBackends("{name: gone, port: 80}"), 50);
  EXPECT_EQ(all_missing["500"], 50);
  auto half = spread(withBackends("{name: gone, port: 80}, {name: cart-v1, port: 80}"), 4000);
  EXPECT_NEAR(half["500"], 2000, 200);
  EXPECT_EQ(half["500"] + half["shop/cart-v1"], 4000);
}

TEST(BackendsTest, BackendPortTheServiceDoesNotHaveIs500) {
  RouteTable table(withBackends("{name: cart-v1, port: 81}"));
  SeededRandom random(1);
  RouteDecision d = table.route(toCart(), request("GET", "/"), random);
  EXPECT_EQ(d.status, 500);
  EXPECT_NE(d.reason.find("has no port 81"), std::string::npos) << d.reason;
}

TEST(BackendsTest, DecisionCarriesTheBackendPortAndItsFilters) {
  RouteTable table(withBackends(
      "{name: cart, port: 9000, filters: [{type: RequestHeaderModifier, requestHeaderModifier: "
      "{add: [{name: x-b, value: '1'}]}}]}",
      "{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-r, value: '1'}]}}"));
  SeededRandom random(1);
  RouteDecision d = table.route(toCart(), request("GET", "/"), random);
  ASSERT_EQ(d.action, RouteAction::Forward);
  EXPECT_EQ(backendName(d), "shop/cart");
  EXPECT_EQ(d.backend->port, 9000);
  ASSERT_EQ(d.filters.size(), 2u);  // the rule's, then the backend's
  EXPECT_EQ(std::get<model::HeaderModifier>(d.filters[0]->config).add[0].name, "x-r");
  EXPECT_EQ(std::get<model::HeaderModifier>(d.filters[1]->config).add[0].name, "x-b");
}

TEST(BackendsTest, MirrorPercentDecidesPerRequest) {
  auto snap = withBackends("{name: cart-v1, port: 80}",
                           "{type: RequestMirror, requestMirror: {backendRef: {name: shadow, "
                           "port: 80}, percent: 30}}");
  RouteTable table(snap);
  SeededRandom random(3);
  int mirrored = 0;
  for (int i = 0; i < 10000; ++i) {
    RouteDecision d = table.route(toCart(), request("GET", "/"), random);
    ASSERT_EQ(backendName(d), "shop/cart-v1");  // mirroring never changes the real backend
    if (!d.mirrors.empty()) {
      ++mirrored;
      EXPECT_EQ(d.mirrors[0].service->name, "shadow");
      EXPECT_EQ(d.mirrors[0].port, 80);
    }
  }
  EXPECT_NEAR(mirrored, 3000, 230);
}

TEST(BackendsTest, MirrorsWithoutPercentAlwaysFireAndZeroNever) {
  auto snap = withBackends(
      "{name: cart-v1, port: 80}",
      "{type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 80}}}, "
      "{type: RequestMirror, requestMirror: {backendRef: {name: cart-v2, port: 80}, percent: 0}}, "
      "{type: RequestMirror, requestMirror: {backendRef: {name: gone, port: 80}}}");
  RouteTable table(snap);
  SeededRandom random(3);
  for (int i = 0; i < 200; ++i) {
    RouteDecision d = table.route(toCart(), request("GET", "/"), random);
    // shadow always; cart-v2 at 0% never; the missing service is dropped.
    ASSERT_EQ(d.mirrors.size(), 1u);
    EXPECT_EQ(d.mirrors[0].service->name, "shadow");
  }
}

}  // namespace
}  // namespace nodemesh::waypoint::routing_test
