#include "agent/explain/explain.h"

#include <gtest/gtest.h>

#include "config/local/local_config.h"

namespace nodemesh::agent::explain {
namespace {

class ExplainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = nodemesh::config::loadLocalConfigFile(std::string(NODEMESH_EXAMPLES_DIR) +
                                                   "/two-nodes.yaml");
    ASSERT_TRUE(r.ok()) << r.problemsText();
    snapshot_ = r.snapshot;
    // node1's agent: frontend and cart-v2 enrolled, port 9090 excluded outbound.
    view_.node = "node1";
    view_.exclude_outbound_ports = {9090};
    view_.exclude_inbound_ports = {9191};
    view_.enrolled = {
        {"cluster1//v1/Pod/shop/frontend-7d9f", "shop/frontend-7d9f", "/var/run/netns/frontend",
         11},
        {"cluster1//v1/Pod/shop/cart-v2-9b1e", "shop/cart-v2-9b1e", "/var/run/netns/cart-v2", 12}};
  }

  nlohmann::json run(const char* src, const char* dst) {
    AuthorizerChecker policies(snapshot_);
    auto e = explainConnection(*snapshot_, view_, policies, IpAddress::parse(src).value(),
                               SocketAddress::parse(dst).value());
    return toJson(e);
  }

  model::SnapshotPtr snapshot_;
  CaptureView view_;
};

TEST_F(ExplainTest, AllowedByTheAllowPolicysRule) {
  auto j = run("10.244.1.10", "10.244.2.20:8080");
  EXPECT_EQ(j["verdict"], "allow") << j.dump(2);
  EXPECT_EQ(j["capture"]["reason"], "out_captured");
  EXPECT_EQ(j["source"]["netns"], "/var/run/netns/frontend");
  const auto& p = j["paths"][0];
  EXPECT_EQ(p["transport"], "hbone");
  EXPECT_EQ(p["inbound"]["listener"], 15008);
  EXPECT_EQ(p["inbound"]["observed"], false);  // cart-v1 is node2's
  EXPECT_EQ(p["policy"]["policy"], "shop/cart-allow-frontend");
  EXPECT_EQ(p["policy"]["rule"], 0);
  EXPECT_EQ(p["policy"]["outcome"], "Allowed");
  EXPECT_EQ(p["policy"]["applicable"],
            nlohmann::json({"shop/deny-debug-port", "shop/cart-allow-frontend"}));
}

TEST_F(ExplainTest, DeniedByTheDenyPolicy) {
  auto j = run("10.244.1.10", "10.244.1.21:9999");  // cart-v2, on this node
  EXPECT_EQ(j["verdict"], "deny") << j.dump(2);
  const auto& p = j["paths"][0];
  EXPECT_EQ(p["inbound"]["observed"], true);
  EXPECT_EQ(p["policy"]["policy"], "shop/deny-debug-port");
  EXPECT_EQ(p["policy"]["rule"], 0);
  EXPECT_EQ(p["policy"]["outcome"], "Denied");
}

// frontend and cart-v2 are both enrolled on node1: the same-node fast path, policy checked with
// frontend's identity; with the fast path off, HBONE to cart-v2's 15008.
TEST_F(ExplainTest, BetweenTwoPodsOfThisNodeTheAgentJoinsThemItself) {
  auto j = run("10.244.1.10", "10.244.1.21:8080");
  const auto& p = j["paths"][0];
  EXPECT_EQ(p["transport"], "local") << j.dump(2);
  EXPECT_NE(p["transport_detail"].get<std::string>().find("same node"), std::string::npos);
  EXPECT_EQ(p["inbound"]["captured"], true);
  EXPECT_EQ(p["inbound"]["reason"], "same_node");
  EXPECT_EQ(p["inbound"]["listener"], 0);
  // shop/cart-allow-frontend names frontend's identity: allowed only if it was checked.
  EXPECT_EQ(p["policy"]["policy"], "shop/cart-allow-frontend");
  EXPECT_EQ(p["policy"]["outcome"], "Allowed");
  EXPECT_EQ(j["verdict"], "allow");

  view_.same_node_fast_path = false;
  auto hbone = run("10.244.1.10", "10.244.1.21:8080");
  EXPECT_EQ(hbone["paths"][0]["transport"], "hbone") << hbone.dump(2);
  EXPECT_EQ(hbone["paths"][0]["inbound"]["listener"], 15008);
  EXPECT_EQ(hbone["verdict"], "allow");

  // A source on another node: its own agent sends HBONE, whatever this node does.
  view_.same_node_fast_path = true;
  auto from_node2 = run("10.244.2.20", "10.244.1.21:8080");
  EXPECT_EQ(from_node2["paths"][0]["transport"], "hbone") << from_node2.dump(2);
}

