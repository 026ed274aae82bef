// Agent upgrades (agent/handoff.h): a new agent takes the running one's listening sockets and
// the old one drains, under load, on both nodes, without one failed connection.

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include "tests/e2e/hbone_tunnel_test_util.h"
#include "tests/e2e/mesh_fixture.h"

namespace nodemesh::sim::hbone_tunnel_test {
namespace {

using UpgradeTest = HboneTunnelTest;

// Issue 21, must show 4: both agents are upgraded (node2's, which serves HBONE from node1's
// pool, then node1's, which owns the clients' outbound listeners) while short connections run
// back to back from frontend to cart-v1 across the nodes and 50 long transfers are open. No
// new connection fails or waits 2 s for an answer, and every long transfer, which ends within
// the drain window, arrives whole: the old agents stop accepting, serve what they have, and
// exit by themselves.
TEST_F(UpgradeTest, UpgradingBothAgentsUnderLoadFailsNoConnection) {
  const std::vector<std::string> drain = {"--drain-timeout-s", "20"};
  startAgents(drain);
  if (HasFatalFailure()) return;
  Process& server = serveParallel("cart-v1", 8080, /*count=*/0, /*parallel=*/128);
  Process& old1 = *agent1_;
  Process& old2 = *agent2_;

  // 50 transfers of 2 MiB paced at 256 KiB/s: 8 s each, open across both upgrades.
  Process& longs = cluster_->startInPod(
      "frontend", {testappPath(), "connect-many", "--to", std::string(kCartV1) + ":8080", "--count",
                   "50", "--concurrency", "50", "--send", "2M", "--expect", "64K", "--rate", "256K",
                   "--timeout-ms", "30000", "--seed", "5"});

  // The load runs on a thread of its own; the agents are started from this one (the
  // simulated cluster's processes die with the thread that started them: PR_SET_PDEATHSIG).
  std::atomic<bool> done{false};
  ShortConnections shorts;
  const auto start = std::chrono::steady_clock::now();
  std::thread load([&] {
    while (!done && std::chrono::steady_clock::now() - start < seconds(40) &&
           shortConnectionBatch("frontend", std::string(kCartV1) + ":8080", 200, 4, shorts,
                                /*timeout_ms=*/2000)) {
    }
  });

  std::this_thread::sleep_for(milliseconds(1500));
  Process& new2 =
      startAgent("node2", {"--exclude-inbound-ports", "9191", "--drain-timeout-s", "20"});
  const bool took2 = new2.waitForOutput("handoff: took over from the previous agent", seconds(15));
  std::this_thread::sleep_for(milliseconds(1500));
  Process& new1 =
      startAgent("node1", {"--exclude-outbound-ports", "9090", "--drain-timeout-s", "20"});
  const bool took1 =
      took2 && new1.waitForOutput("handoff: took over from the previous agent", seconds(15));
  std::this_thread::sleep_for(milliseconds(1500));
  done = true;
  load.join();
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  agent1_ = &new1;
  agent2_ = &new2;
  ASSERT_TRUE(took2) << new2.output();
  ASSERT_TRUE(took1) << new1.output();

  // The long transfers end within the drain window, whole.
  auto long_exit = longs.waitExit(seconds(40));
  auto long_many = findEvent(longs.output(), "many");
  ASSERT_TRUE(long_many.has_value()) << longs.output();

  // The old agents drained and left by themselves, leaving the capture to the new ones.
  const double rate = static_cast<double>(shorts.total) / elapsed_s;
  auto old2_exit = old2.waitExit(seconds(25));
  auto old1_exit = old1.waitExit(seconds(25));
  std::cout << "upgrades of both agents under load: " << shorts.total << " short connections in "
            << elapsed_s << " s (" << static_cast<uint64_t>(rate) << "/s), " << shorts.failed
            << " failed; long transfers: " << long_many->value("count", uint64_t{0}) << ", "
            << long_many->value("failed", uint64_t{0}) << " failed\n";
  EXPECT_EQ(shorts.failed, 0u) << ::testing::PrintToString(shorts.errors);
  EXPECT_TRUE(shorts.errors.empty()) << ::testing::PrintToString(shorts.errors);
  EXPECT_GE(rate, 200.0);
  EXPECT_EQ(long_exit, 0) << longs.output();
  EXPECT_EQ(long_many->value("count", uint64_t{0}), 50u) << long_many->dump();
  EXPECT_EQ(long_many->value("failed", uint64_t{0}), 0u) << long_many->dump();
  EXPECT_EQ(old2_exit, 0) << old2.output();
  EXPECT_EQ(old1_exit, 0) << old1.output();
  for (Process* old : {&old1, &old2}) {
    EXPECT_NE(old->output().find("handoff: the new agent accepts on the sockets: draining"),
              std::string::npos)
        << old->output();
    EXPECT_NE(old->output().find("drained: every connection ended"), std::string::npos)
        << old->output();
    EXPECT_NE(old->output().find("capture left in place"), std::string::npos) << old->output();
  }

  // Only the new agents are left, and they serve.
  auto after = cluster_->runInPod(
      "frontend",
      {testappPath(), "connect-many", "--to", std::string(kCartV1) + ":8080", "--count", "20",
       "--send", "4096", "--expect", "4096", "--concurrency", "2"},
      seconds(30));
  auto after_many = findEvent(after.out, "many");
  ASSERT_TRUE(after_many.has_value()) << after.describe() << after.out;
  EXPECT_TRUE(after_many->value("ok", false)) << after_many->dump() << new1.output();
  (void)server.signal(SIGTERM);
  (void)server.waitExit(seconds(5));
}

// Eight upgrades one after the other (six of node2's agent, the HBONE server, two of node1's,
// the client's) while one client connects without pause and 40 paced transfers keep the workers
// busy. Each old agent's GOAWAY makes node1's agent open its next HBONE connection at once, to
// a socket the old agent is just leaving: an accept of the old agent woken by it while being
// cancelled would leave it queued, with no accept of the new agent woken to take it
// (agent/handoff.h, "stopped"), and every stream of the pool would wait on its handshake. Each
// new agent must hear "stopped" and restart its accepts, and no connection may fail. The
// kernel's side of it is pinned down in tests/unit/tunnel/pod_listeners_handoff_test.cc: the
// race is too narrow here to fail reliably without the fix (0 of 6 runs; the test above failed
// in 1 of 3 runs without it, under its heavier load).
TEST_F(UpgradeTest, RepeatedUpgradesStrandNoQueuedConnection) {
  startAgents({"--drain-timeout-s", "5"});
  if (HasFatalFailure()) return;
  Process& server = serveParallel("cart-v1", 8080, /*count=*/0, /*parallel=*/64);
  // Busy workers (40 paced transfers of 1 MiB, 4 s each, open across the first upgrades) are
  // slower to take a drain: the old agent's cancel comes later.
  Process& longs = cluster_->startInPod(
      "frontend", {testappPath(), "connect-many", "--to", std::string(kCartV1) + ":8080", "--count",
                   "40", "--concurrency", "40", "--send", "1M", "--expect", "64K", "--rate", "256K",
                   "--timeout-ms", "30000", "--seed", "7"});
  std::atomic<bool> done{false};
  ShortConnections shorts;
  std::thread load([&] {
    while (!done && shortConnectionBatch("frontend", std::string(kCartV1) + ":8080", 100, 1, shorts,
                                         /*timeout_ms=*/3000)) {
    }
  });

  std::vector<Process*> olds;
  int upgrades = 0;
  bool took_all = true;
  for (int round = 0; round < 8 && took_all; ++round) {
    std::this_thread::sleep_for(milliseconds(300));
    // Mostly node2's (the HBONE server), every fourth node1's (the client's 15001).
    const bool client_side = round % 4 == 3;
    Process*& current = client_side ? agent1_ : agent2_;
    olds.push_back(current);
    current =
        client_side
            ? &startAgent("node1", {"--exclude-outbound-ports", "9090", "--drain-timeout-s", "5"})
            : &startAgent("node2", {"--exclude-inbound-ports", "9191", "--drain-timeout-s", "5"});
    took_all = current->waitForOutput("handoff: the previous agent accepts no more", seconds(15));
    upgrades += took_all ? 1 : 0;
  }
  std::this_thread::sleep_for(milliseconds(500));
  done = true;
  load.join();
  ASSERT_TRUE(took_all) << agent1_->output() << agent2_->output();
  std::cout << "repeated upgrades: " << upgrades << " upgrades, " << shorts.total
            << " short connections, " << shorts.failed << " failed\n";
  EXPECT_EQ(shorts.failed, 0u) << ::testing::PrintToString(shorts.errors);
  EXPECT_TRUE(shorts.errors.empty()) << ::testing::PrintToString(shorts.errors);
  EXPECT_GT(shorts.total, 0u);
  EXPECT_EQ(longs.waitExit(seconds(30)), 0) << longs.output();
  for (Process* old : olds) {
    EXPECT_EQ(old->waitExit(seconds(15)), 0) << old->output();
    EXPECT_EQ(old->output().find("accepts still pending"), std::string::npos) << old->output();
  }
  (void)server.signal(SIGTERM);
  (void)server.waitExit(seconds(5));
}

// The same within one node, where the agent joins both ends itself (the same-node fast path, the
// default): node1's agent is upgraded while short connections run from frontend to cart-v2 and
// 20 long ones are open. The old agent keeps relaying what it holds until each ends; the new one
// takes the new connections, still without HBONE. None fails, every long transfer is whole.
TEST_F(UpgradeTest, UpgradingTheAgentUnderSameNodeLoadFailsNoConnection) {
  startAgents({"--drain-timeout-s", "20"});
  if (HasFatalFailure()) return;
  Process& server = serveParallel("cart-v2", 8080, /*count=*/0, /*parallel=*/64);
  Process& old1 = *agent1_;

  // 20 transfers of 1 MiB paced at 256 KiB/s: 4 s each, open across the upgrade.
  Process& longs = cluster_->startInPod(
      "frontend", {testappPath(), "connect-many", "--to", std::string(kCartV2) + ":8080", "--count",
                   "20", "--concurrency", "20", "--send", "1M", "--expect", "64K", "--rate", "256K",
                   "--timeout-ms", "30000", "--seed", "9"});
  std::atomic<bool> done{false};
  ShortConnections shorts;
  const auto start = std::chrono::steady_clock::now();
  std::thread load([&] {
    while (!done && std::chrono::steady_clock::now() - start < seconds(30) &&
           shortConnectionBatch("frontend", std::string(kCartV2) + ":8080", 200, 4, shorts,
                                /*timeout_ms=*/2000)) {
    }
  });

  std::this_thread::sleep_for(milliseconds(1500));
  Process& new1 =
      startAgent("node1", {"--exclude-outbound-ports", "9090", "--drain-timeout-s", "20"});
  const bool took = new1.waitForOutput("handoff: took over from the previous agent", seconds(15));
  std::this_thread::sleep_for(milliseconds(1500));
  done = true;
  load.join();
  agent1_ = &new1;
  ASSERT_TRUE(took) << new1.output();

  auto long_exit = longs.waitExit(seconds(30));
  auto long_many = findEvent(longs.output(), "many");
  ASSERT_TRUE(long_many.has_value()) << longs.output();
  auto old1_exit = old1.waitExit(seconds(25));
  std::cout << "upgrade of node1's agent under same-node load: " << shorts.total
            << " short connections, " << shorts.failed
            << " failed; long transfers: " << long_many->value("count", uint64_t{0}) << ", "
            << long_many->value("failed", uint64_t{0}) << " failed\n";
  EXPECT_EQ(shorts.failed, 0u) << ::testing::PrintToString(shorts.errors);
  EXPECT_TRUE(shorts.errors.empty()) << ::testing::PrintToString(shorts.errors);
  EXPECT_GT(shorts.total, 0u);
  EXPECT_EQ(long_exit, 0) << longs.output();
  EXPECT_EQ(long_many->value("count", uint64_t{0}), 20u) << long_many->dump();
  EXPECT_EQ(long_many->value("failed", uint64_t{0}), 0u) << long_many->dump();
  EXPECT_EQ(old1_exit, 0) << old1.output();
  EXPECT_NE(old1.output().find("drained: every connection ended"), std::string::npos)
      << old1.output();
  // Both agents carried same-node connections without HBONE: the old one before the upgrade
  // (the long transfers among them), the new one after it. (In the few milliseconds between
  // the new agent taking the listeners and enrolling cart-v2, a connection to cart-v2 may go
  // over HBONE to the old agent's 15008, as to a pod of another node: seen in 1 run of 9.)
  for (Process* agent : {&old1, &new1}) {
    EXPECT_NE(agent->output().find("transport=local"), std::string::npos) << agent->output();
  }
  (void)server.signal(SIGTERM);
  (void)server.waitExit(seconds(5));
}

}  // namespace
}  // namespace nodemesh::sim::hbone_tunnel_test
