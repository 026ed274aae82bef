#pragma once

// The two-node mesh most end-to-end tests start from: the pods of examples/two-nodes.yaml
// (plus a late pod and a pod outside the config) on a SimCluster, one nodemesh-agent per node
// in the node's netns and cgroup, a cluster-private CA, and helpers to drive nm-testapp and
// read the agents' counters.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "agent/bpf/pinned_counters.h"
#include "capture_abi.h"
#include "common/fd.h"
#include "common/netns.h"
#include "sim/sim_cluster.h"
#include "sim/testapp_client.h"
#include "tests/e2e/privileged_gate.h"

namespace nodemesh::sim {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

inline constexpr uint64_t k64MiB = 64ull << 20;

// examples/two-nodes.yaml as it is: the authorization tests run on its policies.
inline std::string exampleConfig() {
  std::ifstream in(std::string(NODEMESH_EXAMPLES_DIR) + "/two-nodes.yaml");
  std::stringstream example;
  example << in.rdbuf();
  return example.str();
}

// The example mesh plus what the capture and tunnel tests need: a pod that only appears after
// the agent started, and a global allow-all policy, so that those tests can connect any pod to
// any port (the example's policies allow only frontend -> cart:8080; authorization has its
// own tests on exampleConfig()).
inline std::string testConfig() {
  std::string text = exampleConfig() +
                     "- name: allow-all-for-tests\n"
                     "  namespace: istio-system\n"
                     "  scope: Global\n"
                     "  action: Allow\n"
                     "  rules:\n"
                     "  - []\n";
  const std::string extra =
      "- uid: cluster1//v1/Pod/shop/late-0\n"
      "  name: late-0\n"
      "  namespace: shop\n"
      "  serviceAccount: late\n"
      "  workloadIps: [\"10.244.1.50\"]\n"
      "  protocol: HBONE\n"
      "  node: node1\n";
  auto pos = text.find("workloads:\n");
  if (pos == std::string::npos) return text;
  return text.insert(pos + std::string("workloads:\n").size(), extra);
}

// The agent's counters, read from its pins as nodemeshctl will; empty when unreadable.
class PinnedCounters {
 public:
  explicit PinnedCounters(std::string maps_dir) : maps_dir_(std::move(maps_dir)) {}
  std::map<std::string, uint64_t> pod(uint64_t cookie) const {
    return agent::readPinnedCounters(maps_dir_, cookie).valueOr({});
  }
  std::map<std::string, uint64_t> node() const {
    return agent::readPinnedCounters(maps_dir_).valueOr({});
  }

 private:
  std::string maps_dir_;
};

inline size_t countOf(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

// The `key=value` counters of the line starting with `prefix` that SIGUSR1 makes the agent log
// (`tunnel stats: `, `discovery: `); empty when the line did not come within 5 s.
inline std::map<std::string, uint64_t> signalledCounters(Process& agent,
                                                         const std::string& prefix) {
  const size_t before = countOf(agent.output(), prefix);
  if (!agent.signal(SIGUSR1)) return {};
  std::string out;
  if (!waitFor(
          [&] {
            out = agent.output();
            return countOf(out, prefix) > before;
          },
          seconds(5))) {
    return {};
  }
  const size_t pos = out.rfind(prefix);
  const std::string line = out.substr(pos, out.find('\n', pos) - pos);
  std::map<std::string, uint64_t> stats;
  static const std::regex kPair(R"((\w+)=(\d+))");
  for (std::sregex_iterator it(line.begin(), line.end(), kPair), end; it != end; ++it) {
    stats[(*it)[1]] = std::stoull((*it)[2]);
  }
  return stats;
}

// The agent's tunnel counters (the `tunnel stats:` line).
inline std::map<std::string, uint64_t> tunnelStats(Process& agent) {
  return signalledCounters(agent, "tunnel stats: ");
}

inline uint64_t cookieOf(const std::string& netns_path) {
  auto fd = openNetns(netns_path);
  if (!fd) return 0;
  auto cookie = netnsCookie(fd->get());
  return cookie ? *cookie : 0;
}

// Programs attached to a cgroup or netns for one attach type.
inline uint32_t attachedPrograms(int target_fd, bpf_attach_type type) {
  uint32_t ids[64];
  uint32_t count = 64;
  uint32_t flags = 0;
  if (bpf_prog_query(target_fd, type, 0, &flags, ids, &count) != 0) return 0;
  return count;
}

inline uint32_t mapId(const std::string& pin) {
  UniqueFd fd(bpf_obj_get(pin.c_str()));
  if (!fd.valid()) return 0;
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return 0;
  return info.id;
}

class MeshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NODEMESH_REQUIRE_ROOT_OR_SKIP();
    cluster_ = std::make_unique<SimCluster>();
    cluster_->addNode("node1");
    cluster_->addNode("node2");
    cluster_->addPod("node1", "frontend", "10.244.1.10");
    cluster_->addPod("node1", "cart-v2", "10.244.1.21");
    cluster_->addPod("node2", "cart-v1", "10.244.2.20");
    cluster_->addPod("node2", "batch", "10.244.2.30");     // legacy: protocol TCP
    cluster_->addPod("node1", "outsider", "10.244.1.40");  // in no config at all
    config_path_ = cluster_->writeFile("mesh.yaml", testConfig());
  }

