// The agent following Kubernetes (docs/kubernetes.md), end to end: a node netns with a running
// nodemesh-agent (--kubernetes, --cni-socket), a stand-in API server (tests/k8s_standin) listening
// inside that node's netns, and pods created through a CNI chain the way a runtime creates them
// (Debian's bridge + host-local, then nodemesh-cni; CNI_ARGS with K8S_POD_*). Applications run
// in the pod's netns and the node's cgroup, so the agent's programs see them.
//
// Connections are "captured" when the agent's access log has a line for them: only connections
// that went through the agent's tunnel are logged.

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cni/state_file.h"
#include "common/fd.h"
#include "sim/process.h"
#include "sim/sim_cluster.h"
#include "sim/testapp_client.h"
#include "tests/e2e/privileged_gate.h"
#include "tests/k8s_standin/standin_api_server.h"

namespace nodemesh::sim {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::StandinApiServer;
using Kind = StandinApiServer::Kind;

constexpr const char* kNode = "n1";
constexpr const char* kServerPort = "7070";

std::atomic<int> g_counter{0};

// The stand-in API server, bound inside `netns_path` (the agent's node) so the agent reaches it
// on 127.0.0.1 there: sockets keep the namespace they were created in.
std::unique_ptr<StandinApiServer> startStandinIn(const std::string& netns_path) {
  std::unique_ptr<StandinApiServer> server;
  std::string problem;
  std::thread t([&] {
    UniqueFd ns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid() || ::setns(ns.get(), CLONE_NEWNET) != 0) {
      problem = "setns " + netns_path + ": " + std::strerror(errno);
      return;
    }
    auto started = StandinApiServer::start();
    if (!started) {
      problem = started.error().message;
      return;
    }
    server = std::move(*started);
  });
  t.join();
  if (!server) throw HarnessError("stand-in API server: " + problem);
  return server;
}

json namespaceObject(const std::string& name, bool ambient) {
  json ns = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}};
  if (ambient) ns["metadata"]["labels"] = {{"istio.io/dataplane-mode", "ambient"}};
  return ns;
}

json podObject(const std::string& ns, const std::string& name, const std::string& uid) {
  return {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"name", name}, {"namespace", ns}, {"uid", uid}, {"labels", {{"app", name}}}}},
      {"spec", {{"nodeName", kNode}, {"serviceAccountName", name + "-sa"}}},
      {"status", {{"phase", "Pending"}}}};
}

class KubeAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NODEMESH_REQUIRE_ROOT_OR_SKIP();
    ASSERT_TRUE(std::filesystem::exists(std::string(kCniBinDir) + "/bridge"))
        << "containernetworking-plugins is not installed";
    cluster_ = std::make_unique<SimCluster>();
    cluster_->addNode(kNode);
    node_netns_ = cluster_->nodeNetnsPath(kNode);
    const int k = g_counter++;
    tag_ = fmt::format("nmk8s{}x{}", ::getpid(), k);
    const int third = 200 + (::getpid() + k) % 50;
    subnet_ = fmt::format("10.199.{}.0/24", third);
    gateway_ = fmt::format("10.199.{}.1", third);
    api_ = startStandinIn(node_netns_);
    config_ = cluster_->writeFile("mesh.yaml", "workloads: []\nservices: []\npolicies: []\n");
    socket_ = cluster_->workDir() + "/run/cni.sock";
    state_file_ = cluster_->workDir() + "/run/cni-state.json";
    std::filesystem::create_directories(cluster_->workDir() + "/ipam");
    // Something for pods to connect to: an echo server on the node's side of the bridge.
    cluster_->startInNode(kNode, {testappPath(), "serve", "--port", kServerPort, "--bind",
                                  "0.0.0.0", "--parallel", "8", "--count", "0"});
  }

  void TearDown() override {
    if (cluster_ && ::testing::Test::HasFailure() && agent_) {
      std::cerr << "--- agent output ---\n" << agent_->output() << "\n";
    }
    for (const auto& pod : pods_) {
      (void)runLocal({"ip", "netns", "del", pod});
    }
    api_.reset();
    cluster_.reset();
  }

  Process& startAgent(std::vector<std::string> env = {}) {
    ProcessSpec spec;
    spec.env = std::move(env);
    spec.netns_path = node_netns_;
    spec.cgroup_path = cluster_->nodeCgroupPath(kNode);
    spec.argv = {agentPath(),
                 "--config",
                 config_,
                 "--node",
                 kNode,
                 "--cgroup",
                 spec.cgroup_path,
                 "--bpffs",
                 cluster_->bpffsDir() + "/agent",
                 "--state-dir",
                 cluster_->workDir() + "/ca",
                 "--netns-prefix",
                 tag_ + "p",  // newPodNetns()
                 "--scan-interval-ms",
                 "100",
                 "--access-log-flush-ms",
                 "0",
                 "--kubernetes",
                 "--kube-api-server",
                 api_->url(),
                 "--kube-ca-file",
                 api_->caFile(),
                 "--kube-token-file",
                 api_->tokenFile(),
                 "--cni-socket",
                 socket_,
                 "--cni-state-file",
                 state_file_};
    spec.argv.insert(spec.argv.end(), extra_flags_.begin(), extra_flags_.end());
    spec.stdout_path = fmt::format("{}/agent-{}.log", cluster_->workDir(), ++agent_runs_);
    spec.stderr_path = spec.stdout_path;
    agent_ = &cluster_->startProcess(spec);
    if (!agent_->waitForOutput("nodemesh-agent running", std::chrono::seconds(20))) {
      throw HarnessError("agent did not start: " + agent_->output());
    }
    return *agent_;
  }

  void stopAgent() {
    ASSERT_TRUE(agent_->signal(SIGTERM));
    auto code = agent_->waitExit(std::chrono::seconds(20));
    ASSERT_TRUE(code.has_value()) << "agent did not stop";
    EXPECT_EQ(*code, 0) << agent_->output();
  }

  // A pod's netns, set up through the chain as a runtime would. Returns the chain's outcome.
  struct Added {
    bool ok = false;
    int exit_code = 0;
    std::string out;
    std::string err;
  };

  std::string newPodNetns() {
    std::string name = fmt::format("{}p{}", tag_, g_counter++);
    auto r = runLocal({"ip", "netns", "add", name});
    if (!r.ok()) throw HarnessError(r.describe());
    pods_.push_back(name);
    (void)runInNetns("/var/run/netns/" + name, {"ip", "link", "set", "lo", "up"});
    return "/var/run/netns/" + name;
  }

  json conflist() const {
    return json{{"cniVersion", "1.0.0"},
                {"name", tag_},
                {"plugins",
                 {{{"type", "bridge"},
                   {"bridge", "nmk8sbr"},
                   {"isGateway", true},
                   {"ipMasq", false},
                   {"ipam",
                    {{"type", "host-local"},
                     {"dataDir", cluster_->workDir() + "/ipam"},
                     {"ranges", {{{{"subnet", subnet_}}}}}}}},
                  {{"type", "nodemesh-cni"},
                   {"agentSocket", socket_},
                   {"stateFile", state_file_},
                   {"timeoutMs", 5000}}}}};
  }

  // CNI ADD through the whole chain; `ip` receives the pod's address on success.
  Added cniAdd(const std::string& pod_netns, const std::string& ns, const std::string& name,
               const std::string& uid, std::string* ip) {
    Added added;
    json list = list_override_.is_null() ? conflist() : list_override_;
    json prev = nullptr;
    for (const json& plugin : list["plugins"]) {
      json conf = plugin;
      conf["cniVersion"] = list["cniVersion"];
      conf["name"] = list["name"];
      if (!prev.is_null()) conf["prevResult"] = prev;
      CommandSpec spec;
      spec.netns_path = node_netns_;
      const std::string type = plugin["type"];
      spec.argv = {type == "nodemesh-cni" ? plugin_dir_ + "/nodemesh-cni"
                                          : std::string(kCniBinDir) + "/" + type};
      spec.env = {"CNI_COMMAND=ADD",
                  "CNI_CONTAINERID=ctr-" + name,
                  "CNI_NETNS=" + pod_netns,
                  "CNI_IFNAME=eth0",
                  fmt::format("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};"
                              "K8S_POD_UID={}",
                              ns, name, uid),
                  fmt::format("CNI_PATH={}:{}", kCniBinDir, plugin_dir_)};
      spec.stdin_data = conf.dump();
      spec.timeout = std::chrono::seconds(20);
      CommandResult r = runCommand(spec);
      added.exit_code = r.exit_code;
      added.out = r.out;
      added.err = r.err;
      if (!r.ok()) return added;
      prev = json::parse(r.out, nullptr, false);
      if (prev.is_discarded()) return added;
    }
    added.ok = true;
    std::string cidr = prev["ips"][0]["address"];
    *ip = cidr.substr(0, cidr.find('/'));
    return added;
  }

  // One connection from the pod (its netns, the node's cgroup) to the echo server.
  CommandResult connectFrom(const std::string& pod_netns) {
    CommandSpec spec;
    spec.netns_path = pod_netns;
    spec.cgroup_path = cluster_->nodeCgroupPath(kNode);
    spec.argv = {testappPath(), "connect", "--to",     gateway_ + ":" + kServerPort,
                 "--send",      "1000",    "--expect", "1000"};
    return runCommand(spec);
  }

  // The access log line of a connection from the pod "namespace/name" (the agent logs only
  // captured ones).
  bool captured(const std::string& pod, milliseconds timeout = milliseconds(2000),
                size_t from = 0) {
    return waitFor(
        [&] { return agent_->output().find(" pod=" + pod + " ", from) != std::string::npos; },
        timeout);
  }

  // A pod of an ambient namespace through the chain, then Running with its address (what the
  // kubelet writes after the ADD), and enrolled (annotated). Returns its netns path, or ""
  // after a failure (reported).
  std::string runningAmbientPod(const std::string& ns, const std::string& name,
                                const std::string& uid) {
    std::string ip;
    std::string pod = newPodNetns();
    const Added added = cniAdd(pod, ns, name, uid, &ip);
    if (!added.ok) {
      ADD_FAILURE() << "CNI ADD " << ns << "/" << name << ": " << added.exit_code << " "
                    << added.out << added.err;
      return "";
    }
    json object = *api_->get(Kind::kPods, ns, name);
    object["status"] = {{"phase", "Running"}, {"podIPs", {{{"ip", ip}}}}};
    api_->upsert(Kind::kPods, object);
    if (!waitFor([&] { return annotated(ns, name); }, milliseconds(3000))) {
      ADD_FAILURE() << ns << "/" << name << " was not enrolled";
      return "";
    }
    return pod;
  }

  bool annotated(const std::string& ns, const std::string& name) {
    auto pod = api_->get(Kind::kPods, ns, name);
    return pod && (*pod)["metadata"]
                          .value("annotations", json::object())
                          .value("ambient.istio.io/redirection", "") == "enabled";
  }

  // Labels take effect "within a second" (issue 16): measured from the API change, printed.
  static void expectWithinASecond(const char* what, const std::function<bool()>& done) {
    const long long ms = msUntil(done, milliseconds(5000));
    std::cerr << what << ": " << ms << " ms\n";
    EXPECT_GE(ms, 0) << what;
    EXPECT_LT(ms, 1000) << what;
  }

  // Milliseconds until `predicate` holds (or -1 after `timeout`).
  static long long msUntil(const std::function<bool()>& predicate, milliseconds timeout) {
    const auto start = std::chrono::steady_clock::now();
    if (!waitFor(predicate, timeout, milliseconds(10))) return -1;
    return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start)
        .count();
  }

  std::unique_ptr<SimCluster> cluster_;
  std::unique_ptr<StandinApiServer> api_;
  std::string node_netns_;
  std::string tag_;
  std::string subnet_;
  std::string gateway_;
  std::string config_;
  std::string socket_;
  std::string state_file_;
  std::vector<std::string> pods_;
  Process* agent_ = nullptr;
  int agent_runs_ = 0;
  // cniAdd() runs this conflist (null: conflist()) with nodemesh-cni from this directory.
  json list_override_ = nullptr;
  std::vector<std::string> extra_flags_;  // added to the agent's flags
  std::string plugin_dir_ = NODEMESH_BIN_DIR;
};

