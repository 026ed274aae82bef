// The same-node fast path (on by default, issue 18): frontend and cart-v2 are both on
// node1, so node1's agent owns both ends of a connection between them and joins the two sockets
// itself, without TLS or HTTP/2. What HBONE gives such a connection must stay: the identities
// in the access log and the metrics, the destination's policy (a denied connection never
// reaches the application), the client's own address at the server, both sides' access log
// lines.

#include <filesystem>
#include <regex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/e2e/hbone_tunnel_test_util.h"
#include "tests/e2e/mesh_fixture.h"

namespace nodemesh::sim::hbone_tunnel_test {
namespace {

using SameNodeTest = HboneTunnelTest;

std::string metricsOf(SimCluster& cluster, const std::string& node) {
  return cluster
      .runInNetns(cluster.nodeNetnsPath(node),
                  {"curl", "-s", "--max-time", "5", "http://127.0.0.1:15020/metrics"})
      .out;
}

TEST_F(SameNodeTest, FastPathKeepsIdentityPolicyAccessLogAndMetrics) {
  startAgents();
  if (HasFatalFailure()) return;
  const auto before = tunnelStats(*agent1_);

  // 1 MiB each way, checked intact at both ends.
  Process& server = serveParallel("cart-v2", 8080, 1, 1);
  auto done = connectSeeded("frontend", std::string(kCartV2) + ":8080", 1 << 20, 7);
  EXPECT_TRUE(done.value("ok", false)) << done.dump();
  ASSERT_EQ(server.waitExit(seconds(10)), 0) << server.output();
  // The application sees the client's own address.
  auto conn = findEvent(server.output(), "conn");
  ASSERT_TRUE(conn.has_value()) << server.output();
  EXPECT_EQ(conn->value("peer", "").rfind(std::string(kFrontend) + ":", 0), 0u) << conn->dump();

  // Both sides' lines, with the identities, as over HBONE but transport=local.
  ASSERT_TRUE(agent1_->waitForOutput("direction=inbound pod=shop/cart-v2-9b1e", seconds(5)));
  const std::string log = agent1_->output();
  EXPECT_TRUE(std::regex_search(
      log, std::regex(R"(access direction=outbound pod=shop/frontend-7d9f src=\S+ )"
                      R"(dst=10\.244\.1\.21:8080 bytes_to_dst=1048592 bytes_from_dst=1048576 )"
                      R"(duration_ms=\d+ result=ok transport=local )"
                      R"(src_identity=spiffe://cluster\.local/ns/shop/sa/frontend )"
                      R"(dst_identity=spiffe://cluster\.local/ns/shop/sa/cart )")))
      << log;
  EXPECT_TRUE(std::regex_search(
      log, std::regex(R"(access direction=inbound pod=shop/cart-v2-9b1e src=10\.244\.1\.10:\d+ )"
                      R"(dst=10\.244\.1\.21:8080 bytes_to_dst=1048592 bytes_from_dst=1048576 )"
                      R"(duration_ms=\d+ result=ok transport=local )"
                      R"(src_identity=spiffe://cluster\.local/ns/shop/sa/frontend )"
                      R"(dst_identity=spiffe://cluster\.local/ns/shop/sa/cart .*verdict=allow )")))
      << log;

  // No HBONE: no TLS handshake, no stream; the fast path counted.
  const auto after = tunnelStats(*agent1_);
  EXPECT_EQ(after.at("tls_handshakes_client"), before.at("tls_handshakes_client"));
  EXPECT_EQ(after.at("tls_handshakes_server"), before.at("tls_handshakes_server"));
  EXPECT_EQ(after.at("hbone_streams_opened"), before.at("hbone_streams_opened"));
  EXPECT_EQ(after.at("same_node_deliveries"), before.at("same_node_deliveries") + 1);

  // Istio's metrics from both reporters, with the principals and mutual_tls as over HBONE.
  std::string metrics;
  const std::regex source_side(
      R"(istio_tcp_connections_closed_total\{reporter="source",[^}]*)"
      R"(source_principal="spiffe://cluster\.local/ns/shop/sa/frontend",[^}]*)"
      R"(destination_principal="spiffe://cluster\.local/ns/shop/sa/cart",[^}]*)"
      R"(connection_security_policy="mutual_tls")");
  const std::regex destination_side(
      R"(istio_tcp_connections_closed_total\{reporter="destination",[^}]*)"
      R"(source_principal="spiffe://cluster\.local/ns/shop/sa/frontend",[^}]*)"
      R"(connection_security_policy="mutual_tls")");
  EXPECT_TRUE(waitFor(
      [&] {
        metrics = metricsOf(*cluster_, "node1");
        return std::regex_search(metrics, source_side) &&
               std::regex_search(metrics, destination_side);
      },
      seconds(5)))
      << metrics;
}

TEST_F(SameNodeTest, FastPathWithSpliceRelaysIntactThroughAFewPipes) {
  startAgents({"--same-node-fast-path", "--splice", "--splice-pipe-size", "16KiB"});
  if (HasFatalFailure()) return;
  // 8 MiB each way through 16 KiB pipes, checked intact at both ends.
  Process& server = serveParallel("cart-v2", 8080, 1, 1);
  auto done = connectSeeded("frontend", std::string(kCartV2) + ":8080", 8 << 20, 11);
  EXPECT_TRUE(done.value("ok", false)) << done.dump();
  ASSERT_EQ(server.waitExit(seconds(20)), 0) << server.output();
  ASSERT_TRUE(agent1_->waitForOutput("direction=inbound pod=shop/cart-v2-9b1e", seconds(5)));
  EXPECT_TRUE(std::regex_search(
      agent1_->output(),
      std::regex(R"(access direction=inbound pod=shop/cart-v2-9b1e src=10\.244\.1\.10:\d+ )"
                 R"(dst=10\.244\.1\.21:8080 bytes_to_dst=8388624 bytes_from_dst=8388608 )"
                 R"(duration_ms=\d+ result=ok transport=local )")))
      << agent1_->output();
  // Spliced: pipes were made, and reused rather than made per chunk (at most one per direction
  // blocked at a time, plus the other connections' of the test).
  const auto stats = tunnelStats(*agent1_);
  EXPECT_GE(stats.at("splice_pipes_created"), 1u);
  EXPECT_LE(stats.at("splice_pipes_created"), 8u);
}

TEST_F(SameNodeTest, FastPathAppliesTheDestinationsPolicy) {
  startAgents();
  if (HasFatalFailure()) return;
  // shop/deny-debug-port denies 9999 in the namespace: the connection is reset before the
  // application is connected to, and both lines say why.
  Process& server = serve("cart-v2", 9999, 1);
  auto r = cluster_->runInPod("frontend",
                              {testappPath(), "connect", "--to", std::string(kCartV2) + ":9999",
                               "--send", "100", "--expect", "100"},
                              seconds(20));
  EXPECT_NE(r.exit_code, 0) << r.out;
  ASSERT_TRUE(agent1_->waitForOutput("dst=10.244.1.21:9999", seconds(5))) << agent1_->output();
  ASSERT_TRUE(
      waitFor([&] { return countOf(agent1_->output(), "dst=10.244.1.21:9999") >= 2; }, seconds(5)));
  const std::string log = agent1_->output();
  EXPECT_TRUE(std::regex_search(
      log, std::regex(R"(access direction=inbound pod=shop/cart-v2-9b1e src=10\.244\.1\.10:\d+ )"
                      R"(dst=10\.244\.1\.21:9999 .*transport=local .*verdict=deny )"
                      R"(policy=shop/deny-debug-port )")))
      << log;
  EXPECT_TRUE(std::regex_search(
      log,
      std::regex(R"(access direction=outbound pod=shop/frontend-7d9f .*dst=10\.244\.1\.21:9999 )"
                 R"(.*result="shop/cart-v2-9b1e refused the connection: denied: .*)"
                 R"(verdict=deny policy=shop/deny-debug-port )")))
      << log;
  // The application never saw it.
  EXPECT_EQ(server.output().find("\"event\":\"conn\""), std::string::npos) << server.output();
  EXPECT_GE(tunnelStats(*agent1_).at("denied"), 1u);
  EXPECT_GE(tunnelStats(*agent1_).at("same_node_refused"), 1u);
}

TEST_F(SameNodeTest, APolicyChangeClosesAnOpenFastPathConnectionItNowDenies) {
  // The example's own policies (no allow-all): cart's workloads take frontend on 8080.
  const std::string config_path = cluster_->writeFile("policy.yaml", exampleConfig());
  startAgents({}, config_path);
  if (HasFatalFailure()) return;
  serve("cart-v2", 8080);
  // 4 MiB at 512 KiB/s: open for about 8 s unless something closes it.
  Process& client = cluster_->startInPod(
      "frontend", {testappPath(), "connect", "--to", std::string(kCartV2) + ":8080", "--send", "4M",
                   "--expect", "0", "--rate", "512K"});
  ASSERT_TRUE(
      waitFor([&] { return tunnelStats(*agent1_)["same_node_deliveries"] >= 1; }, seconds(5)))
      << agent1_->output();
  std::this_thread::sleep_for(milliseconds(300));
  ASSERT_TRUE(client.isRunning()) << client.output();
  // The ALLOW policy now names cart's service account instead of frontend's.
  std::string text = exampleConfig();
  const std::string from = "cluster.local/ns/shop/sa/frontend";
  const auto pos = text.find(from);
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, from.size(), "cluster.local/ns/shop/sa/cart");
  std::filesystem::rename(cluster_->writeFile("policy.yaml.tmp", text), config_path);
  ASSERT_TRUE(client.waitExit(seconds(5)).has_value()) << "still open 5 s after the change";
  auto done = findEvent(client.output(), "done");
  ASSERT_TRUE(done.has_value()) << client.output();
  EXPECT_FALSE(done->value("ok", true)) << done->dump();
  ASSERT_TRUE(agent1_->waitForOutput("closed by policy change", seconds(5))) << agent1_->output();
  EXPECT_TRUE(std::regex_search(
      agent1_->output(),
      std::regex(R"(access direction=inbound pod=shop/cart-v2-9b1e src=10\.244\.1\.10:\d+ )"
                 R"(dst=10\.244\.1\.21:8080 .*result="closed by policy change: .*)"
                 R"(transport=local .*verdict=deny policy=shop/cart-allow-frontend )")))
      << agent1_->output();
  EXPECT_EQ(tunnelStats(*agent1_).at("closed_by_policy"), 1u);
}

// Turned off, same-node connections go over HBONE to the node's own 15008. (The splice test above
// still spells the default out as --same-node-fast-path, the flag's name while it was opt-in.)
TEST_F(SameNodeTest, WithNoSameNodeFastPathSameNodeConnectionsUseHbone) {
  startAgents({"--no-same-node-fast-path"});
  if (HasFatalFailure()) return;
  Process& server = serveParallel("cart-v2", 8080, 1, 1);
  auto done = connectSeeded("frontend", std::string(kCartV2) + ":8080", 4096, 3);
  EXPECT_TRUE(done.value("ok", false)) << done.dump();
  ASSERT_EQ(server.waitExit(seconds(10)), 0) << server.output();
  ASSERT_TRUE(agent1_->waitForOutput("direction=inbound pod=shop/cart-v2-9b1e", seconds(5)));
  EXPECT_NE(agent1_->output().find("transport=hbone"), std::string::npos);
  EXPECT_EQ(agent1_->output().find("transport=local"), std::string::npos);
  EXPECT_EQ(tunnelStats(*agent1_).at("same_node_deliveries"), 0u);
}

}  // namespace
}  // namespace nodemesh::sim::hbone_tunnel_test
