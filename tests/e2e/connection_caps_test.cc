// End-to-end tests of the per-workload inbound connection caps (docs/tunnel.md#per-workload-
// connection-caps) on the simulated two-node cluster: node2's agent caps cart-v1's inbound
// connections, reached over HBONE from frontend (node1, enrolled) and as plaintext on 15006 from
// outsider (node1, in no config).
#include <cstdio>
#include <string>
#include <vector>

#include "tests/e2e/hbone_tunnel_test_util.h"
#include "tests/e2e/mesh_fixture.h"

namespace nodemesh::sim::hbone_tunnel_test {
namespace {

const std::string kCartV1Port = std::string(kCartV1) + ":8080";
const std::string kCartV1Closed = std::string(kCartV1) + ":8099";  // nothing listens there

class ConnectionCapsTest : public HboneTunnelTest {
 protected:
  // A connection from `pod` to cart-v1:8080 kept open for about `s` seconds: its upload is
  // paced at 10 bytes/s.
  Process& holdOpen(const std::string& pod, int s) {
    const std::string bytes = std::to_string(10 * s);
    return cluster_->startInPod(pod, {testappPath(), "connect", "--to", kCartV1Port, "--send",
                                      bytes, "--expect", bytes, "--rate", "10"});
  }

  // node2's agent has `n` connections open (the held ones, relayed to cart-v1).
  bool waitActive(uint64_t n) {
    return waitFor([&] { return tunnelStats(*agent2_)["active"] == n; }, seconds(10));
  }

  static bool doneOk(Process& client) {
    auto exit = client.waitExit(seconds(30));
    auto done = findEvent(client.output(), "done");
    return exit == 0 && done && done->value("ok", false);
  }

  // 3 held open, the 4th refused and counted, one ends, the next admitted: from `client_pod`.
  void checkOpenCap(const std::string& client_pod) {
    Process& server = serveParallel("cart-v1", 8080, 4, 8);
    // Connections that fail (nothing listens on 8099: the delivery is refused) give their
    // slot back: with a leak these three would fill the cap.
    for (int i = 0; i < 3; ++i) {
      EXPECT_FALSE(connect(client_pod, kCartV1Closed, 16, 16).value("ok", true));
    }
    ASSERT_TRUE(waitActive(0));

    Process& short_one = holdOpen(client_pod, 5);
    Process& long_one = holdOpen(client_pod, 15);
    Process& long_two = holdOpen(client_pod, 15);
    ASSERT_TRUE(waitActive(3)) << agent2_->output();
    Stats before = tunnelStats(*agent2_);
    EXPECT_EQ(before["refused_connections"], 0u);

    auto refused = connect(client_pod, kCartV1Port, 16, 16);
    EXPECT_FALSE(refused.value("ok", true)) << refused.dump();
    Stats after_refusal = tunnelStats(*agent2_);
    EXPECT_EQ(after_refusal["refused_connections"], 1u);
    EXPECT_EQ(after_refusal["refused_rate"], 0u);
    EXPECT_EQ(after_refusal["active"], 3u);

    // One of the three ends: a new connection is admitted while the other two stay open.
    EXPECT_TRUE(doneOk(short_one)) << short_one.output();
    ASSERT_TRUE(waitActive(2));
    auto admitted = connect(client_pod, kCartV1Port, 16, 16);
    EXPECT_TRUE(admitted.value("ok", false)) << admitted.dump() << agent2_->output();
    Stats after = tunnelStats(*agent2_);
    EXPECT_EQ(after["refused_connections"], 1u);
    EXPECT_TRUE(doneOk(long_one)) << long_one.output();
    EXPECT_TRUE(doneOk(long_two)) << long_two.output();
    EXPECT_EQ(server.waitExit(seconds(10)), 0) << server.output();
    EXPECT_TRUE(waitActive(0));

    // The access log says why; the refusal is logged in summary.
    const std::string log = agent2_->output();
    EXPECT_EQ(countOf(log, "refused: the workload has 3 inbound connections open (the cap)"), 2u)
        << log;  // the access line and the summary line
    EXPECT_EQ(countOf(log, "refused by this worker since its last such line"), 1u) << log;
  }

  // A burst of 10 new connections against 2/s (burst 2) from `client_pod`: about 2 admitted.
  void checkRate(const std::string& client_pod) {
    serveParallel("cart-v1", 8080, 10, 10);
    auto r = cluster_->runInPod(client_pod,
                                {testappPath(), "connect-many", "--to", kCartV1Port, "--count",
                                 "10", "--send", "16", "--expect", "16"},
                                seconds(60));
    auto many = findEvent(r.out, "many");
    ASSERT_TRUE(many.has_value()) << r.describe() << r.out;
    std::printf("burst of 10 at 2/s: %s\n", many->dump().c_str());
    const uint64_t ok = many->value("ok_count", 0u);
    const uint64_t elapsed_ms = many->value("elapsed_ms", 0u);
    // The burst at once, then one every 500 ms of the burst's duration.
    EXPECT_GE(ok, 2u) << many->dump();
    EXPECT_LE(ok, 2u + elapsed_ms / 500) << many->dump();
    EXPECT_LT(ok, 10u) << many->dump();
    Stats stats = tunnelStats(*agent2_);
    EXPECT_EQ(stats["refused_rate"], 10u - ok);
    EXPECT_EQ(stats["refused_connections"], 0u);
    EXPECT_NE(agent2_->output().find("refused: over the workload's 2 new inbound connections/s "
                                     "(burst 2)"),
              std::string::npos)
        << agent2_->output();
  }
};

TEST_F(ConnectionCapsTest, HboneStreamsOverTheOpenCapGet503AndTheConnectionStaysUp) {
  startAgents({"--max-inbound-connections-per-workload", "3"});
  if (HasFatalFailure()) return;
  checkOpenCap("frontend");
  Stats node1 = tunnelStats(*agent1_);
  Stats node2 = tunnelStats(*agent2_);
  // The refused stream was answered (node1 saw the CONNECT rejected), and the one HBONE
  // connection carried every stream: no second handshake after the refusal.
  EXPECT_GE(node1["hbone_streams_rejected"], 1u);
  EXPECT_EQ(node2["tls_handshakes_server"], 1u);
  EXPECT_NE(agent2_->output().find("transport=hbone"), std::string::npos);
}

TEST_F(ConnectionCapsTest, PlaintextConnectionsOverTheOpenCapAreReset) {
  startAgents({"--max-inbound-connections-per-workload", "3"});
  if (HasFatalFailure()) return;
  checkOpenCap("outsider");
  EXPECT_EQ(tunnelStats(*agent2_)["tls_handshakes_server"], 0u);  // all of it plaintext
}

TEST_F(ConnectionCapsTest, HboneStreamsOverTheRateGet503) {
  startAgents({"--max-inbound-connection-rate-per-workload", "2"});
  if (HasFatalFailure()) return;
  checkRate("frontend");
  EXPECT_EQ(tunnelStats(*agent2_)["tls_handshakes_server"], 1u);
}

TEST_F(ConnectionCapsTest, PlaintextConnectionsOverTheRateAreReset) {
  startAgents({"--max-inbound-connection-rate-per-workload", "2"});
  if (HasFatalFailure()) return;
  checkRate("outsider");
}

}  // namespace
}  // namespace nodemesh::sim::hbone_tunnel_test
