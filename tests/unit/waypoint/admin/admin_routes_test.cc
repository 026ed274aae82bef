// The waypoint's admin handlers without sockets: GET /routes (the routes of the services that
// use this waypoint) and GET /explain/request (the routing engine's explanation; bad query
// parameters get 400 with a message).
#include <gtest/gtest.h>

#include <chrono>

#include "tests/support/jwt_signer.h"
#include "tests/unit/waypoint/waypoint_mesh_util.h"
#include "waypoint/admin.h"

namespace nodemesh::waypoint {
namespace {

using mesh_test::kWaypointUid;
using mesh_test::mesh;
using nlohmann::json;

// cart-split on cart (through the waypoint): beta testers to v2, the rest 90/10; orders-route
// on orders, which has no waypoint.
const char* const kRoutes =
    "- apiVersion: gateway.networking.k8s.io/v1\n"
    "  kind: HTTPRoute\n"
    "  metadata: {name: cart-split, namespace: shop}\n"
    "  spec:\n"
    "    parentRefs: [{group: '', kind: Service, name: cart, port: 80}]\n"
    "    rules:\n"
    "    - name: beta\n"
    "      matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-user-group,"
    " value: beta}]}]\n"
    "      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-beta,"
    " value: '1'}]}}]\n"
    "      backendRefs: [{name: cart-v2, port: 80}]\n"
    "    - backendRefs:\n"
    "      - {name: cart-v1, port: 80, weight: 90}\n"
    "      - {name: cart-v2, port: 80, weight: 10}\n"
    "- apiVersion: gateway.networking.k8s.io/v1\n"
    "  kind: HTTPRoute\n"
    "  metadata: {name: orders-route, namespace: shop}\n"
    "  spec:\n"
    "    parentRefs: [{group: '', kind: Service, name: orders}]\n"
    "    rules: [{backendRefs: [{name: cart-v1, port: 80}]}]\n";

TEST(WaypointAdminRoutesTest, ListsTheRoutesOfTheServicesUsingThisWaypoint) {
  auto snap = mesh("", kRoutes);
  json j = routesJson(*snap, kWaypointUid);
  EXPECT_EQ(j["waypoint"], kWaypointUid);
  ASSERT_EQ(j["services"].size(), 1u) << j.dump(2);
  EXPECT_EQ(j["services"][0]["service"], "shop/cart");
  EXPECT_EQ(j["services"][0]["ports"], json::array({80}));
  ASSERT_EQ(j["routes"].size(), 1u) << j.dump(2);  // not orders-route: orders has no waypoint
  const json& r = j["routes"][0];
  EXPECT_EQ(r["kind"], "HTTPRoute");
  EXPECT_EQ(r["name"], "shop/cart-split");
  ASSERT_EQ(r["parents"].size(), 1u);
  EXPECT_EQ(r["parents"][0]["service"], "shop/cart");
  EXPECT_EQ(r["parents"][0]["port"], 80);
  EXPECT_EQ(r["parents"][0]["servedHere"], true);
  ASSERT_EQ(r["rules"].size(), 2u);
  const json& beta = r["rules"][0];
  EXPECT_EQ(beta["name"], "beta");
  EXPECT_EQ(beta["matches"][0]["path"], json({{"type", "PathPrefix"}, {"value", "/api"}}));
  EXPECT_EQ(beta["matches"][0]["headers"][0],
            json({{"type", "Exact"}, {"name", "x-user-group"}, {"value", "beta"}}));
  EXPECT_EQ(beta["filters"], json::array({"RequestHeaderModifier: set x-beta: 1"}));
  EXPECT_EQ(beta["backends"][0]["service"], "shop/cart-v2");
  EXPECT_EQ(beta["backends"][0]["percent"], 100.0);
  const json& split = r["rules"][1]["backends"];
  ASSERT_EQ(split.size(), 2u);
  EXPECT_EQ(split[0]["service"], "shop/cart-v1");
  EXPECT_EQ(split[0]["weight"], 90);
  EXPECT_EQ(split[0]["percent"], 90.0);
  EXPECT_EQ(split[0]["exists"], true);
  EXPECT_EQ(split[1]["weight"], 10);
  // The default match (PathPrefix /) is shown as the engine sees it.
  EXPECT_EQ(r["rules"][1]["matches"][0]["path"]["value"], "/");
}

TEST(WaypointAdminRoutesTest, AnotherWaypointHoldsNoRoutes) {
  auto snap = mesh("", kRoutes);
  json j = routesJson(*snap, "cluster1//v1/Pod/shop/cart-v1-0");
  EXPECT_TRUE(j["services"].empty());
  EXPECT_TRUE(j["routes"].empty());
}

json explain(const model::SnapshotPtr& snap, const QueryParams& q, int want_status = 200) {
  http::HttpResponse r = explainRequest(snap, kWaypointUid, q);
  EXPECT_EQ(r.status, want_status) << r.body;
  EXPECT_EQ(r.content_type, "application/json");
  return json::parse(r.body);
}

TEST(WaypointAdminExplainTest, NamesTheRuleAndBackend) {
  auto snap = mesh("", kRoutes);
  json j = explain(snap, {{"service", "shop/cart"},
                          {"port", "80"},
                          {"path", "/api/items"},
                          {"header", "X-User-Group: beta"},
                          {"header", "x-other:1"}});
  EXPECT_EQ(j["outcome"], "forward");
  EXPECT_EQ(j["route"]["name"], "shop/cart-split");
  EXPECT_EQ(j["route"]["rule"], 0);
  EXPECT_EQ(j["route"]["ruleName"], "beta");
  ASSERT_EQ(j["backends"].size(), 1u);
  EXPECT_EQ(j["backends"][0]["service"], "shop/cart-v2");
  EXPECT_EQ(j["servedByThisWaypoint"], true);
  const std::string text = j["text"];
  EXPECT_NE(text.find("winner: HTTPRoute shop/cart-split rule 0"), std::string::npos) << text;
  EXPECT_NE(text.find("backend shop/cart-v2:80"), std::string::npos) << text;

  // Without the header: the weighted rule.
  json rest = explain(snap, {{"service", "shop/cart"}, {"port", "80"}, {"path", "/api/items"}});
  EXPECT_EQ(rest["route"]["rule"], 1);
  ASSERT_EQ(rest["backends"].size(), 2u);
  EXPECT_EQ(rest["backends"][0]["percent"], 90.0);
  EXPECT_EQ(rest["request"]["method"], "GET");
  EXPECT_EQ(rest["request"]["authority"], "cart.shop.svc.cluster.local");
}

TEST(WaypointAdminExplainTest, HostParameterAndHostHeaderSetTheAuthority) {
  auto snap = mesh("", kRoutes);
  json j = explain(snap, {{"service", "shop/cart"}, {"port", "80"}, {"host", "cart:80"}});
  EXPECT_EQ(j["request"]["authority"], "cart:80");
  j = explain(snap, {{"service", "shop/cart"}, {"port", "80"}, {"header", "Host: other"}});
  EXPECT_EQ(j["request"]["authority"], "other");
}

TEST(WaypointAdminExplainTest, AServiceWithoutThisWaypointIsExplainedWithANote) {
  auto snap = mesh("", kRoutes);
  json j = explain(snap, {{"service", "shop/orders"}, {"port", "80"}});
  EXPECT_EQ(j["servedByThisWaypoint"], false);
  EXPECT_EQ(j["route"]["name"], "shop/orders-route");
  EXPECT_NE(j["text"].get<std::string>().find("does not use this waypoint"), std::string::npos);
}

TEST(WaypointAdminExplainTest, BadParametersAre400WithAMessage) {
  auto snap = mesh("", kRoutes);
  struct Case {
    QueryParams query;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"port", "80"}}, "missing parameter 'service'"},
      {{{"service", "cart"}, {"port", "80"}}, "service: want namespace/name, got 'cart'"},
      {{{"service", "shop/nope"}, {"port", "80"}}, "service shop/nope is not in the config"},
      {{{"service", "shop/cart"}}, "missing parameter 'port'"},
      {{{"service", "shop/cart"}, {"port", "eighty"}}, "port: want 1-65535, got 'eighty'"},
      {{{"service", "shop/cart"}, {"port", "70000"}}, "port: want 1-65535, got '70000'"},
      {{{"service", "shop/cart"}, {"port", "81"}},
       "port 81 is not a port of shop/cart (ports: 80)"},
      {{{"service", "shop/cart"}, {"port", "80"}, {"port", "80"}},
       "parameter 'port' given more than once"},
      {{{"service", "shop/cart"}, {"port", "80"}, {"verb", "GET"}}, "unknown parameter 'verb'"},
      {{{"service", "shop/cart"}, {"port", "80"}, {"method", "GE T"}}, "method: want"},
      {{{"service", "shop/cart"}, {"port", "80"}, {"path", "api"}}, "path: want an absolute path"},
      {{{"service", "shop/cart"}, {"port", "80"}, {"header", "x-novalue"}},
       "header: want name:value, got 'x-novalue'"},
      {{{"service", "shop/cart"}, {"port", "80"}, {"header", "bad name: 1"}},
       "header: want name:value"},
      {{{"service", "shop/cart"}, {"port", "80"}, {"grpc", "maybe"}}, "grpc: want 1, true"},
      {{{"service", "shop/cart"}, {"port", "80"}, {"host", "a/b"}}, "host: want a host[:port]"},
  };
  for (const Case& c : cases) {
    json j = explain(snap, c.query, 400);
    ASSERT_TRUE(j.contains("error")) << j.dump();
    EXPECT_NE(j["error"].get<std::string>().find(c.message), std::string::npos)
        << j["error"] << " does not say " << c.message;
  }
}

