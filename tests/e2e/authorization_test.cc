// End-to-end tests of L4 authorization on the example mesh (examples/two-nodes.yaml as it is):
// `shop/cart-allow-frontend` (WorkloadSelector ALLOW on the cart pods: principal
// shop/sa/frontend, destination port 8080) and `shop/deny-debug-port` (Namespace DENY of port
// 9999 in shop). Denied HBONE streams get 401, denied plaintext connections are reset, before
// the application sees anything; a policy change closes open connections it now denies.
#include <filesystem>

#include "tests/e2e/mesh_fixture.h"

namespace nodemesh::sim {
namespace {

constexpr const char* kCartV1App = "10.244.2.20:8080";

class AuthorizationTest : public MeshTest {
 protected:
  void startPolicyAgents() {
    policy_config_ = cluster_->writeFile("policy.yaml", exampleConfig());
    startAgents({}, policy_config_);
  }

  // Replaces the policy file atomically (the agents reload it on inotify).
  void rewritePolicies(const std::string& text) {
    const std::string tmp = cluster_->writeFile("policy.yaml.tmp", text);
    std::filesystem::rename(tmp, policy_config_);
  }

  // Whether a server process printed a "conn" event (an accepted connection) by now.
  // Proves that refused connections never reached `server`, without sleeping and seeing nothing:
  // a control connection that must get through, and must be the first one the server saw.
  void expectFirstConnectionComesFrom(Process& server, const std::string& pod,
                                      const std::string& to, const std::string& peer_ip) {
    auto done = connect(pod, to, 64, 64);
    EXPECT_TRUE(done.value("ok", false)) << done.dump() << server.output();
    // The server's output comes through a pipe: its "conn" line may arrive after the client
    // is done.
    std::optional<nlohmann::json> first;
    waitFor([&] { return (first = findEvent(server.output(), "conn")).has_value(); }, seconds(5));
    ASSERT_TRUE(first.has_value()) << server.output();
    EXPECT_EQ(hostOf(first->value("peer", "")), peer_ip) << server.output();
  }

  // The agent's access log lines that contain every one of `needles`.
  static std::vector<std::string> accessLines(Process& agent,
                                              const std::vector<std::string>& needles) {
    std::vector<std::string> lines;
    std::istringstream in(agent.output());
    for (std::string line; std::getline(in, line);) {
      if (line.find(" access ") == std::string::npos) continue;
      bool all = true;
      for (const auto& n : needles) all = all && line.find(n) != std::string::npos;
      if (all) lines.push_back(line);
    }
    return lines;
  }

  bool waitForAccess(Process& agent, const std::vector<std::string>& needles,
                     milliseconds timeout = seconds(5)) {
    return waitFor([&] { return !accessLines(agent, needles).empty(); }, timeout);
  }