// Must show 1: a pod of an ambient namespace is enrolled before its ADD returns, so its first
// connection is captured; a pod of an unlabelled namespace is untouched.
TEST_F(KubeAgentTest, AddEnrollsAmbientPodsBeforeReturningAndLeavesOthersAlone) {
  api_->upsert(Kind::kNamespaces, namespaceObject("shop", true));
  api_->upsert(Kind::kNamespaces, namespaceObject("plain", false));
  api_->upsert(Kind::kPods, podObject("shop", "cart", "uid-cart"));
  api_->upsert(Kind::kPods, podObject("plain", "legacy", "uid-legacy"));
  startAgent();
  ASSERT_TRUE(agent_->waitForOutput("pods of node n1 listed", std::chrono::seconds(10)));

  std::string cart_ip;
  const std::string cart = newPodNetns();
  Added added = cniAdd(cart, "shop", "cart", "uid-cart", &cart_ip);
  ASSERT_TRUE(added.ok) << added.exit_code << " " << added.out << added.err;
  // At once, no waiting for a scan: the first connection is already captured.
  CommandResult first = connectFrom(cart);
  ASSERT_TRUE(first.ok()) << first.describe();
  EXPECT_TRUE(captured("shop/cart")) << agent_->output();
  EXPECT_NE(agent_->output().find("enrolled pod shop/cart"), std::string::npos);
  EXPECT_TRUE(waitFor([&] { return annotated("shop", "cart"); }, milliseconds(3000)));
  // The workload the agent made of the pod: the pod's service account is its identity.
  EXPECT_NE(agent_->output().find("CNI ADD shop/cart: enrolled"), std::string::npos);

  std::string legacy_ip;
  const std::string legacy = newPodNetns();
  added = cniAdd(legacy, "plain", "legacy", "uid-legacy", &legacy_ip);
  ASSERT_TRUE(added.ok) << added.exit_code << " " << added.out << added.err;
  CommandResult plain = connectFrom(legacy);
  ASSERT_TRUE(plain.ok()) << plain.describe()
                          << runInNetns(legacy, {"ip", "-br", "addr"}).describe()
                          << runInNetns(legacy, {"ip", "route"}).describe()
                          << runInNetns(node_netns_, {"ss", "-ltn"}).describe();
  EXPECT_FALSE(captured("plain/legacy", milliseconds(1000))) << agent_->output();
  EXPECT_FALSE(annotated("plain", "legacy"));
}