TEST(WaypointAdminExplainTest, NoConfigIs503) {
  http::HttpResponse r = explainRequest(nullptr, kWaypointUid, {{"service", "shop/cart"}});
  EXPECT_EQ(r.status, 503);
}

// The metrics carry the policy denials by subject.
TEST(WaypointAdminMetricsTest, PolicyDenialsAreCountedBySubject) {
  LoopStats stats;
  stats.proxy.policy.denied_connections = 3;
  stats.proxy.policy.denied_requests = 5;
  std::string text = renderWaypointMetrics(stats, nullptr);
  EXPECT_NE(text.find("nodemesh_waypoint_policy_denials_total{subject=\"connection\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("nodemesh_waypoint_policy_denials_total{subject=\"request\"} 5\n"),
            std::string::npos)
      << text;
}

// Explain runs RequestAuthentication and the AuthorizationPolicies on a request the route
// forwards, as the data path does: a DENY on POST, an ALLOW for /public and for alice's token on
// /secure, and a RequestAuthentication for the namespace.
class WaypointAdminExplainAccessTest : public ::testing::Test {
 protected:
  WaypointAdminExplainAccessTest() : key_(nodemesh::testing::TestJwtKey::rsa("k1")) {
    std::string yaml = mesh_test::meshYaml(
        "- name: deny-post\n"
        "  namespace: shop\n"
        "  scope: Namespace\n"
        "  action: Deny\n"
        "  rules:\n"
        "  - - - methods: [POST]\n"
        "- name: require-alice\n"
        "  namespace: shop\n"
        "  scope: Namespace\n"
        "  action: Allow\n"
        "  rules:\n"
        "  - - - requestPrincipals: ['https://issuer.example/alice']\n"
        "    - - paths: ['/secure*']\n"
        "  - - - paths: ['/public*']\n");
    yaml +=
        "requestAuthentications:\n"
        "- apiVersion: security.istio.io/v1\n"
        "  kind: RequestAuthentication\n"
        "  metadata: {name: shop-jwt, namespace: shop}\n"
        "  spec:\n"
        "    jwtRules:\n"
        "    - issuer: https://issuer.example\n"
        "      jwks: '" +
        nodemesh::testing::jwksOf({&key_}) + "'\n";
    config::LoadResult r = config::parseLocalConfig(yaml, "test.yaml");
    EXPECT_TRUE(r.ok()) << r.problemsText();
    snap_ = r.snapshot;
  }

  std::string token(std::chrono::seconds expires_in) const {
    const auto exp = std::chrono::duration_cast<std::chrono::seconds>(
                         (std::chrono::system_clock::now() + expires_in).time_since_epoch())
                         .count();
    return key_.sign({{"iss", "https://issuer.example"}, {"sub", "alice"}, {"exp", exp}});
  }

  json explainAccess(QueryParams q) {
    q.insert(q.begin(), {{"service", "shop/cart"}, {"port", "80"}});
    return explain(snap_, q);
  }

  nodemesh::testing::TestJwtKey key_;
  model::SnapshotPtr snap_;
};

TEST_F(WaypointAdminExplainAccessTest, NamesThePolicyAndRuleThatAllowOrDeny) {
  json get = explainAccess({{"path", "/public/a"}, {"source_principal", mesh_test::kFrontend}});
  EXPECT_EQ(get["outcome"], "forward (default)") << get.dump(2);
  EXPECT_EQ(get["authorization"]["jwt"]["result"], "missing");
  ASSERT_EQ(get["authorization"]["endpoints"].size(), 2u) << get.dump(2);  // cart-v1, cart-v2
  for (const json& e : get["authorization"]["endpoints"]) {
    EXPECT_EQ(e["result"], "allow") << e.dump();
    EXPECT_EQ(e["policy"], "shop/require-alice") << e.dump();
    EXPECT_EQ(e["rule"], 1) << e.dump();
  }
  EXPECT_NE(
      get["text"].get<std::string>().find(
          "authorization for shop/cart-v1-0: allowed by ALLOW policy shop/require-alice rule 1"),
      std::string::npos)
      << get["text"];

  json post = explainAccess({{"method", "POST"}, {"path", "/public/a"}});
  EXPECT_EQ(post["status"], 403) << post.dump(2);
  EXPECT_EQ(post["authorization"]["endpoints"][0]["result"], "deny");
  EXPECT_EQ(post["authorization"]["endpoints"][0]["policy"], "shop/deny-post");
  EXPECT_EQ(post["authorization"]["endpoints"][0]["rule"], 0);

  // /secure without alice's token: no ALLOW rule matches.
  json secure = explainAccess({{"path", "/secure/b"}});
  EXPECT_EQ(secure["status"], 403) << secure.dump(2);
}

TEST_F(WaypointAdminExplainAccessTest, VerifiesTheTokenAndRefusesAnExpiredOne) {
  json ok = explainAccess(
      {{"path", "/secure/b"}, {"header", "authorization: Bearer " + token(std::chrono::hours(1))}});
  EXPECT_EQ(ok["outcome"], "forward (default)") << ok.dump(2);
  EXPECT_EQ(ok["authorization"]["jwt"]["result"], "authenticated");
  EXPECT_EQ(ok["authorization"]["jwt"]["principal"], "https://issuer.example/alice");
  EXPECT_EQ(ok["authorization"]["endpoints"][0]["rule"], 0);
  EXPECT_NE(ok["text"].get<std::string>().find(
                "authentication: token verified: request principal https://issuer.example/alice"),
            std::string::npos)
      << ok["text"];

  json expired =
      explainAccess({{"path", "/secure/b"},
                     {"header", "authorization: Bearer " + token(-std::chrono::hours(1))}});
  EXPECT_EQ(expired["status"], 401) << expired.dump(2);
  EXPECT_EQ(expired["authorization"]["jwt"]["result"], "rejected");
  EXPECT_EQ(expired["authorization"]["jwt"]["reason"], "expired");
  EXPECT_NE(expired["text"].get<std::string>().find("token refused: 401 Jwt is expired"),
            std::string::npos)
      << expired["text"];
}

}  // namespace
}  // namespace nodemesh::waypoint
