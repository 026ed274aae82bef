// RouteTable::route() for HTTPRoutes: attachment to a Service (ports, namespaces, consumer
// routes), each precedence rule of the spec, and the 404 / default-route answers.

#include "waypoint/routing/route_table.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/waypoint/routing/routing_test_util.h"

namespace nodemesh::waypoint::routing_test {
namespace {

// A rule with the given matches (flow-style list items) that sends everything to `backend`.
std::string rule(const std::string& matches, const std::string& backend) {
  return "{matches: [" + matches + "], backendRefs: [{name: " + backend + ", port: 80}]}";
}
std::string spec(const std::string& rules, const std::string& parents = kToCart) {
  return "{" + parents + ", rules: [" + rules + "]}";
}

RouteDecision route(const model::SnapshotPtr& snapshot, const RequestHead& head,
                    const RouteTarget& target = toCart(), RouteTableOptions options = {}) {
  RouteTable table(snapshot, options);
  SeededRandom random(1);
  return table.route(target, head, random);
}

TEST(RouteTableTest, ServiceWithoutRoutesGoesToItselfOnTheOriginalPort) {
  // Decisions point into the snapshot: it must outlive them.
  auto snap = mesh("");
  auto d = route(snap, request("GET", "/x"), toCart(9000));
  EXPECT_EQ(d.action, RouteAction::Forward);
  EXPECT_TRUE(d.default_route);
  EXPECT_EQ(backendName(d), "shop/cart");
  EXPECT_EQ(d.backend->port, 9000);
  EXPECT_EQ(d.backend->ref, nullptr);
  EXPECT_TRUE(d.filters.empty());
}

TEST(RouteTableTest, UnknownServiceIs404) {
  RouteTarget target{"shop/nothing.shop.svc.cluster.local", 80, "shop", false};
  auto snap = mesh("");
  auto d = route(snap, request("GET", "/"), target);
  EXPECT_EQ(d.action, RouteAction::Respond);
  EXPECT_EQ(d.status, 404);
  EXPECT_EQ(d.response_flag, "NR");
}

TEST(RouteTableTest, NoMatchingRuleIs404WithFlagNR) {
  auto snap = mesh(httpRoute("r", spec(rule("{path: {value: /api}}", "cart-v1"))));
  auto d = route(snap, request("GET", "/web"));
  EXPECT_EQ(d.action, RouteAction::Respond);
  EXPECT_EQ(d.status, 404);
  EXPECT_EQ(d.response_flag, "NR");
  ASSERT_TRUE(d.response);
  EXPECT_EQ(d.response->status, 404);
  EXPECT_FALSE(d.matched);
  // The same route serves /api.
  EXPECT_EQ(backendName(route(snap, request("GET", "/api/x"))), "shop/cart-v1");
}

TEST(RouteTableTest, ParentRefToAnotherServiceDoesNotAttach) {
  auto snap = mesh(httpRoute("r", spec(rule("{path: {value: /}}", "cart-v2"),
                                       "parentRefs: [{group: '', kind: Service, name: cart-v1}]")));
  auto d = route(snap, request("GET", "/"));
  EXPECT_TRUE(d.default_route);
  EXPECT_EQ(backendName(d), "shop/cart");
}

TEST(RouteTableTest, ParentRefToAGatewayDoesNotAttach) {
  auto snap = mesh(httpRoute("r", spec(rule("{path: {value: /}}", "cart-v2"),
                                       "parentRefs: [{name: cart}]")));  // kind Gateway
  EXPECT_TRUE(route(snap, request("GET", "/")).default_route);
}

TEST(RouteTableTest, ParentRefPortSelectsTheServicePort) {
  auto snap = mesh(
      httpRoute("r", spec(rule("{path: {value: /}}", "cart-v2"),
                          "parentRefs: [{group: '', kind: Service, name: cart, port: 9000}]")));
  EXPECT_EQ(backendName(route(snap, request("GET", "/"), toCart(9000))), "shop/cart-v2");
  EXPECT_TRUE(route(snap, request("GET", "/"), toCart(80)).default_route);
}

TEST(RouteTableTest, SectionNameIsThePortNumber) {
  auto snap = mesh(httpRoute(
      "r", spec(rule("{path: {value: /}}", "cart-v2"),
                "parentRefs: [{group: '', kind: Service, name: cart, sectionName: '9000'}]")));
  EXPECT_EQ(backendName(route(snap, request("GET", "/"), toCart(9000))), "shop/cart-v2");
  EXPECT_TRUE(route(snap, request("GET", "/"), toCart(80)).default_route);
}

TEST(RouteTableTest, ParentRefNamespaceDefaultsToTheRoutes) {
  // In namespace web, "cart" means web/cart, which does not exist: nothing attaches.
  auto snap = mesh(httpRoute("r", spec(rule("{path: {value: /}}", "cart-v2")), "", "web"));
  EXPECT_TRUE(route(snap, request("GET", "/"), toCart(80, "web")).default_route);
}

TEST(RouteTableTest, ConsumerRouteAppliesOnlyToItsNamespaceAndBeatsProducerRoutes) {
  std::string consumer =
      httpRoute("mine",
                "{parentRefs: [{group: '', kind: Service, namespace: shop, name: cart}], rules: [{"
                "backendRefs: [{name: cart-v2, namespace: shop, port: 80}]}]}",
                "", "web");
  std::string producer = httpRoute("theirs", spec(rule("{path: {value: /}}", "cart-v1")));
  auto snap = mesh(consumer + producer);
  EXPECT_EQ(routeName(route(snap, request("GET", "/"), toCart(80, "web"))), "web/mine");
  EXPECT_EQ(backendName(route(snap, request("GET", "/"), toCart(80, "web"))), "shop/cart-v2");
  EXPECT_EQ(routeName(route(snap, request("GET", "/"), toCart(80, "shop"))), "shop/theirs");
  EXPECT_EQ(routeName(route(snap, request("GET", "/"), toCart(80, "other"))), "shop/theirs");
  EXPECT_EQ(routeName(route(snap, request("GET", "/"), toCart(80, ""))), "shop/theirs");
}

TEST(RouteTableTest, ExactPathBeatsAnyPrefix) {
  // The exact match is in a later rule of a newer route: it still wins.
  auto snap = mesh(httpRoute("a", spec(rule("{path: {value: /api/items}}", "cart-v1")),
                             created("2020-01-01T00:00:00Z")) +
                   httpRoute("b",
                             spec(rule("{path: {value: /x}}", "cart") + ", " +
                                  rule("{path: {type: Exact, value: /api/items}}", "cart-v2")),
                             created("2024-01-01T00:00:00Z")));
  EXPECT_EQ(backendName(route(snap, request("GET", "/api/items"))), "shop/cart-v2");
  EXPECT_EQ(backendName(route(snap, request("GET", "/api/items/1"))), "shop/cart-v1");
}

TEST(RouteTableTest, LongestPrefixWins) {
  auto snap = mesh(httpRoute("r", spec(rule("{path: {value: /}}", "cart") + ", " +
                                       rule("{path: {value: /api/}}", "cart-v1") + ", " +
                                       rule("{path: {value: /api/v2}}", "cart-v2"))));
  EXPECT_EQ(backendName(route(snap, request("GET", "/api/v2/x"))), "shop/cart-v2");
  EXPECT_EQ(backendName(route(snap, request("GET", "/api/v3"))), "shop/cart-v1");
  EXPECT_EQ(backendName(route(snap, request("GET", "/api"))), "shop/cart-v1");  // "/api/" ~ "/api"
  EXPECT_EQ(backendName(route(snap, request("GET", "/apix"))), "shop/cart");    // element-wise
  EXPECT_EQ(backendName(route(snap, request("GET", "/api/v2?q=1"))), "shop/cart-v2");
}

TEST(RouteTableTest, PathPrecedenceComesBeforeMethodAndHeaders) {
  auto snap = mesh(httpRoute(
      "r",
      spec(rule("{path: {value: /}, method: GET, headers: [{name: a, value: '1'}]}", "cart-v1") +
           ", " + rule("{path: {value: /api}}", "cart-v2"))));
  EXPECT_EQ(backendName(route(snap, request("GET", "/api", {{"a", "1"}}))), "shop/cart-v2");
}

TEST(RouteTableTest, MethodMatchBeatsMoreHeaders) {
  auto snap = mesh(httpRoute(
      "r", spec(rule("{headers: [{name: a, value: '1'}, {name: b, value: '2'}]}", "cart-v1") +
                ", " + rule("{method: POST}", "cart-v2"))));
  auto post = request("POST", "/", {{"a", "1"}, {"b", "2"}});
  EXPECT_EQ(backendName(route(snap, post)), "shop/cart-v2");
  EXPECT_EQ(backendName(route(snap, request("GET", "/", {{"a", "1"}, {"b", "2"}}))),
            "shop/cart-v1");
}

TEST(RouteTableTest, MoreHeaderMatchesWin) {
  auto snap = mesh(httpRoute(
      "r", spec(rule("{headers: [{name: a, value: '1'}]}", "cart-v1") + ", " +
                rule("{headers: [{name: a, value: '1'}, {name: b, value: '2'}]}", "cart-v2"))));
  EXPECT_EQ(backendName(route(snap, request("GET", "/", {{"a", "1"}, {"b", "2"}}))),
            "shop/cart-v2");
  EXPECT_EQ(backendName(route(snap, request("GET", "/", {{"a", "1"}}))), "shop/cart-v1");
}

TEST(RouteTableTest, HeaderCountBeatsQueryParamCount) {
  auto snap = mesh(httpRoute(
      "r", spec(rule("{queryParams: [{name: x, value: '1'}, {name: y, value: '2'}]}", "cart-v1") +
                ", " + rule("{headers: [{name: a, value: '1'}]}", "cart-v2"))));
  EXPECT_EQ(backendName(route(snap, request("GET", "/?x=1&y=2", {{"a", "1"}}))), "shop/cart-v2");
}

TEST(RouteTableTest, MoreQueryParamMatchesWin) {
  auto snap = mesh(httpRoute(
      "r", spec(rule("{queryParams: [{name: x, value: '1'}]}", "cart-v1") + ", " +
                rule("{queryParams: [{name: x, value: '1'}, {name: y, value: '2'}]}", "cart-v2"))));
  EXPECT_EQ(backendName(route(snap, request("GET", "/?y=2&x=1"))), "shop/cart-v2");
  EXPECT_EQ(backendName(route(snap, request("GET", "/?x=1"))), "shop/cart-v1");
}

TEST(RouteTableTest, TiesGoToTheOldestRoute) {
  std::string same = spec(rule("{path: {value: /}}", "NAME"));
  auto with = [&](const std::string& backend) {
    std::string s = same;
    s.replace(s.find("NAME"), 4, backend);
    return s;
  };
  auto snap = mesh(httpRoute("a", with("cart-v1"), created("2024-06-01T00:00:00Z")) +
                   httpRoute("b", with("cart-v2"), created("2024-01-01T00:00:00Z")));
  EXPECT_EQ(routeName(route(snap, request("GET", "/"))), "shop/b");
  // Then "namespace/name" alphabetically; a route with a timestamp is older than one without.
  auto untimed = mesh(httpRoute("b", with("cart-v2")) + httpRoute("a", with("cart-v1")));
  EXPECT_EQ(routeName(route(untimed, request("GET", "/"))), "shop/a");
  auto mixed = mesh(httpRoute("a", with("cart-v1")) +
                    httpRoute("z", with("cart-v2"), created("2030-01-01T00:00:00Z")));
  EXPECT_EQ(routeName(route(mixed, request("GET", "/"))), "shop/z");
}

TEST(RouteTableTest, WithinARouteTheFirstMatchingRuleWins) {
  auto snap = mesh(httpRoute("r", spec(rule("{path: {value: /a}}", "cart-v1") + ", " +
                                       rule("{path: {value: /a}}", "cart-v2"))));
  auto d = route(snap, request("GET", "/a"));
  EXPECT_EQ(backendName(d), "shop/cart-v1");
  EXPECT_EQ(d.matched->rule_index, 0u);
}

TEST(RouteTableTest, RegexPathRanksBetweenExactAndPrefix) {
  auto snap = mesh(httpRoute(
      "r", spec(rule("{path: {value: /items}}", "cart") + ", " +
                rule("{path: {type: RegularExpression, value: '/items/[0-9]+'}}", "cart-v1") +
                ", " + rule("{path: {type: Exact, value: /items/42}}", "cart-v2"))));
  EXPECT_EQ(backendName(route(snap, request("GET", "/items/42"))), "shop/cart-v2");
  EXPECT_EQ(backendName(route(snap, request("GET", "/items/7"))), "shop/cart-v1");
  // A regex must match the whole path.
  EXPECT_EQ(backendName(route(snap, request("GET", "/items/7/x"))), "shop/cart");
}

TEST(RouteTableTest, HeaderMatchesAreCaseInsensitiveOnNamesAndSeeRepeatedValuesJoined) {
  auto snap = mesh(httpRoute(
      "r",
      spec(rule("{headers: [{name: X-Version, value: 'v1,v2'}]}", "cart-v2") + ", " +
           rule("{headers: [{type: RegularExpression, name: x-user, value: 'a.*'}]}", "cart-v1"))));
  EXPECT_EQ(
      backendName(route(snap, request("GET", "/", {{"x-version", "v1"}, {"x-version", "v2"}}))),
      "shop/cart-v2");
  EXPECT_EQ(backendName(route(snap, request("GET", "/", {{"x-user", "alice"}}))), "shop/cart-v1");
  EXPECT_EQ(route(snap, request("GET", "/", {{"x-user", "bob-a"}})).status, 404);  // full match
  EXPECT_EQ(route(snap, request("GET", "/", {{"x-version", "V1,V2"}})).status,
            404);  // values exact
}

TEST(RouteTableTest, QueryParamsUseTheFirstDecodedValueAndExactNames) {
  auto snap =
      mesh(httpRoute("r", spec(rule("{queryParams: [{name: q, value: 'a b'}]}", "cart-v1"))));
  EXPECT_EQ(backendName(route(snap, request("GET", "/?q=a%20b&q=zzz"))), "shop/cart-v1");
  EXPECT_EQ(route(snap, request("GET", "/?q=zzz&q=a%20b")).status, 404);
  EXPECT_EQ(route(snap, request("GET", "/?Q=a%20b")).status, 404);
}

TEST(RouteTableTest, HostnamesAreIgnoredByDefault) {
  auto snap = mesh(httpRoute("r", std::string("{").append(kToCart) +
                                      ", hostnames: [cart.example.com], rules: [" +
                                      rule("{path: {value: /}}", "cart-v1") + "]}"));
  EXPECT_EQ(backendName(route(snap, request("GET", "/", {}, "cart"))), "shop/cart-v1");
}

TEST(RouteTableTest, AHostHeaderMatchSeesTheAuthority) {
  // What GEP-1294 recommends instead of spec.hostnames.
  auto snap = mesh(httpRoute(
      "r", spec(rule("{headers: [{name: Host, value: 'cart.example.com'}]}", "cart-v1"))));
  EXPECT_EQ(backendName(route(snap, request("GET", "/", {}, "cart.example.com"))), "shop/cart-v1");
  EXPECT_EQ(route(snap, request("GET", "/", {}, "cart")).status, 404);
}

TEST(RouteTableTest, HostnamesMatchWhenEnabledAndExactBeatsWildcard) {
  auto with_hosts = [](const std::string& hosts, const std::string& backend) {
    return std::string("{").append(kToCart) + ", hostnames: [" + hosts + "], rules: [" +
           rule("{path: {value: /}}", backend) + "]}";
  };
  // The wildcard route has the longer path but a hostname match comes first.
  auto snap = mesh(httpRoute("wild", with_hosts("'*.example.com'", "cart-v1")) +
                   httpRoute("exact", with_hosts("a.example.com", "cart-v2")));
  RouteTableOptions match{true};
  EXPECT_EQ(backendName(route(snap, request("GET", "/", {}, "a.example.com:80"), toCart(), match)),
            "shop/cart-v2");
  EXPECT_EQ(backendName(route(snap, request("GET", "/", {}, "B.Example.com"), toCart(), match)),
            "shop/cart-v1");
  EXPECT_EQ(route(snap, request("GET", "/", {}, "example.com"), toCart(), match).status, 404);
}

TEST(RouteTableTest, TimeoutsAndPrefixReachTheDecision) {
  auto snap = mesh(
      httpRoute("r", std::string("{").append(kToCart) +
                         ", rules: [{matches: [{path: {value: /api}}], timeouts: {request: 2s, "
                         "backendRequest: 1s}, backendRefs: [{name: cart-v1, port: 80}]}]}"));
  auto d = route(snap, request("GET", "/api/x"));
  EXPECT_EQ(d.timeouts.request, std::chrono::seconds(2));
  EXPECT_EQ(d.timeouts.backend_request, std::chrono::seconds(1));
  EXPECT_EQ(d.matched_prefix, "/api");
}

TEST(RouteTableTest, OlderGrpcRouteWinsOverAnHttpRouteOnTheSameService) {
  auto snap = mesh(httpRoute("web", spec(rule("{path: {value: /}}", "cart-v1")),
                             created("2024-02-01T00:00:00Z")),
                   grpcRoute("rpc",
                             std::string("{").append(kToCart) +
                                 ", rules: [{backendRefs: [{name: cart-v2, port: 80}]}]}",
                             created("2024-01-01T00:00:00Z")));
  RouteTarget grpc = toCart();
  grpc.grpc = true;
  EXPECT_EQ(backendName(route(snap, request("POST", "/pkg.S/M"), grpc)), "shop/cart-v2");
  // The HTTPRoute is not used at all: a plain HTTP request finds no rule.
  EXPECT_EQ(route(snap, request("GET", "/")).status, 404);
}

}  // namespace
}  // namespace nodemesh::waypoint::routing_test