// A hostNetwork pod of an ambient namespace is not enrolled: it shares the node's namespace
// (capturing it would capture the node), so the agent makes no mesh workload of it. Pods that
// call it reach it as a destination outside the mesh, in plain TCP; were it taken for a mesh
// workload at the node's address, they would be sent over HBONE to the node's 15008, where no
// pod listens, and fail.
TEST_F(KubeAgentTest, HostNetworkPodsAreNotEnrolledAndAreReachedInPlainTcp) {
  api_->upsert(Kind::kNamespaces, namespaceObject("shop", true));
  json host = podObject("shop", "node-exporter", "uid-host");
  host["spec"]["hostNetwork"] = true;
  // A host-network pod's address is its node's: here the node's side of the pods' bridge,
  // where the echo server (a host-network process) listens.
  host["status"] = {{"phase", "Running"}, {"podIP", gateway_}, {"podIPs", {{{"ip", gateway_}}}}};
  api_->upsert(Kind::kPods, host);
  api_->upsert(Kind::kPods, podObject("shop", "cart", "uid-cart"));
  startAgent();
  ASSERT_TRUE(agent_->waitForOutput("pods of node n1 listed", std::chrono::seconds(10)));

  std::string cart_ip;
  const std::string cart = newPodNetns();
  Added added = cniAdd(cart, "shop", "cart", "uid-cart", &cart_ip);
  ASSERT_TRUE(added.ok) << added.exit_code << " " << added.out << added.err;
  CommandResult r = connectFrom(cart);
  ASSERT_TRUE(r.ok()) << r.describe();
  // Captured (cart is enrolled), and sent on as plain TCP to the node's address.
  ASSERT_TRUE(captured("shop/cart")) << agent_->output();
  const std::string out = agent_->output();
  const auto at = out.find(" pod=shop/cart ");
  const std::string line = out.substr(at, out.find('\n', at) - at);
  EXPECT_NE(line.find("dst=" + gateway_ + ":" + kServerPort), std::string::npos) << line;
  EXPECT_NE(line.find("result=ok transport=tcp"), std::string::npos) << line;
  EXPECT_EQ(out.find("shop/node-exporter"), std::string::npos) << out;
  EXPECT_FALSE(annotated("shop", "node-exporter"));
  // The CLI's view of the agent's workloads holds cart and no workload at the node's address.
  auto workloads = runInNetns(node_netns_, {binDir() + "/nodemeshctl", "workloads", "-o", "json"});
  ASSERT_TRUE(workloads.ok()) << workloads.describe();
  EXPECT_NE(workloads.out.find("\"cart\""), std::string::npos) << workloads.out;
  EXPECT_EQ(workloads.out.find("node-exporter"), std::string::npos) << workloads.out;
}

