// Authorizer: HTTP attributes checked per request (the waypoint's check), and the L4 treatment
// of the same policies when no request facts are given (the node agent's).

#include <gtest/gtest.h>

#include "model/authorization.h"
#include "policy/authorizer.h"
#include "tests/unit/policy/authorizer_test_util.h"

namespace nodemesh::policy::authorizer_test {
namespace {

using model::Condition;
using model::istioStringMatch;

// A request to shop/cart from shop/frontend.
struct Request {
  std::string method = "GET";
  std::string host = "cart.shop.svc.cluster.local";
  std::string path = "/api/items";
  std::map<std::string, std::string> headers;
  std::optional<RequestAuth> auth;

  RequestAttributes attributes() const {
    RequestAttributes a;
    a.method = method;
    a.host = host;
    a.path = path;
    a.header = [this](std::string_view name) -> std::optional<std::string> {
      auto it = headers.find(std::string(name));
      if (it == headers.end()) return std::nullopt;
      return it->second;
    };
    a.auth = auth ? &*auth : nullptr;
    return a;
  }
};

Verdict checkRequest(const Authorizer& a, const Request& r) {
  RequestAttributes attrs = r.attributes();
  ConnectionAttributes c = kFromShop;
  c.request = &attrs;
  return a.check(destination(a, "cart"), c);
}

Strings istio(std::initializer_list<std::string_view> texts) {
  Strings out;
  for (std::string_view t : texts) out.push_back(istioStringMatch(t));
  return out;
}

Match methods(std::initializer_list<std::string_view> v) {
  Match m;
  m.methods = istio(v);
  m.l7_fields = {"methods"};
  return m;
}

Match paths(std::initializer_list<std::string_view> v, bool negate = false) {
  Match m;
  (negate ? m.not_paths : m.paths) = istio(v);
  m.l7_fields = {negate ? "notPaths" : "paths"};
  return m;
}

Match when(Condition c) {
  Match m;
  m.when.push_back(std::move(c));
  if (m.when.back().isL7()) m.l7_fields = {"when"};
  return m;
}

Condition header(std::string name, std::initializer_list<std::string_view> values) {
  Condition c;
  c.key = Condition::Key::kRequestHeader;
  c.header = std::move(name);
  c.values = istio(values);
  return c;
}

TEST(IstioStringMatch, Forms) {
  EXPECT_EQ(istioStringMatch("*"), StringMatch::presence());
  EXPECT_EQ(istioStringMatch("/api/*"), StringMatch::prefix("/api/"));
  EXPECT_EQ(istioStringMatch("*.css"), StringMatch::suffix(".css"));
  EXPECT_EQ(istioStringMatch("/exact"), StringMatch::exact("/exact"));
}

TEST(AuthorizerL7, MethodsAllowGetDenyPost) {
  auto a = authorizer({nsPolicy("shop/allow-get", kAllow, {only(methods({"GET", "HEAD"}))})});
  Request get;
  EXPECT_TRUE(checkRequest(*a, get).allowed);
  EXPECT_EQ(checkRequest(*a, get).reason(), "allowed by ALLOW policy shop/allow-get rule 0");
  Request post;
  post.method = "POST";
  Verdict v = checkRequest(*a, post);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.outcome, Outcome::NoAllowMatched);
}

TEST(AuthorizerL7, PathForms) {
  auto a = authorizer(
      {nsPolicy("shop/deny-admin", kDeny,
                {only(paths({"/admin/*"})), only(paths({"*.secret"})), only(paths({"/exact"}))})});
  auto verdict = [&](std::string path) {
    Request r;
    r.path = std::move(path);
    return checkRequest(*a, r);
  };
  EXPECT_FALSE(verdict("/admin/users").allowed);
  EXPECT_EQ(verdict("/admin/users").rule, 0u);
  EXPECT_FALSE(verdict("/x/key.secret").allowed);
  EXPECT_EQ(verdict("/x/key.secret").rule, 1u);
  EXPECT_FALSE(verdict("/exact").allowed);
  EXPECT_TRUE(verdict("/exact/more").allowed);
  EXPECT_TRUE(verdict("/administrator").allowed);
  EXPECT_TRUE(verdict("/api").allowed);
}

TEST(AuthorizerL7, NotPathsAndPresence) {
  auto a = authorizer({nsPolicy("shop/only-api", kAllow, {only(paths({"/api/*"}, true))})});
  Request r;
  EXPECT_FALSE(checkRequest(*a, r).allowed);  // /api/items is excluded
  r.path = "/health";
  EXPECT_TRUE(checkRequest(*a, r).allowed);
}

TEST(AuthorizerL7, HostsMatchLowercaseWithoutPort) {
  Match m;
  m.hosts = istio({"cart.shop.svc.cluster.local", "*.example.com"});
  m.l7_fields = {"hosts"};
  auto a = authorizer({nsPolicy("shop/hosts", kAllow, {only(m)})});
  Request r;
  EXPECT_TRUE(checkRequest(*a, r).allowed);
  r.host = "shop.example.com";
  EXPECT_TRUE(checkRequest(*a, r).allowed);
  r.host = "other.svc";
  EXPECT_FALSE(checkRequest(*a, r).allowed);
}

TEST(AuthorizerL7, RequestPrincipalsNeedAValidJwt) {
  Match m;
  m.request_principals = istio({"https://issuer.example/*"});
  m.l7_fields = {"requestPrincipals"};
  auto a = authorizer({nsPolicy("shop/jwt", kAllow, {only(m)})});
  Request r;
  EXPECT_FALSE(checkRequest(*a, r).allowed);  // no token
  r.auth = RequestAuth{"https://issuer.example/alice", {"shop"}, "", {}};
  EXPECT_TRUE(checkRequest(*a, r).allowed);
  r.auth->principal = "https://other/alice";
  EXPECT_FALSE(checkRequest(*a, r).allowed);
}

TEST(AuthorizerL7, WhenHeaderAndClaims) {
  Condition claim;
  claim.key = Condition::Key::kAuthClaim;
  claim.claim_path = {"realm", "role"};
  claim.values = istio({"admin"});
  Condition not_header = header("x-env", {});
  not_header.not_values = istio({"dev*"});
  auto a = authorizer({nsPolicy(
      "shop/when", kAllow,
      {Rule{{when(header("x-user", {"alice", "bob"}))}, {when(not_header)}}, only(when(claim))})});
  Request r;
  EXPECT_FALSE(checkRequest(*a, r).allowed);
  r.headers["x-user"] = "bob";
  EXPECT_TRUE(checkRequest(*a, r).allowed);
  r.headers["x-env"] = "development";
  EXPECT_FALSE(checkRequest(*a, r).allowed);  // both clauses of rule 0 must match
  r.auth = RequestAuth{"iss/sub", {}, "", {{{"realm", "role"}, {"viewer", "admin"}}}};
  Verdict v = checkRequest(*a, r);
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.rule, 1u);
}