TEST_F(ExplainTest, ExcludedPortIsNotCapturedAndArrivesWithoutIdentity) {
  auto j = run("10.244.1.10", "10.244.2.20:9090");
  EXPECT_EQ(j["capture"]["captured"], false) << j.dump(2);
  EXPECT_EQ(j["capture"]["reason"], "out_skip_excluded");
  const auto& p = j["paths"][0];
  EXPECT_EQ(p["transport"], "passthrough");
  EXPECT_EQ(p["inbound"]["reason"], "in_steered");
  EXPECT_EQ(p["policy"]["outcome"], "NoAllowMatched");
  EXPECT_EQ(j["verdict"], "deny");
}

TEST_F(ExplainTest, InboundExclusionOfThisNodeSkipsPolicy) {
  // From batch (not in the mesh) to cart-v2's excluded inbound port 9191.
  auto j = run("10.244.2.30", "10.244.1.21:9191");
  const auto& p = j["paths"][0];
  EXPECT_EQ(p["inbound"]["reason"], "in_skip_excluded") << j.dump(2);
  EXPECT_EQ(p["policy"]["enforced"], false);
  EXPECT_EQ(j["verdict"], "allow");
}

TEST_F(ExplainTest, PlaintextToALegacyWorkload) {
  auto j = run("10.244.1.10", "10.244.2.30:5432");
  EXPECT_EQ(j["capture"]["captured"], true) << j.dump(2);
  EXPECT_EQ(j["paths"][0]["transport"], "tcp");
  EXPECT_EQ(j["paths"][0]["inbound"]["reason"], "not_in_mesh");
  EXPECT_EQ(j["verdict"], "allow");
}

TEST_F(ExplainTest, SourcesThatAreNotCaptured) {
  EXPECT_EQ(run("10.244.2.30", "10.244.1.10:80")["capture"]["reason"], "source_not_in_mesh");
  EXPECT_EQ(run("10.9.9.9", "10.244.1.10:80")["capture"]["reason"], "source_not_in_mesh");
  EXPECT_EQ(run("10.244.1.10", "127.0.0.1:80")["capture"]["reason"], "out_skip_loopback");
  view_.enrolled.clear();
  EXPECT_EQ(run("10.244.1.10", "10.244.2.20:8080")["capture"]["reason"], "not_enrolled");
  // A source on another node: assumed enrolled there, flagged as not observed.
  auto other = run("10.244.2.20", "10.244.1.10:80");
  EXPECT_EQ(other["capture"]["captured"], true);
  EXPECT_EQ(other["capture"]["observed"], false);
}

TEST_F(ExplainTest, ServiceVipExplainsEveryEndpoint) {
  auto j = run("10.244.1.10", "10.96.0.20:80");
  EXPECT_EQ(j["service"]["service"], "shop/cart.shop.svc.cluster.local") << j.dump(2);
  EXPECT_EQ(j["service"]["target_port"], 8080);
  ASSERT_EQ(j["paths"].size(), 2u);
  std::set<std::string> endpoints;
  for (const auto& p : j["paths"]) {
    endpoints.insert(p["endpoint"]["workload"].get<std::string>());
    EXPECT_EQ(p["verdict"], "allow");
    EXPECT_EQ(p["address"].get<std::string>().substr(p["address"].get<std::string>().find(':')),
              ":8080");
  }
  EXPECT_EQ(endpoints, (std::set<std::string>{"shop/cart-v1-5c2a", "shop/cart-v2-9b1e"}));
  EXPECT_EQ(j["verdict"], "allow");
  // Not a port of the service: relayed to the VIP itself.
  auto other = run("10.244.1.10", "10.96.0.20:81");
  EXPECT_EQ(other["service"]["target_port"], nullptr);
  ASSERT_EQ(other["paths"].size(), 1u);
  EXPECT_EQ(other["paths"][0]["address"], "10.96.0.20:81");
  EXPECT_EQ(other["paths"][0]["transport"], "tcp");
}

TEST_F(ExplainTest, StoryEndsWithTheVerdict) {
  AuthorizerChecker policies(snapshot_);
  auto e = explainConnection(*snapshot_, view_, policies, IpAddress::parse("10.244.1.10").value(),
                             SocketAddress::parse("10.244.2.20:9999").value());
  ASSERT_FALSE(e.story.empty());
  EXPECT_EQ(e.story.back(), "verdict: deny");
  bool deciding = false;
  for (const auto& s : e.story) {
    deciding = deciding || s == "policy: denied by DENY policy shop/deny-debug-port rule 0 -> deny";
  }
  EXPECT_TRUE(deciding);
}