  std::string policy_config_;
};

// Must show 2: frontend -> cart:8080 is allowed, and the log names the policy that allowed it.
TEST_F(AuthorizationTest, FrontendToCartIsAllowedByTheWorkloadPolicy) {
  startPolicyAgents();
  Process& cart = serve("cart-v1", 8080);
  auto done = connect("frontend", kCartV1App, 64 << 10, 64 << 10);
  EXPECT_TRUE(done.value("ok", false)) << done.dump();
  ASSERT_TRUE(cart.waitExit(seconds(10)).has_value());
  EXPECT_TRUE(waitForAccess(*agent2_, {"direction=inbound", "dst=10.244.2.20:8080", "result=ok",
                                       "verdict=allow policy=shop/cart-allow-frontend"}))
      << agent2_->output();
}

// Must show 2: a legacy plaintext client (batch, not in the mesh) -> cart:8080 arrives on
// 15006 without an identity; the ALLOW policy wants frontend's principal, so the connection
// is reset and the application never sees it.
TEST_F(AuthorizationTest, LegacyPlaintextClientIsResetBeforeTheApplication) {
  startPolicyAgents();
  Process& cart = serve("cart-v1", 8080);
  auto before = tunnelStats(*agent2_);
  auto done = connect("batch", kCartV1App, 4096, 4096);
  EXPECT_FALSE(done.value("ok", true)) << done.dump();
  EXPECT_EQ(done.value("received", 1), 0) << done.dump();
  ASSERT_TRUE(
      waitForAccess(*agent2_, {"direction=inbound", "src=10.244.2.30:", "dst=10.244.2.20:8080",
                               "transport=tcp", "verdict=deny", "shop/cart-allow-frontend"}))
      << agent2_->output();
  auto after = tunnelStats(*agent2_);
  EXPECT_EQ(after["denied"], before["denied"] + 1);
  expectFirstConnectionComesFrom(cart, "frontend", kCartV1App, "10.244.1.10");
}

// Must show 2: port 9999 is denied in namespace shop whoever asks: a mesh client's HBONE
// stream gets 401, a plaintext client is reset; the DENY policy is named in the log.
TEST_F(AuthorizationTest, DebugPortIsDeniedForMeshAndPlaintextClients) {
  startPolicyAgents();
  Process& cart = serve("cart-v1", 9999, 2);
  auto done = connect("frontend", "10.244.2.20:9999", 4096, 4096);
  EXPECT_FALSE(done.value("ok", true)) << done.dump();
  done = connect("batch", "10.244.2.20:9999", 4096, 4096);
  EXPECT_FALSE(done.value("ok", true)) << done.dump();

  EXPECT_TRUE(
      waitForAccess(*agent2_, {"src=10.244.1.10:", "dst=10.244.2.20:9999", "transport=hbone",
                               "verdict=deny policy=shop/deny-debug-port"}))
      << agent2_->output();
  EXPECT_TRUE(waitForAccess(*agent2_, {"src=10.244.2.30:", "dst=10.244.2.20:9999", "transport=tcp",
                                       "verdict=deny policy=shop/deny-debug-port"}))
      << agent2_->output();
  // The client's agent saw the 401 and reset the application's connection.
  EXPECT_TRUE(waitForAccess(
      *agent1_, {"direction=outbound", "dst=10.244.2.20:9999", "HBONE CONNECT answered 401"}))
      << agent1_->output();
  // Port 9999 is denied to every peer: the control comes from inside the pod (loopback).
  expectFirstConnectionComesFrom(cart, "cart-v1", "127.0.0.1:9999", "127.0.0.1");
}

// Must show 2: a mesh client whose identity the ALLOW policy does not name (cart-v2, service
// account cart) is refused with 401 on the HBONE stream.
TEST_F(AuthorizationTest, UnlistedMeshIdentityGets401) {
  startPolicyAgents();
  Process& cart = serve("cart-v1", 8080);
  auto before = tunnelStats(*agent2_);
  auto done = connect("cart-v2", kCartV1App, 4096, 4096);
  EXPECT_FALSE(done.value("ok", true)) << done.dump();
  EXPECT_TRUE(waitForAccess(*agent1_, {"pod=shop/cart-v2-9b1e", "HBONE CONNECT answered 401"}))
      << agent1_->output();
  EXPECT_TRUE(waitForAccess(*agent2_, {"src_identity=spiffe://cluster.local/ns/shop/sa/cart",
                                       "verdict=deny", "shop/cart-allow-frontend"}))
      << agent2_->output();
  auto after = tunnelStats(*agent2_);
  EXPECT_EQ(after["denied"], before["denied"] + 1);
  EXPECT_EQ(after["hbone_streams_rejected"], before["hbone_streams_rejected"] + 1);
  expectFirstConnectionComesFrom(cart, "frontend", kCartV1App, "10.244.1.10");
}

// Must show 2: changing the policy at runtime closes an open connection it now denies within
// 1 s, and lets a newly allowed client through.
TEST_F(AuthorizationTest, PolicyChangeClosesNowDeniedConnectionAndAdmitsNewlyAllowed) {
  startPolicyAgents();
  serve("cart-v1", 8080);
  // 4 MiB at 512 KiB/s: open for about 8 s unless something closes it.
  Process& client =
      cluster_->startInPod("frontend", {testappPath(), "connect", "--to", kCartV1App, "--send",
                                        "4M", "--expect", "0", "--rate", "512K"});
  ASSERT_TRUE(waitFor([&] { return tunnelStats(*agent2_)["active"] >= 1; }, seconds(5)))
      << agent2_->output();
  std::this_thread::sleep_for(milliseconds(300));
  ASSERT_TRUE(client.isRunning()) << client.output();

  // The ALLOW policy now names cart's service account instead of frontend's.
  std::string text = exampleConfig();
  const std::string from = "cluster.local/ns/shop/sa/frontend";
  auto pos = text.find(from);
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, from.size(), "cluster.local/ns/shop/sa/cart");
  const auto changed = std::chrono::steady_clock::now();
  rewritePolicies(text);
  ASSERT_TRUE(client.waitExit(seconds(5)).has_value()) << "still open 5 s after the change";
  const auto closed_after =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - changed);
  auto done = findEvent(client.output(), "done");
  ASSERT_TRUE(done.has_value()) << client.output();
  EXPECT_FALSE(done->value("ok", true)) << done->dump();
  EXPECT_LT(done->value("sent", uint64_t{0}), 4ull << 20) << done->dump();
  EXPECT_LT(closed_after.count(), 1000) << "closed " << closed_after.count() << " ms after";
  EXPECT_TRUE(waitForAccess(*agent2_, {"src=10.244.1.10:", "dst=10.244.2.20:8080", "verdict=deny",
                                       "closed by policy change"}))
      << agent2_->output();
  std::printf("open connection closed %lld ms after the policy file changed\n",
              static_cast<long long>(closed_after.count()));