TEST(AuthorizerL7, WhenOnL4KeysAppliesAtL4Too) {
  Condition c;
  c.key = Condition::Key::kSourceNamespace;
  c.values = istio({"shop"});
  auto a = authorizer({nsPolicy("shop/ns", kAllow, {only(when(c))})});
  EXPECT_TRUE(a->check(destination(*a, "cart"), kFromShop).allowed);
  EXPECT_FALSE(a->check(destination(*a, "cart"), kFromDev).allowed);
}

// The same policies without request facts get the L4 treatment (docs/policy.md): an ALLOW rule
// naming an HTTP attribute never matches; in a DENY rule it counts as matched.
TEST(AuthorizerL7, WithoutRequestFactsL4Treatment) {
  auto allow = authorizer({nsPolicy("shop/allow-get", kAllow, {only(methods({"GET"}))})});
  EXPECT_FALSE(allow->check(destination(*allow, "cart"), kFromShop).allowed);
  auto deny = authorizer({nsPolicy("shop/deny-post", kDeny, {only(methods({"POST"}))})});
  EXPECT_FALSE(deny->check(destination(*deny, "cart"), kFromShop).allowed);
  Request get;
  EXPECT_TRUE(checkRequest(*deny, get).allowed);
}

TEST(AuthorizerL7, DenyBeforeAllow) {
  auto a = authorizer({nsPolicy("shop/allow-all-get", kAllow, {only(methods({"GET"}))}),
                       nsPolicy("shop/deny-admin", kDeny, {only(paths({"/admin*"}))})});
  Request r;
  r.path = "/admin";
  Verdict v = checkRequest(*a, r);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.reason(), "denied by DENY policy shop/deny-admin rule 0");
}

TEST(AuthorizerL7, RemoteIpBlocks) {
  Match m;
  m.remote_ip_blocks = cidrs({"10.0.0.0/24"});
  m.l7_fields = {"remoteIpBlocks"};
  auto a = authorizer({nsPolicy("shop/remote", kAllow, {only(m)})});
  Request r;
  EXPECT_TRUE(checkRequest(*a, r).allowed);  // kFromShop comes from 10.0.0.3
}

}  // namespace
}  // namespace nodemesh::policy::authorizer_test