// The readiness probe fails until the node's pods are listed (here: the API refuses the agent's
// token at first, as with a token that was not projected yet) and enrolled.
TEST_F(KubeAgentTest, NotReadyUntilThePodsAreListedAndEnrolled) {
  api_->upsert(Kind::kNamespaces, namespaceObject("shop", true));
  api_->setAcceptedToken("not-yet");
  startAgent();
  auto ready = [&] {
    CommandResult r =
        runInNetns(node_netns_, {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                 "http://127.0.0.1:15021/healthz/ready"});
    return r.out;
  };
  ASSERT_TRUE(agent_->waitForOutput("401", std::chrono::seconds(10))) << agent_->output();
  EXPECT_EQ(ready(), "503");
  EXPECT_TRUE(agent_->isRunning());
  api_->setAcceptedToken("test-token");
  EXPECT_TRUE(waitFor([&] { return ready() == "200"; }, milliseconds(10000))) << agent_->output();
}

// Must show 2: labels enroll and unenroll running pods within a second; the annotation follows.
TEST_F(KubeAgentTest, LabelsEnrollAndUnenrollRunningPods) {
  api_->upsert(Kind::kNamespaces, namespaceObject("plain", false));
  api_->upsert(Kind::kPods, podObject("plain", "web", "uid-web"));
  api_->upsert(Kind::kPods, podObject("plain", "db", "uid-db"));
  startAgent();
  ASSERT_TRUE(agent_->waitForOutput("pods of node n1 listed", std::chrono::seconds(10)));
  std::string web_ip;
  std::string db_ip;
  const std::string web = newPodNetns();
  const std::string db = newPodNetns();
  ASSERT_TRUE(cniAdd(web, "plain", "web", "uid-web", &web_ip).ok);
  ASSERT_TRUE(cniAdd(db, "plain", "db", "uid-db", &db_ip).ok);
  // The kubelet writes the addresses to the pods' status after the ADD.
  for (const auto& [name, ip] : {std::pair{"web", web_ip}, std::pair{"db", db_ip}}) {
    json pod = *api_->get(Kind::kPods, "plain", name);
    pod["status"] = {{"phase", "Running"}, {"podIP", ip}, {"podIPs", {{{"ip", ip}}}}};
    api_->upsert(Kind::kPods, pod);
  }
  ASSERT_TRUE(connectFrom(web).ok());
  EXPECT_FALSE(captured("plain/web", milliseconds(500)));

  // The namespace opts in: both running pods are enrolled and annotated.
  api_->upsert(Kind::kNamespaces, namespaceObject("plain", true));
  expectWithinASecond("namespace label -> both pods enrolled", [&] {
    return agent_->output().find("enrolled pod plain/web") != std::string::npos &&
           agent_->output().find("enrolled pod plain/db") != std::string::npos;
  });
  expectWithinASecond("namespace label -> both pods annotated",
                      [&] { return annotated("plain", "web") && annotated("plain", "db"); });
  ASSERT_TRUE(connectFrom(web).ok());
  EXPECT_TRUE(captured("plain/web"));

  // A broken watch stream (garbage, then a pod without its resourceVersion, then a dropped
  // connection) neither crashes the agent nor unenrolls the pods still meant to be enrolled.
  api_->injectWatchLine("{not json");
  api_->injectWatchLine(
      R"({"type":"MODIFIED","object":{"metadata":{"name":"web","namespace":"plain"}}})");
  auto watches_made = [&] {
    size_t n = 0;
    for (const auto& r : api_->requests()) n += r.params.count("watch") > 0 ? 1 : 0;
    return n;
  };
  const size_t before_drop = watches_made();
  api_->dropWatches();
  // Both informers watch again (after their back-off) before the next label change is timed.
  ASSERT_TRUE(waitFor([&] { return watches_made() >= before_drop + 2; }, milliseconds(10000)));
  ASSERT_TRUE(api_->waitForWatches(2, milliseconds(5000)));
  EXPECT_TRUE(agent_->isRunning());
  EXPECT_EQ(agent_->output().find("unenrolled pod plain/web"), std::string::npos);
  EXPECT_TRUE(annotated("plain", "web"));

  // One pod opts out with its own label: it alone leaves the mesh, and loses the annotation.
  json db_pod = *api_->get(Kind::kPods, "plain", "db");
  db_pod["metadata"]["labels"]["istio.io/dataplane-mode"] = "none";
  api_->upsert(Kind::kPods, db_pod);
  expectWithinASecond("pod label none -> unenrolled and annotation removed", [&] {
    return agent_->output().find("unenrolled pod plain/db") != std::string::npos &&
           !annotated("plain", "db");
  });
  EXPECT_TRUE(annotated("plain", "web"));
  ASSERT_TRUE(connectFrom(db).ok());
  EXPECT_FALSE(captured("plain/db", milliseconds(500)));

  // The namespace opts out again: web leaves too.
  api_->upsert(Kind::kNamespaces, namespaceObject("plain", false));
  expectWithinASecond("namespace unlabelled -> unenrolled and annotation removed", [&] {
    return agent_->output().find("unenrolled pod plain/web") != std::string::npos &&
           !annotated("plain", "web");
  });

  // A pod label alone opts a pod of an unlabelled namespace in.
  db_pod = *api_->get(Kind::kPods, "plain", "db");
  db_pod["metadata"]["labels"]["istio.io/dataplane-mode"] = "ambient";
  api_->upsert(Kind::kPods, db_pod);
  expectWithinASecond("pod label ambient -> enrolled and annotated",
                      [&] { return annotated("plain", "db"); });
  const std::string before = agent_->output();
  ASSERT_TRUE(connectFrom(db).ok());
  EXPECT_TRUE(captured("plain/db", milliseconds(2000), before.size()));
}

