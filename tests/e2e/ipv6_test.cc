// End-to-end tests of IPv6 pods: a dual-stack simulated cluster (every node and pod has an IPv4
// and an IPv6 address, sim_cluster.h), the example's workloads with both addresses, and
// applications that talk over IPv6 only. What is checked is what an application relies on:
// the client's getpeername() is the address it dialled (cgroup/getpeername6), the server sees
// the client's own IPv6 address (transparent IPv6 delivery), the bytes arrive intact, and the
// agents' access logs show the connection went through the tunnel (HBONE between mesh pods,
// plain TCP from a pod outside the mesh) rather than around it.
#include <optional>
#include <string>
#include <vector>

#include "tests/e2e/mesh_fixture.h"

namespace nodemesh::sim {
namespace {

constexpr uint64_t k1MiB = 1ull << 20;

// The example mesh with each workload's IPv6 address added, an IPv6 VIP for the cart service,
// a pod outside the mesh, and the test config's allow-all policy.
std::string dualStackConfig() {
  std::string text = testConfig();
  const std::vector<std::pair<std::string, std::string>> ips = {{"10.244.1.10", "fd00:244:1::10"},
                                                                {"10.244.2.20", "fd00:244:2::20"},
                                                                {"10.244.1.21", "fd00:244:1::21"},
                                                                {"10.244.2.30", "fd00:244:2::30"},
                                                                {"10.244.1.50", "fd00:244:1::50"}};
  for (const auto& [v4, v6] : ips) {
    const std::string from = "workloadIps: [\"" + v4 + "\"]";
    auto pos = text.find(from);
    if (pos == std::string::npos) continue;
    text.replace(pos, from.size(), "workloadIps: [\"" + v4 + "\", \"" + v6 + "\"]");
  }
  const std::string vip = "vips: [\"/10.96.0.20\"]";
  if (auto pos = text.find(vip); pos != std::string::npos) {
    text.replace(pos, vip.size(), "vips: [\"/10.96.0.20\", \"/fd00:96::20\"]");
  }
  return text;
}

class Ipv6Test : public MeshTest {
 protected:
  void SetUp() override {
    NODEMESH_REQUIRE_ROOT_OR_SKIP();
    SimClusterOptions options;
    options.dual_stack = true;
    cluster_ = std::make_unique<SimCluster>(options);
    cluster_->addNode("node1");
    cluster_->addNode("node2");
    cluster_->addPod("node1", "frontend", "10.244.1.10");
    cluster_->addPod("node1", "cart-v2", "10.244.1.21");
    cluster_->addPod("node2", "cart-v1", "10.244.2.20");
    cluster_->addPod("node1", "outsider", "10.244.1.40");  // in no config at all
    config_path_ = cluster_->writeFile("mesh.yaml", dualStackConfig());
  }

  // An IPv6-capable server (bound to ::, which also takes IPv4) in `pod` on `port`.
  Process& serve6(const std::string& pod, uint16_t port) {
    Process& p = cluster_->startInPod(
        pod, {testappPath(), "serve", "--port", std::to_string(port), "--bind", "::"});
    EXPECT_TRUE(waitForListening(p).has_value()) << p.output();
    return p;
  }

  // The server's "conn" event of the one connection it served.
  std::optional<nlohmann::json> served(Process& server) {
    if (!server.waitForOutput("\"event\":\"conn\"", seconds(10))) return std::nullopt;
    return findEvent(server.output(), "conn");
  }