  // cart-v2 (service account cart) is now allowed; frontend is not.
  Process& cart = serve("cart-v1", 8080);
  auto allowed = connect("cart-v2", kCartV1App, 64 << 10, 64 << 10);
  EXPECT_TRUE(allowed.value("ok", false)) << allowed.dump();
  ASSERT_TRUE(cart.waitExit(seconds(10)).has_value()) << cart.output();
  auto denied = connect("frontend", kCartV1App, 4096, 4096);
  EXPECT_FALSE(denied.value("ok", true)) << denied.dump();
}

// A policy change also closes open plaintext connections (15006, no identity) it now denies:
// both TCP sides are reset, the access line says so, and closed_by_policy counts it.
TEST_F(AuthorizationTest, PolicyChangeClosesNowDeniedPlaintextConnection) {
  startPolicyAgents();
  serve("frontend", 8080);
  // batch (outside the mesh) -> frontend:8080: no policy denies it yet.
  Process& client =
      cluster_->startInPod("batch", {testappPath(), "connect", "--to", "10.244.1.10:8080", "--send",
                                     "4M", "--expect", "0", "--rate", "512K"});
  ASSERT_TRUE(waitFor([&] { return tunnelStats(*agent1_)["active"] >= 1; }, seconds(5)))
      << agent1_->output();
  ASSERT_TRUE(client.isRunning()) << client.output();
  auto before = tunnelStats(*agent1_);

  // deny-debug-port now denies 8080 in namespace shop.
  std::string text = exampleConfig();
  const std::string from = "destinationPorts: [9999]";
  auto pos = text.find(from);
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, from.size(), "destinationPorts: [8080]");
  rewritePolicies(text);
  ASSERT_TRUE(client.waitExit(seconds(5)).has_value()) << "still open 5 s after the change";
  auto done = findEvent(client.output(), "done");
  ASSERT_TRUE(done.has_value()) << client.output();
  EXPECT_FALSE(done->value("ok", true)) << done->dump();
  EXPECT_LT(done->value("sent", uint64_t{0}), 4ull << 20) << done->dump();
  EXPECT_TRUE(waitForAccess(*agent1_, {"src=10.244.2.30:", "dst=10.244.1.10:8080", "transport=tcp",
                                       "verdict=deny", "closed by policy change"}))
      << agent1_->output();
  auto after = tunnelStats(*agent1_);
  EXPECT_EQ(after["closed_by_policy"], before["closed_by_policy"] + 1);
  EXPECT_EQ(after["denied"], before["denied"]) << "closed_by_policy, not a refused connect";
}

// A dry-run policy never decides, but the agent logs what it would have done: a dry-run DENY of
// 8080 in shop leaves frontend -> cart allowed and logs "would be denied" naming it.
TEST_F(AuthorizationTest, DryRunPolicyIsLoggedButDoesNotDecide) {
  std::string text = exampleConfig();
  const std::string anchor = "- name: deny-debug-port";
  auto pos = text.find(anchor);
  ASSERT_NE(pos, std::string::npos);
  text.insert(pos,
              "- name: dry-deny-8080\n"
              "  namespace: shop\n"
              "  scope: Namespace\n"
              "  action: Deny\n"
              "  dryRun: true\n"
              "  rules:\n"
              "  - - - destinationPorts: [8080]\n");
  policy_config_ = cluster_->writeFile("policy.yaml", text);
  startAgents({}, policy_config_);
  Process& cart = serve("cart-v1", 8080);
  auto done = connect("frontend", kCartV1App, 4096, 4096);
  EXPECT_TRUE(done.value("ok", false)) << done.dump();
  EXPECT_EQ(cart.waitExit(seconds(10)), 0) << cart.output();
  EXPECT_TRUE(waitForAccess(*agent2_, {"src=10.244.1.10:", "dst=10.244.2.20:8080", "verdict=allow",
                                       "policy=shop/cart-allow-frontend"}))
      << agent2_->output();
  EXPECT_TRUE(waitFor(
      [&] {
        return agent2_->output().find("dry-run policies for 10.244.1.10:") != std::string::npos &&
               agent2_->output().find("would be denied; matched: shop/dry-deny-8080#") !=
                   std::string::npos;
      },
      seconds(5)))
      << agent2_->output();
}

}  // namespace
}  // namespace nodemesh::sim