// explain asks whatever checker it is given.
class FixedChecker final : public PolicyChecker {
 public:
  PolicyVerdict check(const model::Workload&, const ConnectionFacts& f) const override {
    facts = f;
    return {false, "Denied", "x/y", 3, "fixed"};
  }
  std::vector<std::string> applicable(const model::Workload&) const override { return {"x/y"}; }
  mutable ConnectionFacts facts;
};

TEST_F(ExplainTest, PassesTheFactsTheDestinationSees) {
  FixedChecker checker;
  auto e = explainConnection(*snapshot_, view_, checker, IpAddress::parse("10.244.1.10").value(),
                             SocketAddress::parse("10.244.2.20:8080").value());
  EXPECT_EQ(e.verdict, "deny");
  EXPECT_EQ(checker.facts.destination_port, 8080);
  EXPECT_EQ(checker.facts.source_identity, "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_EQ(toJson(e)["paths"][0]["policy"]["rule"], 3);
}

// A service behind a waypoint, as the demo has it: explain names the waypoint and its
// instances instead of the service's endpoints, as the tunnel sends it there.
TEST(ExplainWaypointTest, AServiceWithAWaypointIsExplainedAsGoingToTheWaypoint) {
  constexpr std::string_view kYaml = R"(
workloads:
- {uid: c1//Pod/shop/client, name: client, namespace: shop, workloadIps: ["10.244.1.10"],
   protocol: HBONE, node: node1}
- {uid: c1//Pod/shop/reviews-v1, name: reviews-v1, namespace: shop, serviceAccount: reviews,
   workloadIps: ["10.244.2.20"], protocol: HBONE, node: node2,
   services: {"shop/reviews.shop.svc.cluster.local": {9080: 9080}}}
- {uid: c1//Pod/shop/waypoint, name: waypoint, namespace: shop, serviceAccount: waypoint,
   workloadIps: ["10.244.2.9"], protocol: TCP, node: node2,
   services: {"shop/waypoint.shop.svc.cluster.local": {15008: 15008}}}
services:
- {name: reviews, namespace: shop, hostname: reviews.shop.svc.cluster.local,
   vips: ["/10.96.0.30"], ports: {9080: 9080},
   waypoint: {destination: "shop/waypoint.shop.svc.cluster.local", hboneMtlsPort: 15008}}
- {name: waypoint, namespace: shop, hostname: waypoint.shop.svc.cluster.local,
   vips: ["/10.96.0.9"], ports: {15008: 15008}}
- {name: lost, namespace: shop, hostname: lost.shop.svc.cluster.local,
   vips: ["/10.96.0.31"], ports: {9080: 9080},
   waypoint: {destination: "shop/nowhere.shop.svc.cluster.local", hboneMtlsPort: 15008}}
)";
  auto r = config::parseLocalConfig(kYaml, "waypoint.yaml");
  ASSERT_TRUE(r.ok()) << r.problemsText();
  CaptureView view;
  view.node = "node1";
  view.enrolled = {{"c1//Pod/shop/client", "shop/client", "/var/run/netns/client", 1}};
  AuthorizerChecker policies(r.snapshot);
  auto explain = [&](const char* dst) {
    return toJson(explainConnection(*r.snapshot, view, policies,
                                    IpAddress::parse("10.244.1.10").value(),
                                    SocketAddress::parse(dst).value()));
  };

  auto j = explain("10.96.0.30:9080");
  EXPECT_EQ(j["waypoint"], "shop/waypoint.shop.svc.cluster.local:15008") << j.dump(2);
  EXPECT_EQ(j["service"]["service"], "shop/reviews.shop.svc.cluster.local");
  ASSERT_EQ(j["paths"].size(), 1U);
  const auto& p = j["paths"][0];
  EXPECT_EQ(p["endpoint"]["workload"], "shop/waypoint");
  EXPECT_EQ(p["address"], "10.244.2.9:15008");
  EXPECT_EQ(p["transport"], "hbone");
  EXPECT_NE(p["transport_detail"].get<std::string>().find("CONNECT 10.96.0.30:9080"),
            std::string::npos);
  EXPECT_EQ(p["inbound"]["reason"], "waypoint");
  EXPECT_EQ(j["verdict"], "allow");

  auto lost = explain("10.96.0.31:9080");
  EXPECT_EQ(lost["verdict"], "no_endpoint") << lost.dump(2);
  EXPECT_EQ(lost["waypoint_error"], "waypoint shop/nowhere.shop.svc.cluster.local:15008 not found");
}

}  // namespace
}  // namespace nodemesh::agent::explain
