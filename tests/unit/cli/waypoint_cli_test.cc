// nodemeshctl's waypoint commands without a waypoint: the routes table and the explanation are
// built from what the waypoint's admin handlers really return (waypoint/admin.h), and the
// completion script completes the nested commands.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "cli/completion.h"
#include "cli/waypoint_views.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/waypoint/waypoint_mesh_util.h"
#include "waypoint/admin.h"

namespace nodemesh::cli {
namespace {

using nlohmann::json;

const char* const kRoute =
    "- apiVersion: gateway.networking.k8s.io/v1\n"
    "  kind: HTTPRoute\n"
    "  metadata: {name: cart-split, namespace: shop}\n"
    "  spec:\n"
    "    parentRefs: [{group: '', kind: Service, name: cart, port: 80}]\n"
    "    rules:\n"
    "    - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-user-group,"
    " value: beta}]}]\n"
    "      backendRefs: [{name: cart-v2, port: 80}]\n"
    "    - backendRefs:\n"
    "      - {name: cart-v1, port: 80, weight: 90}\n"
    "      - {name: cart-v2, port: 80, weight: 10}\n"
    "      - {name: gone, port: 80, weight: 0}\n";

TEST(WaypointCliTest, RoutesTableHasOneRowPerRuleWithMatchesAndBackendShares) {
  auto snap = waypoint::mesh_test::mesh("", kRoute);
  View v = waypointRoutesView(waypoint::routesJson(*snap, waypoint::mesh_test::kWaypointUid), 160);
  EXPECT_EQ(v.data["routes"][0]["name"], "shop/cart-split");
  const std::string& t = v.table;
  EXPECT_NE(t.find("services through this waypoint: shop/cart\n"), std::string::npos) << t;
  EXPECT_NE(t.find("HTTPRoute shop/cart-split"), std::string::npos) << t;
  EXPECT_NE(t.find("shop/cart:80"), std::string::npos) << t;
  EXPECT_NE(t.find("prefix /api x-user-group=beta"), std::string::npos) << t;
  EXPECT_NE(t.find("shop/cart-v2:80 100%"), std::string::npos) << t;
  EXPECT_NE(t.find("shop/cart-v1:80 90%, shop/cart-v2:80 10%, shop/gone:80 0% (missing)"),
            std::string::npos)
      << t;
}

TEST(WaypointCliTest, ExplainPrintsTheEnginesText) {
  auto snap = waypoint::mesh_test::mesh("", kRoute);
  http::HttpResponse r = waypoint::explainRequest(snap, waypoint::mesh_test::kWaypointUid,
                                                  {{"service", "shop/cart"},
                                                   {"port", "80"},
                                                   {"path", "/api/x"},
                                                   {"header", "x-user-group: beta"}});
  ASSERT_EQ(r.status, 200) << r.body;
  View v = waypointExplainView(json::parse(r.body));
  EXPECT_EQ(v.table.rfind("GET cart.shop.svc.cluster.local/api/x -> shop/cart.shop.svc", 0), 0u)
      << v.table;
  EXPECT_NE(v.table.find("winner: HTTPRoute shop/cart-split rule 0"), std::string::npos) << v.table;
  EXPECT_NE(v.table.find("backend shop/cart-v2:80 weight 1 (100.0%)"), std::string::npos)
      << v.table;
}

TEST(WaypointCliTest, BashCompletesTheNestedWaypointCommands) {
  CLI::App app{"test", "nodemeshctl"};
  std::string output;
  std::string service;
  app.add_option("-o,--output", output);
  app.add_subcommand("explain", "e");
  auto* waypoint = app.add_subcommand("waypoint", "w");
  waypoint->add_subcommand("routes", "r");
  waypoint->add_subcommand("explain", "e")->add_option("--service", service);
  const nodemesh::testing::TempDir dir;  // removed with the script
  const std::string path = dir.path() + "/nodemeshctl-waypoint.bash";
  std::ofstream(path) << bashCompletion(app);
  auto complete = [&](const std::string& words, int cword) {
    std::string cmd = "bash -c 'source " + path + "; COMP_WORDS=(" + words +
                      "); COMP_CWORD=" + std::to_string(cword) +
                      "; _nodemeshctl; echo \"${COMPREPLY[*]}\"'";
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");  // NOLINT(cert-env33-c): the script is bash
    if (!p) return out;
    char buf[512];
    while (std::fgets(buf, sizeof(buf), p)) out += buf;
    ::pclose(p);
    return out;
  };
  EXPECT_EQ(complete("nodemeshctl way", 1), "waypoint\n");
  EXPECT_EQ(complete("nodemeshctl waypoint r", 2), "routes\n");
  EXPECT_EQ(complete("nodemeshctl waypoint ex", 2), "explain\n");
  EXPECT_EQ(complete("nodemeshctl waypoint explain --ser", 3), "--service\n");
  EXPECT_EQ(complete("nodemeshctl -o json waypoint explain --service shop/cart --ser", 7),
            "--service\n");
  // The top-level explain is not the waypoint's.
  EXPECT_EQ(complete("nodemeshctl explain --ser", 2), "\n");
}

}  // namespace
}  // namespace nodemesh::cli