// Must show 3: while the agent is down, the plugin refuses pods that must be in the mesh (from
// the state file the agent wrote) and lets the others start; a restarted agent enrolls the
// running pods again.
TEST_F(KubeAgentTest, AgentDownRefusesAmbientPodsAndARestartedAgentReenrolls) {
  api_->upsert(Kind::kNamespaces, namespaceObject("shop", true));
  api_->upsert(Kind::kNamespaces, namespaceObject("plain", false));
  api_->upsert(Kind::kPods, podObject("shop", "cart", "uid-cart"));
  startAgent();
  ASSERT_TRUE(agent_->waitForOutput("pods of node n1 listed", std::chrono::seconds(10)));
  std::string cart_ip;
  const std::string cart = newPodNetns();
  ASSERT_TRUE(cniAdd(cart, "shop", "cart", "uid-cart", &cart_ip).ok);
  json cart_pod = *api_->get(Kind::kPods, "shop", "cart");
  cart_pod["status"] = {{"phase", "Running"}, {"podIPs", {{{"ip", cart_ip}}}}};
  api_->upsert(Kind::kPods, cart_pod);
  ASSERT_TRUE(waitFor([&] { return std::filesystem::exists(state_file_); }, milliseconds(3000)));
  auto state = cni::readCniState(state_file_);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->ambient_namespaces, std::vector<std::string>{"shop"});

  stopAgent();

  // An ambient pod: refused with "try again later" (11), the bridge's setup is not kept.
  api_->upsert(Kind::kPods, podObject("shop", "late", "uid-late"));
  std::string ip;
  Added refused = cniAdd(newPodNetns(), "shop", "late", "uid-late", &ip);
  EXPECT_FALSE(refused.ok);
  EXPECT_NE(refused.out.find("\"code\":11"), std::string::npos) << refused.out << refused.err;
  // A pod outside the mesh starts normally.
  api_->upsert(Kind::kPods, podObject("plain", "other", "uid-other"));
  EXPECT_TRUE(cniAdd(newPodNetns(), "plain", "other", "uid-other", &ip).ok);

  // The restarted agent finds the running pod from the API and its netns, and captures again.
  startAgent();
  EXPECT_TRUE(agent_->waitForOutput("enrolled pod shop/cart", std::chrono::seconds(10)))
      << agent_->output();
  ASSERT_TRUE(connectFrom(cart).ok());
  EXPECT_TRUE(captured("shop/cart"));
  EXPECT_TRUE(annotated("shop", "cart"));

  // A crashed agent leaves its programs pinned: the pod's connections fail rather than leave
  // the mesh, and the next agent picks the pinned state up and captures them again.
  agent_->kill();
  CommandResult while_down = connectFrom(cart);
  EXPECT_FALSE(while_down.ok()) << while_down.describe();
  startAgent();
  EXPECT_NE(agent_->output().find("maps reused"), std::string::npos) << agent_->output();
  ASSERT_TRUE(agent_->waitForOutput("enrolled pod shop/cart", std::chrono::seconds(10)));
  CommandResult after = connectFrom(cart);
  ASSERT_TRUE(after.ok()) << after.describe();
  EXPECT_TRUE(captured("shop/cart"));
}