  std::string bpffs(const std::string& node) { return cluster_->bpffsDir() + "/" + node; }
  std::string mapsDir(const std::string& node) { return bpffs(node) + "/maps"; }

  // Starts node's agent on config_path_ (or `config`; kNoConfigFile: none, the flags in `extra`
  // say where the config comes from), with extra flags.
  static constexpr const char* kNoConfigFile = "-";
  Process& startAgent(const std::string& node, std::vector<std::string> extra = {},
                      const std::string& config = "") {
    ProcessSpec spec;
    spec.netns_path = cluster_->nodeNetnsPath(node);
    spec.cgroup_path = cluster_->nodeCgroupPath(node);
    spec.argv = {agentPath(),
                 "--config",
                 config.empty() ? config_path_ : config,
                 "--node",
                 node,
                 "--cgroup",
                 spec.cgroup_path,
                 "--bpffs",
                 bpffs(node),
                 "--scan-interval-ms",
                 "100"};
    // One CA for the cluster, private to this test (never the machine's /var/lib/nodemesh).
    spec.argv.insert(spec.argv.end(), {"--state-dir", cluster_->workDir() + "/ca"});
    // Only this cluster's pods: tests running at the same time have pods with the same addresses.
    spec.argv.insert(spec.argv.end(), {"--netns-prefix", cluster_->prefix() + "-"});
    spec.argv.insert(spec.argv.end(), extra.begin(), extra.end());
    if (config == kNoConfigFile) spec.argv.erase(spec.argv.begin() + 1, spec.argv.begin() + 3);
    spec.stdout_path =
        cluster_->workDir() + "/agent-" + node + "-" + std::to_string(++agent_runs_) + ".log";
    spec.stderr_path = spec.stdout_path;
    return cluster_->startProcess(spec);
  }

  // Starts both agents and waits until each enrolled its HBONE pods.
  // Starts both agents (node1 excludes outbound port 9090, node2 inbound port 9191; `extra`
  // flags for both, an optional other config) and waits until each enrolled its pods.
  void startAgents(const std::vector<std::string>& extra = {}, const std::string& config = "") {
    std::vector<std::string> flags1 = {"--exclude-outbound-ports", "9090"};
    std::vector<std::string> flags2 = {"--exclude-inbound-ports", "9191"};
    flags1.insert(flags1.end(), extra.begin(), extra.end());
    flags2.insert(flags2.end(), extra.begin(), extra.end());
    agent1_ = &startAgent("node1", flags1, config);
    agent2_ = &startAgent("node2", flags2, config);
    ASSERT_TRUE(agent1_->waitForOutput("enrolled pod shop/frontend-7d9f", seconds(10)))
        << agent1_->output();
    ASSERT_TRUE(agent1_->waitForOutput("enrolled pod shop/cart-v2-9b1e", seconds(10)))
        << agent1_->output();
    ASSERT_TRUE(agent2_->waitForOutput("enrolled pod shop/cart-v1-5c2a", seconds(10)))
        << agent2_->output();
  }

  Process& serve(const std::string& pod, uint16_t port, int count = 1) {
    Process& p = cluster_->startInPod(pod, {testappPath(), "serve", "--port", std::to_string(port),
                                            "--count", std::to_string(count)});
    EXPECT_TRUE(waitForListening(p).has_value()) << p.output();
    return p;
  }

  nlohmann::json connect(const std::string& pod, const std::string& to, uint64_t send,
                         uint64_t expect, bool v4_mapped = false) {
    std::vector<std::string> argv = {
        testappPath(),         "connect", "--to", to, "--send", std::to_string(send), "--expect",
        std::to_string(expect)};
    if (v4_mapped) argv.insert(argv.end(), {"--v4-mapped", "1"});
    auto r = cluster_->runInPod(pod, argv, seconds(60));
    auto done = findEvent(r.out, "done");
    EXPECT_TRUE(done.has_value()) << r.describe() << "\n" << r.out;
    return done.value_or(nlohmann::json::object());
  }

  std::unique_ptr<SimCluster> cluster_;
  std::string config_path_;
  Process* agent1_ = nullptr;
  Process* agent2_ = nullptr;
  int agent_runs_ = 0;
};

}  // namespace nodemesh::sim
