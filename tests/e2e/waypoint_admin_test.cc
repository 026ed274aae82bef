// End-to-end tests of the waypoint's L4 authorization and its admin API, on the two-node mesh
// of waypoint_fixture.h: the cart service (VIP 10.96.0.20:80 -> 8080; endpoints cart-v1 on node2
// and cart-v2 on node1) names the waypoint waypoint-0 (node2, 10.244.2.9, not enrolled).
//
// Behind a waypoint the endpoints' agents see the waypoint's identity, so a DENY policy on the
// client's principal only holds if the waypoint applies it: these tests show it does, for HTTP
// (403 at curl, nothing reaches the app) and for TCP passthrough (the connection is reset),
// while another client is allowed. Then nodemeshctl reads the routes and an explanation from the
// waypoint's admin API.
#include <filesystem>
#include <fstream>

#include "tests/e2e/waypoint_fixture.h"

namespace nodemesh::sim {
namespace {

// The test mesh with the waypoint (waypoint_fixture.h) plus a DENY policy on the cart workloads
// for frontend's principal, and cart-split: services cart-v1 and cart-v2 and an HTTPRoute on cart
// sending `x-user-group: beta` to v2 and the rest 90/10.
std::string meshWithDenyAndRoute() {
  std::string text = testConfig() +
                     "- name: deny-frontend\n"
                     "  namespace: shop\n"
                     "  scope: WorkloadSelector\n"
                     "  action: Deny\n"
                     "  rules:\n"
                     "  - - - principals: [{Exact: cluster.local/ns/shop/sa/frontend}]\n";
  auto replace_all = [&text](const std::string& from, const std::string& to) {
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
      text.replace(at, from.size(), to);
    }
  };
  replace_all("authorizationPolicies: [\"shop/cart-allow-frontend\"]",
              "authorizationPolicies: [\"shop/cart-allow-frontend\", \"shop/deny-frontend\"]");
  text = withCartVersions(withWaypoint(std::move(text)));
  text +=
      "httpRoutes:\n"
      "- apiVersion: gateway.networking.k8s.io/v1\n"
      "  kind: HTTPRoute\n"
      "  metadata: {name: cart-split, namespace: shop}\n"
      "  spec:\n"
      "    parentRefs: [{group: \"\", kind: Service, name: cart, port: 80}]\n"
      "    rules:\n"
      "    - name: beta\n"
      "      matches: [{headers: [{name: x-user-group, value: beta}]}]\n"
      "      backendRefs: [{name: cart-v2, port: 80}]\n"
      "    - backendRefs:\n"
      "      - {name: cart-v1, port: 80, weight: 90}\n"
      "      - {name: cart-v2, port: 80, weight: 10}\n";
  return text;
}

// Inbound access lines of both agents for connections from the waypoint (what reached an app).
size_t fromWaypoint(Process& agent1, Process& agent2) {
  size_t n = 0;
  for (const std::string& line : accessLines(agent1.output() + agent2.output(),
                                             std::string("src_identity=") + kWaypointIdentity)) {
    if (line.find("direction=inbound") != std::string::npos) ++n;
  }
  return n;
}

class WaypointAdminTest : public WaypointTest {
 protected:
  std::string meshConfig() override { return meshWithDenyAndRoute(); }

  // The waypoint's Prometheus text (from its pod).
  std::string metrics() {
    return cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15020/metrics"}).out;
  }

  // Whether the metrics come to hold `line` (the waypoint publishes its counters once a second).
  bool metricsHave(const std::string& line, std::string* last) {
    return waitFor(
        [&] {
          *last = metrics();
          return last->find(line) != std::string::npos;
        },
        seconds(5));
  }

