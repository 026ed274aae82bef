// Filters on request and response heads: header modifiers, ReplacePrefixMatch per the API's
// table, redirects (Location per the spec's port and scheme rules), URL rewrites, and the same
// filters reached through route() decisions.

#include "waypoint/routing/filters.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/waypoint/routing/routing_test_util.h"

namespace nodemesh::waypoint::routing_test {
namespace {

TEST(FiltersTest, HeaderModifierSetsAddsAndRemovesCaseInsensitively) {
  Headers headers{{"x-set", "old"}, {"X-Set", "older"}, {"x-add", "a"},
                  {"x-gone", "1"},  {"X-GONE", "2"},    {"keep", "k"}};
  model::HeaderModifier m;
  m.set = {{"X-SET", "new"}};
  m.add = {{"X-Add", "b"}};
  m.remove = {"x-Gone"};
  applyHeaderModifier(m, headers);
  EXPECT_EQ(headerValue(headers, "x-set"), "new");
  EXPECT_EQ(headerValue(headers, "x-add"), "a,b");
  EXPECT_EQ(headerValue(headers, "x-gone"), std::nullopt);
  EXPECT_EQ(headerValue(headers, "keep"), "k");
}

TEST(FiltersTest, ReplacePrefixMatchFollowsTheApiTable) {
  struct Row {
    const char* path;
    const char* prefix;
    const char* replacement;
    const char* want;
  };
  // apis/v1/httproute_types.go, HTTPPathModifier.ReplacePrefixMatch.
  const Row rows[] = {
      {"/foo/bar", "/foo", "/xyz", "/xyz/bar"},
      {"/foo/bar", "/foo", "/xyz/", "/xyz/bar"},
      {"/foo/bar", "/foo/", "/xyz", "/xyz/bar"},
      {"/foo/bar", "/foo/", "/xyz/", "/xyz/bar"},
      {"/foo", "/foo", "/xyz", "/xyz"},
      {"/foo/", "/foo", "/xyz", "/xyz/"},
      {"/foo/bar", "/foo", "", "/bar"},
      {"/foo/", "/foo", "", "/"},
      {"/foo", "/foo", "", "/"},
      {"/foo/", "/foo", "/", "/"},
      {"/foo", "/foo", "/", "/"},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(replacePathPrefix(r.path, r.prefix, r.replacement), r.want)
        << r.path << " " << r.prefix << " -> " << r.replacement;
  }
  // The prefix "/" covers every path.
  EXPECT_EQ(replacePathPrefix("/a/b", "/", "/api"), "/api/a/b");
}

TEST(FiltersTest, PathModifiersKeepTheQueryString) {
  model::PathModifier full{model::PathModifierType::ReplaceFullPath, "/new"};
  EXPECT_EQ(modifyPath(full, "/old/x?a=1&b=2", std::nullopt), "/new?a=1&b=2");
  model::PathModifier prefix{model::PathModifierType::ReplacePrefixMatch, "/v2"};
  EXPECT_EQ(modifyPath(prefix, "/v1/items?x=y", std::string("/v1")), "/v2/items?x=y");
}

RequestHead get(const std::string& path, const std::string& authority = "cart.shop:8080") {
  return request("GET", path, {}, authority);
}

std::string location(const ResponseHead& r) {
  return headerValue(r.headers, "location").value_or("<none>");
}

TEST(FiltersTest, RedirectDefaultsToTheRequestAndTheServicePort) {
  model::RequestRedirect r;  // 302, everything from the request
  ResponseHead out = buildRedirect(r, get("/a?b=1"), 8080, std::nullopt);
  EXPECT_EQ(out.status, 302);
  EXPECT_EQ(location(out), "http://cart.shop:8080/a?b=1");
  // Port 80 with http is left out.
  EXPECT_EQ(location(buildRedirect(r, get("/a", "cart"), 80, std::nullopt)), "http://cart/a");
}

TEST(FiltersTest, RedirectSchemeBringsItsWellKnownPort) {
  model::RequestRedirect r;
  r.scheme = "https";
  r.status_code = 301;
  ResponseHead out = buildRedirect(r, get("/a"), 8080, std::nullopt);
  EXPECT_EQ(out.status, 301);
  EXPECT_EQ(location(out), "https://cart.shop/a");  // 443, left out
  r.port = 8443;
  EXPECT_EQ(location(buildRedirect(r, get("/a"), 8080, std::nullopt)), "https://cart.shop:8443/a");
  r.scheme = "http";
  r.port = 443;
  EXPECT_EQ(location(buildRedirect(r, get("/a"), 8080, std::nullopt)), "http://cart.shop:443/a");
}

TEST(FiltersTest, RedirectHostnameAndPaths) {
  model::RequestRedirect r;
  r.hostname = "new.example.com";
  r.port = 80;
  r.path = model::PathModifier{model::PathModifierType::ReplaceFullPath, "/landing"};
  EXPECT_EQ(location(buildRedirect(r, get("/old/page?x=1"), 8080, std::nullopt)),
            "http://new.example.com/landing?x=1");
  r.path = model::PathModifier{model::PathModifierType::ReplacePrefixMatch, "/new"};
  EXPECT_EQ(location(buildRedirect(r, get("/old/page"), 8080, std::string("/old"))),
            "http://new.example.com/new/page");
  for (int code : {301, 302, 303, 307, 308}) {
    r.status_code = code;
    EXPECT_EQ(buildRedirect(r, get("/"), 80, std::nullopt).status, code);
  }
}

TEST(FiltersTest, RedirectToAnIpv6AuthorityKeepsTheBrackets) {
  model::RequestRedirect r;
  EXPECT_EQ(location(buildRedirect(r, get("/a", "[fd00::1]:8080"), 8080, std::nullopt)),
            "http://[fd00::1]:8080/a");
}

TEST(FiltersTest, UrlRewriteReplacesHostAndPath) {
  RequestHead head = get("/api/v1/items?x=1");
  model::UrlRewrite rw;
  rw.hostname = "items.internal";
  rw.path = model::PathModifier{model::PathModifierType::ReplacePrefixMatch, "/"};
  applyUrlRewrite(rw, head, std::string("/api/v1"));
  EXPECT_EQ(head.authority, "items.internal");
  EXPECT_EQ(head.path, "/items?x=1");
}

TEST(FiltersTest, MirrorFiresForItsShare) {
  model::RequestMirror m;
  m.numerator = 1;
  m.denominator = 4;
  SeededRandom random(5);
  int fired = 0;
  for (int i = 0; i < 8000; ++i) fired += mirrorFires(m, random) ? 1 : 0;
  EXPECT_NEAR(fired, 2000, 180);
  m.numerator = 0;
  EXPECT_FALSE(mirrorFires(m, random));
  m.numerator = 4;
  EXPECT_TRUE(mirrorFires(m, random));
}

// Through route(): the decision's filters, applied by the data path.
TEST(FiltersTest, RouteDecisionRewritesWithTheMatchedPrefix) {
  auto snap = mesh(httpRoute(
      "r", "{" + std::string(kToCart) +
               ", rules: [{matches: [{path: {value: /shop/}}], filters: [{type: URLRewrite, "
               "urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}, {type: "
               "RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-from, value: "
               "waypoint}], remove: [cookie]}}, {type: ResponseHeaderModifier, "
               "responseHeaderModifier: {add: [{name: x-served, value: '1'}]}}], backendRefs: "
               "[{name: cart-v1, port: 80}]}]}"));
  RouteTable table(snap);
  SeededRandom random(1);
  RequestHead head = request("GET", "/shop/cart/1?x=2", {{"cookie", "a"}, {"x-from", "client"}});
  RouteDecision d = table.route(toCart(), head, random);
  ASSERT_EQ(d.action, RouteAction::Forward);
  applyRequestFilters(d, head);
  EXPECT_EQ(head.path, "/cart/1?x=2");
  EXPECT_EQ(headerValue(head.headers, "x-from"), "waypoint");
  EXPECT_EQ(headerValue(head.headers, "cookie"), std::nullopt);
  ResponseHead response{200, {{"content-type", "text/plain"}}};
  applyResponseFilters(d, response);
  EXPECT_EQ(headerValue(response.headers, "x-served"), "1");
  EXPECT_EQ(headerValue(response.headers, "content-type"), "text/plain");
}

TEST(FiltersTest, RouteDecisionRedirectsWithoutABackend) {
  auto snap = mesh(httpRoute(
      "r", "{" + std::string(kToCart) +
               ", rules: [{matches: [{path: {value: /old}}], filters: [{type: RequestRedirect, "
               "requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, "
               "statusCode: 308}}]}]}"));
  RouteTable table(snap);
  SeededRandom random(1);
  RouteDecision d =
      table.route(toCart(9000), request("GET", "/old/x?q=1", {}, "cart:9000"), random);
  EXPECT_EQ(d.action, RouteAction::Respond);
  EXPECT_EQ(d.status, 308);
  ASSERT_TRUE(d.response);
  EXPECT_EQ(location(*d.response), "http://cart:9000/new/x?q=1");
  EXPECT_FALSE(d.backend);
}

TEST(FiltersTest, BackendRewriteAppliesOnlyWhenThatBackendIsChosen) {
  auto snap = mesh(httpRoute(
      "r", "{" + std::string(kToCart) +
               ", rules: [{matches: [{path: {value: /api}}], backendRefs: [{name: cart-v1, port: "
               "80}, {name: cart-v2, port: 80, filters: [{type: URLRewrite, urlRewrite: "
               "{hostname: v2.internal}}]}]}]}"));
  RouteTable table(snap);
  for (uint64_t draw : {0u, 1u}) {
    FixedRandom random({draw});
    RequestHead head = request("GET", "/api");
    RouteDecision d = table.route(toCart(), head, random);
    applyRequestFilters(d, head);
    EXPECT_EQ(head.authority, backendName(d) == "shop/cart-v2" ? "v2.internal" : "cart");
  }
}

}  // namespace
}  // namespace nodemesh::waypoint::routing_test