  // frontend -> cart-v2 (both on node1) over IPv6: the application sees frontend's address,
  // and node1's agent logs the server's side from it, carried as `transport`.
  void expectSameNodeKeepsTheClientAddress(const std::string& transport) {
    Process& server = serve6("cart-v2", 8080);
    auto done = connect("frontend", "[fd00:244:1::21]:8080", k1MiB, k1MiB);
    EXPECT_EQ(done.value("error", ""), "");
    EXPECT_EQ(done.value("peer", ""), "[fd00:244:1::21]:8080");
    auto conn = served(server);
    ASSERT_TRUE(conn.has_value()) << server.output();
    EXPECT_EQ(conn->value("peer", "").rfind("[fd00:244:1::10]:", 0), 0u) << *conn;
    ASSERT_TRUE(agent1_->waitForOutput(
        "direction=inbound pod=shop/cart-v2-9b1e src=[fd00:244:1::10]", seconds(5)))
        << agent1_->output();
    EXPECT_NE(agent1_->output().find(transport), std::string::npos) << agent1_->output();
  }
};

// Between pods on two nodes, over IPv6: captured by connect6, carried as HBONE to the
// destination pod's [::]:15008, delivered from the client's own IPv6 address.
TEST_F(Ipv6Test, CrossNodeHboneKeepsAddressesOnBothSides) {
  startAgents();
  Process& server = serve6("cart-v1", 8080);
  auto done = connect("frontend", "[fd00:244:2::20]:8080", k1MiB, k1MiB);
  EXPECT_EQ(done.value("error", ""), "");
  EXPECT_EQ(done.value("received", 0ull), k1MiB);
  // getpeername6 hides the tunnel's [::1]:15001.
  EXPECT_EQ(done.value("peer", ""), "[fd00:244:2::20]:8080");
  auto conn = served(server);
  ASSERT_TRUE(conn.has_value()) << server.output();
  const std::string peer = conn->value("peer", "");
  EXPECT_EQ(peer.rfind("[fd00:244:1::10]:", 0), 0u) << peer;
  EXPECT_EQ(conn->value("local", ""), "[fd00:244:2::20]:8080");
  // Through the tunnel, as HBONE, on both agents.
  EXPECT_TRUE(agent1_->waitForOutput("dst=[fd00:244:2::20]:8080", seconds(5))) << agent1_->output();
  EXPECT_TRUE(agent2_->waitForOutput("dst=[fd00:244:2::20]:8080", seconds(5))) << agent2_->output();
  for (Process* agent : {agent1_, agent2_}) {
    const std::string out = agent->output();
    const auto at = out.find("dst=[fd00:244:2::20]:8080");
    ASSERT_NE(at, std::string::npos);
    const std::string line = out.substr(at, out.find('\n', at) - at);
    EXPECT_NE(line.find("result=ok transport=hbone"), std::string::npos) << line;
    EXPECT_NE(line.find("src_identity=spiffe://cluster.local/ns/shop/sa/frontend"),
              std::string::npos)
        << line;
  }
}

// Same node, IPv6: the agent is both ends, the addresses are kept all the same, over HBONE and
// through the same-node fast path.
TEST_F(Ipv6Test, SameNodeHboneKeepsTheClientAddress) {
  startAgents({"--no-same-node-fast-path"});
  expectSameNodeKeepsTheClientAddress("transport=hbone");
}

TEST_F(Ipv6Test, SameNodeFastPathKeepsTheClientAddress) {
  startAgents();
  expectSameNodeKeepsTheClientAddress("transport=local");
}

// A client outside the mesh reaches a mesh pod over IPv6: sk_lookup steers the SYN to the pod's
// [::]:15006, and the application still sees the client's address (IPV6_TRANSPARENT and the
// pod's `ip -6 rule` for the delivery mark).
TEST_F(Ipv6Test, PlaintextInboundIsDeliveredFromTheClientsAddress) {
  startAgents();
  Process& server = serve6("cart-v1", 8080);
  auto done = connect("outsider", "[fd00:244:2::20]:8080", k1MiB, k1MiB);
  EXPECT_EQ(done.value("error", ""), "");
  EXPECT_EQ(done.value("received", 0ull), k1MiB);
  auto conn = served(server);
  ASSERT_TRUE(conn.has_value()) << server.output();
  EXPECT_EQ(conn->value("peer", "").rfind("[fd00:244:1::40]:", 0), 0u) << *conn;
  ASSERT_TRUE(agent2_->waitForOutput("src=[fd00:244:1::40]", seconds(5))) << agent2_->output();
  const std::string out = agent2_->output();
  const auto at = out.find("src=[fd00:244:1::40]");
  const std::string line = out.substr(at, out.find('\n', at) - at);
  EXPECT_NE(line.find("dst=[fd00:244:2::20]:8080"), std::string::npos) << line;
  EXPECT_NE(line.find("result=ok transport=tcp"), std::string::npos) << line;
}

// A service's IPv6 VIP is load-balanced over the endpoints' IPv6 addresses.
TEST_F(Ipv6Test, ServiceVipIsBalancedOverIpv6Endpoints) {
  startAgents();
  Process& v1 = serve6("cart-v1", 8080);
  Process& v2 = serve6("cart-v2", 8080);
  auto done = connect("frontend", "[fd00:96::20]:80", k1MiB, k1MiB);
  EXPECT_EQ(done.value("error", ""), "");
  EXPECT_EQ(done.value("peer", ""), "[fd00:96::20]:80");
  ASSERT_TRUE(waitFor([&] { return countOf(v1.output() + v2.output(), "\"event\":\"conn\"") > 0; },
                      seconds(10)));
  auto conn = findEvent(v1.output(), "conn");
  if (!conn) conn = findEvent(v2.output(), "conn");
  ASSERT_TRUE(conn.has_value());
  EXPECT_EQ(conn->value("peer", "").rfind("[fd00:244:1::10]:", 0), 0u) << *conn;
  const std::string local = conn->value("local", "");
  EXPECT_TRUE(local == "[fd00:244:2::20]:8080" || local == "[fd00:244:1::21]:8080") << local;
  EXPECT_TRUE(agent1_->waitForOutput("service_addr=[fd00:96::20]:80", seconds(5)))
      << agent1_->output();
}

// Policy applies to IPv6 connections as to IPv4 ones: the example's namespace-wide DENY of port
// 9999 refuses the HBONE stream, and the application never sees a connection.
TEST_F(Ipv6Test, DeniedIpv6ConnectionNeverReachesTheApplication) {
  startAgents();
  Process& server = serve6("cart-v1", 9999);
  auto r = cluster_->runInPod("frontend",
                              {testappPath(), "connect", "--to", "[fd00:244:2::20]:9999", "--send",
                               "1024", "--expect", "1024", "--timeout-ms", "5000"},
                              seconds(20));
  EXPECT_NE(r.exit_code, 0) << r.out;
  ASSERT_TRUE(agent2_->waitForOutput("verdict=deny policy=shop/deny-debug-port", seconds(5)))
      << agent2_->output();
  EXPECT_EQ(countOf(server.output(), "\"event\":\"conn\""), 0u) << server.output();
}

}  // namespace
}  // namespace nodemesh::sim