  CommandResult ctl(std::vector<std::string> args) {
    args.insert(args.begin(), binDir() + "/nodemeshctl");
    return cluster_->runInPod("waypoint", args, seconds(20));
  }
};

// (a) HTTP: frontend's requests get 403 from the waypoint and never reach an app; cart-v2's
// (another client of the same service) are served.
TEST_F(WaypointAdminTest, DenyPolicyOnTheClientsPrincipalBlocksHttpAtTheWaypoint) {
  for (const char* pod : {"cart-v1", "cart-v2"}) {
    const std::string dir = cluster_->workDir() + "/www-" + pod;
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/who") << pod << "\n";
    cluster_->startInPod(pod, {"/usr/bin/python3", "-m", "http.server", "8080", "--bind", "0.0.0.0",
                               "--directory", dir});
  }
  ASSERT_TRUE(waitFor(
      [&] {
        auto r = cluster_->runInPod("cart-v1", {"curl", "-s", "http://127.0.0.1:8080/who"});
        auto r2 = cluster_->runInPod("cart-v2", {"curl", "-s", "http://127.0.0.1:8080/who"});
        return r.out == "cart-v1\n" && r2.out == "cart-v2\n";
      },
      seconds(10)));

  auto denied = cluster_->runInPod(
      "frontend", {"curl", "-s", "-w", "\n%{http_code}", "http://10.96.0.20:80/who"}, seconds(10));
  EXPECT_EQ(denied.out, "RBAC: access denied\n\n403") << denied.describe() << waypoint_->output();
  // Beta requests go to cart-v2 by the route: denied as well (the check is per endpoint).
  auto beta = cluster_->runInPod("frontend",
                                 {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                                  "x-user-group: beta", "http://10.96.0.20:80/who"},
                                 seconds(10));
  EXPECT_EQ(beta.out, "403");
  EXPECT_TRUE(waypoint_->waitForOutput("denied: denied by DENY policy shop/deny-frontend rule 0",
                                       seconds(5)))
      << waypoint_->output();
  // Nothing reached an app: no connection from the waypoint arrived at any agent.
  EXPECT_EQ(fromWaypoint(*agent1_, *agent2_), 0u) << agent1_->output() << agent2_->output();

  // Another client is allowed and served.
  auto allowed = cluster_->runInPod(
      "cart-v2", {"curl", "-sS", "--fail", "http://10.96.0.20:80/who"}, seconds(10));
  EXPECT_EQ(allowed.exit_code, 0) << allowed.describe() << waypoint_->output();
  EXPECT_TRUE(allowed.out == "cart-v1\n" || allowed.out == "cart-v2\n") << allowed.out;
  EXPECT_TRUE(waitFor([&] { return fromWaypoint(*agent1_, *agent2_) >= 1; }, seconds(5)));

  std::string m;
  EXPECT_TRUE(metricsHave("nodemesh_waypoint_policy_denials_total{subject=\"request\"} 2\n", &m))
      << m;
  // Istio's request metric counts the 403 under the original client.
  EXPECT_NE(m.find("response_code=\"403\""), std::string::npos) << m;
}

// (a) TCP passthrough: frontend's connection is reset by the waypoint (its CONNECT was already
// answered 200); cart-v2's goes through byte for byte.
TEST_F(WaypointAdminTest, DenyPolicyOnTheClientsPrincipalResetsTcpPassthrough) {
  serve("cart-v1", 8080, 0);
  serve("cart-v2", 8080, 0);
  auto denied = connect("frontend", kCartVip, 10000, 10000);
  EXPECT_NE(denied.value("error", ""), "") << denied.dump();
  EXPECT_LT(denied.value("received", 0), 10000) << denied.dump();
  EXPECT_TRUE(waypoint_->waitForOutput("denied: denied by DENY policy shop/deny-frontend rule 0",
                                       seconds(5)))
      << waypoint_->output();
  EXPECT_EQ(fromWaypoint(*agent1_, *agent2_), 0u);

  auto allowed = connect("cart-v2", kCartVip, 10000, 10000);
  EXPECT_EQ(allowed.value("error", "?"), "") << allowed.dump() << waypoint_->output();
  EXPECT_EQ(allowed.value("received", 0), 10000) << allowed.dump();

  std::string m;
  EXPECT_TRUE(metricsHave("nodemesh_waypoint_policy_denials_total{subject=\"connection\"} 1\n", &m))
      << m << cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/stats"}).out;
}

// (b) nodemeshctl reads the waypoint's admin API: the route it holds, and which rule and backend
// would serve a request; bad arguments exit 2.
TEST_F(WaypointAdminTest, NodemeshctlShowsTheRoutesAndExplainsARequest) {
  ASSERT_TRUE(waypoint_->waitForOutput("waypoint: config in force", seconds(10)));
  auto routes = ctl({"waypoint", "routes", "--width", "200"});
  ASSERT_EQ(routes.exit_code, 0) << routes.describe() << routes.err;
  EXPECT_NE(routes.out.find("services through this waypoint: shop/cart\n"), std::string::npos)
      << routes.out;
  EXPECT_NE(routes.out.find("HTTPRoute shop/cart-split"), std::string::npos) << routes.out;
  EXPECT_NE(routes.out.find("x-user-group=beta"), std::string::npos) << routes.out;
  EXPECT_NE(routes.out.find("shop/cart-v1:80 90%, shop/cart-v2:80 10%"), std::string::npos)
      << routes.out;
  auto routes_json = ctl({"waypoint", "routes", "-o", "json"});
  ASSERT_EQ(routes_json.exit_code, 0) << routes_json.err;
  auto j = nlohmann::json::parse(routes_json.out);
  EXPECT_EQ(j["routes"][0]["rules"][1]["backends"][0]["weight"], 90);

  auto explain = ctl({"waypoint", "explain", "--service", "shop/cart", "--port", "80", "--path",
                      "/who", "-H", "x-user-group: beta"});
  ASSERT_EQ(explain.exit_code, 0) << explain.describe() << explain.err;
  EXPECT_NE(explain.out.find("winner: HTTPRoute shop/cart-split rule 0 (beta)"), std::string::npos)
      << explain.out;
  EXPECT_NE(explain.out.find("backend shop/cart-v2:80 weight 1 (100.0%)"), std::string::npos)
      << explain.out;
  auto split = ctl({"waypoint", "explain", "--service", "shop/cart", "--port", "80"});
  EXPECT_NE(split.out.find("rule 1"), std::string::npos) << split.out;
  EXPECT_NE(split.out.find("backend shop/cart-v1:80 weight 90 (90.0%)"), std::string::npos)
      << split.out;

  // Bad arguments: a clear message and exit code 2, from the CLI or from the admin API.
  auto bad_service = ctl({"waypoint", "explain", "--service", "cart", "--port", "80"});
  EXPECT_EQ(bad_service.exit_code, 2);
  EXPECT_NE(bad_service.err.find("--service: want namespace/name"), std::string::npos)
      << bad_service.err;
  auto bad_port = ctl({"waypoint", "explain", "--service", "shop/cart", "--port", "81"});
  EXPECT_EQ(bad_port.exit_code, 2) << bad_port.err;
  EXPECT_NE(bad_port.err.find("port 81 is not a port of shop/cart"), std::string::npos)
      << bad_port.err;
  auto unknown = ctl({"waypoint", "explain", "--service", "shop/nope", "--port", "80"});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.err;
  EXPECT_NE(unknown.err.find("service shop/nope is not in the config"), std::string::npos)
      << unknown.err;
}

}  // namespace
}  // namespace nodemesh::sim