// A DaemonSet's rolling update stops the agent while its DaemonSet stays: the pods stay captured
// (their connections fail until the next agent is up, which reuses the pins). Once the
// DaemonSet is gone (helm uninstall), the stopping agent removes the capture and the
// annotations.
TEST_F(KubeAgentTest, UpgradeKeepsTheCaptureAndUninstallRemovesIt) {
  api_->upsert(Kind::kNamespaces, namespaceObject("shop", true));
  api_->upsert(Kind::kNamespaces, namespaceObject("istio-system", false));
  api_->upsert(Kind::kPods, podObject("shop", "cart", "uid-cart"));
  api_->upsert(Kind::kDaemonSets,
               {{"metadata", {{"name", "nodemesh"}, {"namespace", "istio-system"}}}});
  json self = podObject("istio-system", "nodemesh-x7k2p", "uid-agent");
  self["metadata"]["ownerReferences"] = {{{"apiVersion", "apps/v1"},
                                          {"kind", "DaemonSet"},
                                          {"name", "nodemesh"},
                                          {"uid", "uid-ds"},
                                          {"controller", true}}};
  self["spec"]["hostNetwork"] = true;
  api_->upsert(Kind::kPods, self);
  const std::vector<std::string> env = {"POD_NAMESPACE=istio-system", "POD_NAME=nodemesh-x7k2p"};
  // The node's primary CNI config; the agent installs the plugin into it, as in the chart.
  const std::string conf_dir = cluster_->workDir() + "/net.d";
  plugin_dir_ = cluster_->workDir() + "/cni-bin";
  std::filesystem::create_directories(conf_dir);
  json primary = conflist();
  primary["plugins"].erase(1);  // bridge + host-local only
  const std::string primary_text = primary.dump(2) + "\n";
  const std::string primary_path = conf_dir + "/10-bridge.conflist";
  {
    std::ofstream out(primary_path);
    out << primary_text;
  }
  extra_flags_ = {"--cni-conf-dir", conf_dir, "--cni-bin-dir", plugin_dir_};
  startAgent(env);
  ASSERT_TRUE(waitFor(
      [&] {
        return readFile(primary_path).find("nodemesh-cni") != std::string::npos &&
               std::filesystem::exists(plugin_dir_ + "/nodemesh-cni");
      },
      milliseconds(5000)))
      << readFile(primary_path);
  list_override_ = json::parse(readFile(primary_path));
  ASSERT_TRUE(agent_->waitForOutput("pods of node n1 listed", std::chrono::seconds(10)));
  const std::string cart = runningAmbientPod("shop", "cart", "uid-cart");
  ASSERT_FALSE(cart.empty());

  // The upgrade: stopped while the DaemonSet exists.
  stopAgent();
  EXPECT_NE(agent_->output().find("capture left in place"), std::string::npos) << agent_->output();
  CommandResult while_down = connectFrom(cart);
  EXPECT_FALSE(while_down.ok()) << "a pod's connection left the mesh: " << while_down.describe();
  EXPECT_TRUE(annotated("shop", "cart"));
  startAgent(env);
  EXPECT_NE(agent_->output().find("maps reused"), std::string::npos) << agent_->output();
  ASSERT_TRUE(agent_->waitForOutput("enrolled pod shop/cart", std::chrono::seconds(10)));
  ASSERT_TRUE(connectFrom(cart).ok());
  EXPECT_TRUE(captured("shop/cart"));

  // The upgrade left the plugin in place.
  EXPECT_NE(readFile(primary_path).find("nodemesh-cni"), std::string::npos);

  // The uninstall: the DaemonSet is deleted, then its pods are stopped.
  api_->remove(Kind::kDaemonSets, "istio-system", "nodemesh");
  stopAgent();
  EXPECT_NE(agent_->output().find("nothing left pinned"), std::string::npos) << agent_->output();
  // The node's CNI config is back byte for byte, the plugin and the state file are gone.
  EXPECT_EQ(readFile(primary_path), primary_text);
  EXPECT_FALSE(std::filesystem::exists(plugin_dir_ + "/nodemesh-cni"));
  EXPECT_FALSE(std::filesystem::exists(state_file_));
  EXPECT_FALSE(annotated("shop", "cart"));
  CommandResult after = connectFrom(cart);
  EXPECT_TRUE(after.ok()) << after.describe();
}

// The chart's upgrade (maxSurge 1): the new agent's pod starts beside the old one and takes its
// sockets (--handoff-socket); the DaemonSet deletes the old pod once the new one is ready, a
// few seconds into the old agent's drain. That SIGTERM does not cut the drain: a transfer the old
// agent relays finishes. An old agent that has nothing left to drain waits for its SIGTERM
// rather than exit (the kubelet would start it again, and it would take the sockets back).
TEST_F(KubeAgentTest, SurgeUpgradeDrainsBeyondTheOldPodsDeletion) {
  api_->upsert(Kind::kNamespaces, namespaceObject("shop", true));
  api_->upsert(Kind::kPods, podObject("shop", "cart", "uid-cart"));
  api_->upsert(Kind::kDaemonSets,
               {{"metadata", {{"name", "nodemesh"}, {"namespace", "istio-system"}}}});
  const std::string handoff = cluster_->workDir() + "/run/agent.handoff";
  extra_flags_ = {"--handoff-socket", handoff, "--drain-timeout-s", "20"};
  Process& old_agent = startAgent({"POD_NAMESPACE=istio-system", "POD_NAME=nodemesh-old"});
  ASSERT_TRUE(old_agent.waitForOutput("pods of node n1 listed", std::chrono::seconds(10)));
  const std::string cart = runningAmbientPod("shop", "cart", "uid-cart");
  ASSERT_FALSE(cart.empty());
  ASSERT_TRUE(connectFrom(cart).ok());

  // 1.5 MiB each way at 256 KiB/s: about 6 s, relayed by the old agent.
  CommandResult transfer;
  std::thread long_one([&] {
    CommandSpec spec;
    spec.netns_path = cart;
    spec.cgroup_path = cluster_->nodeCgroupPath(kNode);
    spec.argv = {testappPath(), "connect", "--to",     gateway_ + ":" + kServerPort,
                 "--send",      "1536K",   "--expect", "1536K",
                 "--rate",      "256K"};
    spec.timeout = std::chrono::seconds(60);
    transfer = runCommand(spec);
  });
  std::this_thread::sleep_for(milliseconds(1000));  // the transfer is under way

  Process& new_agent = startAgent({"POD_NAMESPACE=istio-system", "POD_NAME=nodemesh-new"});
  ASSERT_TRUE(old_agent.waitForOutput("draining 1 open connection", std::chrono::seconds(10)))
      << old_agent.output();
  ASSERT_TRUE(
      new_agent.waitForOutput("took over from the previous agent", std::chrono::seconds(10)));
  // The DaemonSet deletes the old pod: the transfer is still going.
  ASSERT_TRUE(old_agent.signal(SIGTERM));
  ASSERT_TRUE(old_agent.waitForOutput("the drain goes on", std::chrono::seconds(5)))
      << old_agent.output();
  long_one.join();
  EXPECT_TRUE(transfer.ok()) << transfer.describe() << old_agent.output();
  auto code = old_agent.waitExit(std::chrono::seconds(10));
  ASSERT_TRUE(code.has_value()) << old_agent.output();
  EXPECT_EQ(*code, 0);
  EXPECT_NE(old_agent.output().find("drained: every connection ended"), std::string::npos)
      << old_agent.output();
  // New connections went to the new agent all along.
  const size_t from = new_agent.output().size();
  ASSERT_TRUE(connectFrom(cart).ok());
  EXPECT_TRUE(captured("shop/cart", milliseconds(2000), from));

  // The next upgrade, with nothing open: the drain ends at once and the old agent stays until
  // its pod is deleted.
  Process& next_agent = startAgent({"POD_NAMESPACE=istio-system", "POD_NAME=nodemesh-next"});
  ASSERT_TRUE(new_agent.waitForOutput("waiting for this pod's deletion", std::chrono::seconds(10)))
      << new_agent.output();
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_TRUE(new_agent.isRunning());
  ASSERT_TRUE(new_agent.signal(SIGTERM));
  code = new_agent.waitExit(std::chrono::seconds(5));
  ASSERT_TRUE(code.has_value()) << new_agent.output();
  EXPECT_EQ(*code, 0);
  ASSERT_TRUE(connectFrom(cart).ok());
  EXPECT_TRUE(captured("shop/cart", milliseconds(2000)));
  EXPECT_TRUE(next_agent.isRunning());
}

}  // namespace
}  // namespace nodemesh::sim
