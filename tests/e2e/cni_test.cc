// nodemesh-cni driven the way container runtimes drive CNI plugins, against a CniServer that
// records what the agent would be told.
//
// Every test builds a "node" network namespace (nmcni<pid>n<k>) and pod namespaces
// (nmcni<pid>p<k>) of its own; the chain runs inside the node namespace, so the bridge the
// `bridge` plugin creates never lands in the host's namespace. Addresses come from
// 10.199.0.0/16 only. Everything is removed in TearDown, also when a test fails.
//
// - The chain executor does what libcni does for a conflist: ADD runs the plugins in order, each
//   with the list's cniVersion and name and the previous plugin's result as prevResult; DEL runs
//   them in reverse with the cached ADD result. Plugins come from Debian's
//   containernetworking-plugins (/usr/lib/cni) and our build directory (CNI_PATH).
// - PodmanRunsAContainerThroughTheChain starts a real container with podman's CNI backend.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cni/cni_server.h"
#include "cni/state_file.h"
#include "sim/process.h"
#include "tests/e2e/privileged_gate.h"
#include "tests/support/temp_dir.h"

namespace nodemesh::cni {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kDebianCniDir = "/usr/lib/cni";

std::atomic<int> g_counter{0};

struct PluginRun {
  std::string type;
  sim::CommandResult result;
};

// The outcome of a whole chain: ok when every plugin exited 0.
// bugprone-exception-escape: nlohmann::json's noexcept move calls assert_invariant(), which
// clang-tidy 14 cannot prove does not throw.
struct ChainRun {  // NOLINT(bugprone-exception-escape)
  bool ok = false;
  std::vector<PluginRun> runs;  // in execution order, up to the failing one
  json result;                  // ADD: the last plugin's result
  std::string describe() const {
    std::string s;
    for (const auto& r : runs) {
      s += fmt::format("{}: exit {} out={} err={}\n", r.type, r.result.exit_code, r.result.out,
                       r.result.err);
    }
    return s;
  }
};

class CniE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NODEMESH_REQUIRE_ROOT_OR_SKIP();
    ASSERT_FALSE(dir_.path().empty());
    ASSERT_TRUE(fs::exists(fmt::format("{}/bridge", kDebianCniDir)))
        << "containernetworking-plugins is not installed";
    plugin_ = fmt::format("{}/nodemesh-cni", NODEMESH_BIN_DIR);
    ASSERT_TRUE(fs::exists(plugin_)) << plugin_ << " not built";
    const int k = g_counter++;
    tag_ = fmt::format("nmcni{}", ::getpid());
    node_ = fmt::format("{}n{}", tag_, k);
    subnet_ = fmt::format("10.199.{}.0/24", 100 + (::getpid() + k) % 100);
    addNetns(node_);
    ASSERT_TRUE(sim::runInNetns(netnsPath(node_), {"ip", "link", "set", "lo", "up"}).ok());
    socket_ = dir_.path() + "/run/cni.sock";
    state_file_ = dir_.path() + "/run/cni-state.json";
    fs::create_directories(dir_.path() + "/ipam");
  }

  void TearDown() override {
    server_.reset();
    for (auto it = netns_.rbegin(); it != netns_.rend(); ++it) {
      auto r = sim::runLocal({"ip", "netns", "del", *it});
      if (!r.ok()) ADD_FAILURE() << "cleanup: " << r.describe();
    }
  }

  static std::string netnsPath(const std::string& name) { return "/var/run/netns/" + name; }

  void addNetns(const std::string& name) {
    auto r = sim::runLocal({"ip", "netns", "add", name});
    ASSERT_TRUE(r.ok()) << r.describe();
    netns_.push_back(name);
  }

  std::string newPod() {
    std::string name = fmt::format("{}p{}", tag_, g_counter++);
    addNetns(name);
    return name;
  }

  void startServer() {
    auto s = CniServer::start(CniServerOptions{socket_, 2000}, [this](const CniRequest& r) {
      std::lock_guard lock(mu_);
      seen_.push_back(r);
      return CniReply::success(r.pod_namespace == "shop", "recorded");
    });
    ASSERT_TRUE(s.ok()) << s.error().message;
    server_ = std::move(*s);
  }

  std::vector<CniRequest> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

  // bridge + host-local, then ours.
  json conflist(const std::string& name) const {
    return json{{"cniVersion", "1.0.0"},
                {"name", name},
                {"plugins",
                 {{{"type", "bridge"},
                   {"bridge", tag_ + "br"},
                   {"isGateway", true},
                   {"ipMasq", false},
                   {"ipam",
                    {{"type", "host-local"},
                     {"dataDir", dir_.path() + "/ipam"},
                     {"ranges", {{{{"subnet", subnet_}}}}}}}},
                  {{"type", "nodemesh-cni"},
                   {"agentSocket", socket_},
                   {"stateFile", state_file_},
                   {"timeoutMs", 2000}}}}};
  }

  // libcni's FindInPath over CNI_PATH.
  std::string pluginPath(const std::string& type) const {
    for (const std::string& d : {std::string(kDebianCniDir), std::string(NODEMESH_BIN_DIR)}) {
      if (::access((d + "/" + type).c_str(), X_OK) == 0) return d + "/" + type;
    }
    return type;
  }

  ChainRun runChain(const json& list, const std::string& command, const std::string& container,
                    const std::string& pod_netns, const std::string& cni_args,
                    const json& cached = nullptr) {
    ChainRun chain;
    std::vector<json> plugins(list["plugins"].begin(), list["plugins"].end());
    if (command == "DEL") std::reverse(plugins.begin(), plugins.end());
    json prev = command == "DEL" ? cached : json(nullptr);
    for (const json& plugin : plugins) {
      json conf = plugin;
      conf["cniVersion"] = list["cniVersion"];
      conf["name"] = list["name"];
      if (!prev.is_null()) conf["prevResult"] = prev;
      sim::CommandSpec spec;
      spec.netns_path = netnsPath(node_);
      spec.argv = {pluginPath(plugin["type"])};
      spec.env = {"CNI_COMMAND=" + command,
                  "CNI_CONTAINERID=" + container,
                  "CNI_NETNS=" + (pod_netns.empty() ? "" : netnsPath(pod_netns)),
                  "CNI_IFNAME=eth0",
                  "CNI_ARGS=" + cni_args,
                  fmt::format("CNI_PATH={}:{}", kDebianCniDir, NODEMESH_BIN_DIR)};
      spec.stdin_data = conf.dump();
      spec.timeout = std::chrono::seconds(20);
      chain.runs.push_back(PluginRun{plugin["type"], sim::runCommand(spec)});
      const sim::CommandResult& r = chain.runs.back().result;
      if (!r.ok()) return chain;
      if (command == "ADD") {
        prev = json::parse(r.out, nullptr, false);
        if (prev.is_discarded()) return chain;
      }
    }
    chain.ok = true;
    chain.result = prev;
    return chain;
  }

  testing::TempDir dir_;
  std::string plugin_;
  std::string tag_;
  std::string node_;
  std::string subnet_;
  std::string socket_;
  std::string state_file_;
  std::vector<std::string> netns_;
  std::mutex mu_;
  std::vector<CniRequest> seen_;
  std::unique_ptr<CniServer> server_;
};

constexpr const char* kShopArgs =
    "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-1;"
    "K8S_POD_INFRA_CONTAINER_ID=ctr-a;K8S_POD_UID=7d1c2b3a-uid";

TEST_F(CniE2eTest, AddTellsTheAgentAndPassesTheBridgeResultThrough) {
  startServer();
  const std::string pod = newPod();
  const json list = conflist(tag_);
  ChainRun add = runChain(list, "ADD", "ctr-a", pod, kShopArgs);
  ASSERT_TRUE(add.ok) << add.describe();
  ASSERT_EQ(add.runs.size(), 2u);

  // What host-local assigned (through the bridge's result), and that it is on the pod's eth0.
  const json bridge_result = json::parse(add.runs[0].result.out);
  const std::string assigned = bridge_result["ips"][0]["address"];
  auto addr = sim::runInNetns(netnsPath(pod), {"ip", "-o", "addr", "show", "dev", "eth0"});
  ASSERT_TRUE(addr.ok()) << addr.describe();
  EXPECT_NE(addr.out.find(assigned), std::string::npos) << addr.out;

  // The chain's final result is the bridge's.
  EXPECT_EQ(add.result, bridge_result);

  const auto requests = seen();
  ASSERT_EQ(requests.size(), 1u);
  const CniRequest& r = requests[0];
  EXPECT_EQ(r.command, CniCommand::kAdd);
  EXPECT_EQ(r.container_id, "ctr-a");
  EXPECT_EQ(r.netns, netnsPath(pod));
  EXPECT_EQ(r.if_name, "eth0");
  EXPECT_EQ(r.pod_namespace, "shop");
  EXPECT_EQ(r.pod_name, "cart-1");
  EXPECT_EQ(r.pod_uid, "7d1c2b3a-uid");
  EXPECT_EQ(r.ips, std::vector<std::string>{assigned});

  // DEL, twice (runtimes retry it): both succeed, the agent hears of both.
  for (int i = 0; i < 2; ++i) {
    ChainRun del = runChain(list, "DEL", "ctr-a", pod, kShopArgs, add.result);
    EXPECT_TRUE(del.ok) << "DEL #" << i << ": " << del.describe();
  }
  const auto after = seen();
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[1].command, CniCommand::kDel);
  EXPECT_EQ(after[2].command, CniCommand::kDel);
  EXPECT_EQ(after[1].container_id, "ctr-a");
}

TEST_F(CniE2eTest, AddWithoutKubernetesArgsWorks) {
  startServer();
  const std::string pod = newPod();
  ChainRun add = runChain(conflist(tag_), "ADD", "ctr-b", pod, "");
  ASSERT_TRUE(add.ok) << add.describe();
  const auto requests = seen();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_TRUE(requests[0].pod_namespace.empty());
  EXPECT_EQ(requests[0].netns, netnsPath(pod));
  EXPECT_TRUE(runChain(conflist(tag_), "DEL", "ctr-b", pod, "", add.result).ok);
}

TEST_F(CniE2eTest, AgentDownFailsAmbientPodsWithTryAgainLaterOnly) {
  // No server on socket_: the agent is down. Its last state says "shop" is ambient.
  ASSERT_TRUE(writeCniState(state_file_, CniState{{"shop"}, {}, {}}).ok());
  const json list = conflist(tag_);
  const std::string pod = newPod();

  ChainRun add = runChain(list, "ADD", "ctr-c", pod, kShopArgs);
  ASSERT_FALSE(add.ok) << add.describe();
  ASSERT_EQ(add.runs.size(), 2u) << add.describe();  // the bridge succeeded, ours failed
  EXPECT_EQ(add.runs[1].type, "nodemesh-cni");
  const json err = json::parse(add.runs[1].result.out, nullptr, false);
  ASSERT_TRUE(err.is_object()) << add.runs[1].result.out;
  EXPECT_EQ(err["code"], 11);
  EXPECT_EQ(err["cniVersion"], "1.0.0");
  // The runtime cleans up a failed ADD with DEL, which must succeed with the agent down.
  for (int i = 0; i < 2; ++i) {
    ChainRun del = runChain(list, "DEL", "ctr-c", pod, kShopArgs, nullptr);
    EXPECT_TRUE(del.ok) << del.describe();
  }

  // A pod of a namespace that is not ambient starts.
  const std::string other_args =
      "IgnoreUnknown=1;K8S_POD_NAMESPACE=tools;K8S_POD_NAME=box;K8S_POD_UID=u2";
  ChainRun other = runChain(list, "ADD", "ctr-d", pod, other_args);
  ASSERT_TRUE(other.ok) << other.describe();
  EXPECT_EQ(other.result, json::parse(other.runs[0].result.out));
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(runChain(list, "DEL", "ctr-d", pod, other_args, other.result).ok);
  }

  // The agent comes back: the shop pod starts.
  startServer();
  ChainRun retry = runChain(list, "ADD", "ctr-c", pod, kShopArgs);
  ASSERT_TRUE(retry.ok) << retry.describe();
  EXPECT_EQ(seen().size(), 1u);
  EXPECT_TRUE(runChain(list, "DEL", "ctr-c", pod, kShopArgs, retry.result).ok);
}

// Removes the cgroup `relative` (and what is under it, deepest first) from every hierarchy of
// /sys/fs/cgroup (cgroup v1 controllers, the named systemd one and the unified cgroup2 mount
// of this machine's hybrid layout, or a plain cgroup2 mount).
void removeCgroupTree(const std::string& relative) {
  std::vector<fs::path> roots = {"/sys/fs/cgroup"};
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/sys/fs/cgroup", ec)) roots.push_back(e.path());
  for (const fs::path& root : roots) {
    const fs::path top = root / relative;
    if (!fs::is_directory(top, ec)) continue;
    std::vector<fs::path> dirs;
    for (auto it = fs::recursive_directory_iterator(top, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec)) dirs.push_back(it->path());
    }
    std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
      return a.string().size() > b.string().size();
    });
    dirs.push_back(top);
    for (const fs::path& d : dirs) ::rmdir(d.c_str());  // cgroups go with rmdir, not unlink
  }
}

TEST_F(CniE2eTest, PodmanRunsAContainerThroughTheChain) {
  std::vector<std::string> missing;
  for (const char* tool : {"podman", "runc"}) {
    if (!sim::findExecutable(tool)) missing.emplace_back(tool);
  }
  if (!fs::exists("/bin/busybox")) missing.emplace_back("busybox-static");
  if (!missing.empty()) {
    const std::string why =
        fmt::format("not installed: {} (scripts/install-deps.sh)", fmt::join(missing, ", "));
    if (sim::privilegedTestsRequired()) GTEST_FAIL() << why;
    GTEST_SKIP() << why;
  }
  startServer();
  const std::string net = tag_ + "net";
  const std::string conf_dir = dir_.path() + "/net.d";
  const std::string rootfs = dir_.path() + "/rootfs";
  fs::create_directories(conf_dir);
  fs::create_directories(rootfs + "/bin");
  fs::copy_file("/bin/busybox", rootfs + "/bin/busybox");
  std::ofstream(conf_dir + "/" + net + ".conflist") << conflist(net).dump(2);
  // Podman finds plugins through containers.conf, not CNI_PATH.
  const std::string containers_conf = dir_.path() + "/containers.conf";
  std::ofstream(containers_conf) << fmt::format("[network]\ncni_plugin_dirs = [\"{}\", \"{}\"]\n",
                                                kDebianCniDir, NODEMESH_BIN_DIR);

  // The container's (and conmon's) cgroups under one of this test's own, never podman's
  // default libpod_parent at the top of the machine's hierarchies; removed afterwards.
  const std::string cgroup_parent = tag_ + "podman";
  struct CgroupCleanup {
    explicit CgroupCleanup(std::string r) : relative(std::move(r)) {}
    ~CgroupCleanup() { removeCgroupTree(relative); }
    CgroupCleanup(const CgroupCleanup&) = delete;
    CgroupCleanup& operator=(const CgroupCleanup&) = delete;
    std::string relative;
  } cgroup_cleanup{cgroup_parent};

  sim::CommandSpec spec;
  spec.netns_path = netnsPath(node_);
  spec.env = {"CONTAINERS_CONF=" + containers_conf};
  spec.argv = {"podman",
               "--root",
               dir_.path() + "/podman-root",
               "--runroot",
               dir_.path() + "/podman-runroot",
               "--tmpdir",
               dir_.path() + "/podman-tmp",
               "--storage-driver",
               "vfs",
               "--cgroup-manager",
               "cgroupfs",
               "--events-backend",
               "file",
               "--runtime",
               "runc",
               "--network-backend",
               "cni",
               "--cni-config-dir",
               conf_dir,
               "run",
               "--rm",
               "--cgroup-parent",
               "/" + cgroup_parent,
               "--ulimit",
               "nofile=1024:1024",
               "--ulimit",
               "nproc=1024:1024",
               "--network",
               net,
               "--rootfs",
               rootfs,
               "/bin/busybox",
               "ip",
               "-o",
               "addr",
               "show",
               "dev",
               "eth0"};
  spec.timeout = std::chrono::seconds(120);
  const sim::CommandResult run = sim::runCommand(spec);
  ASSERT_TRUE(run.ok()) << run.describe() << "\n" << run.out;

  const auto requests = seen();
  ASSERT_EQ(requests.size(), 2u) << "ADD and DEL expected";
  const CniRequest& add = requests[0];
  const CniRequest& del = requests[1];
  EXPECT_EQ(add.command, CniCommand::kAdd);
  EXPECT_FALSE(add.netns.empty());
  ASSERT_EQ(add.ips.size(), 1u);
  // The address the agent was told is the one the container saw on its eth0.
  const std::string ip = add.ips[0].substr(0, add.ips[0].find('/'));
  EXPECT_NE(run.out.find(" " + ip + "/"), std::string::npos) << run.out;
  EXPECT_EQ(ip.rfind("10.199.", 0), 0u);
  EXPECT_EQ(del.command, CniCommand::kDel);
  EXPECT_EQ(del.container_id, add.container_id);
}

std::string slurp(const std::string& path) {
  return sim::readFile(path);
}

// The real binary's installer on a conf dir holding a single-plugin .conf: the chain it builds
// works, and uninstall gives the .conf back byte for byte.
TEST_F(CniE2eTest, InstalledChainWorksAndUninstallRestoresTheConf) {
  startServer();
  const std::string conf_dir = dir_.path() + "/net.d";
  const std::string bin_dir = dir_.path() + "/bin";
  fs::create_directories(conf_dir);
  // The primary CNI's file, formatted its own way.
  json bridge = conflist(tag_)["plugins"][0];
  bridge["cniVersion"] = "0.4.0";
  bridge["name"] = tag_;
  const std::string original = "{ \"cniVersion\": \"0.4.0\",\n  \"name\": \"" + tag_ +
                               "\", \"type\": \"bridge\", \"bridge\": \"" + tag_ +
                               "br\", \"isGateway\": true,\n  \"ipam\": " + bridge["ipam"].dump() +
                               " }\n";
  std::ofstream(conf_dir + "/10-bridge.conf") << original;
  auto install = sim::runLocal({plugin_, "install", "--bin-dir", bin_dir, "--conf-dir", conf_dir,
                                "--agent-socket", socket_, "--state-file", state_file_});
  ASSERT_TRUE(install.ok()) << install.describe();
  EXPECT_EQ(slurp(bin_dir + "/nodemesh-cni"), slurp(plugin_));
  EXPECT_FALSE(fs::exists(conf_dir + "/10-bridge.conf"));
  const json installed = json::parse(slurp(conf_dir + "/10-bridge.conflist"));
  ASSERT_EQ(installed["plugins"].size(), 2u) << installed.dump();
  EXPECT_EQ(installed["plugins"][1]["type"], "nodemesh-cni");

  // The installed conflist, as a runtime would use it.
  const std::string pod = newPod();
  ChainRun add = runChain(installed, "ADD", "ctr-i", pod, kShopArgs);
  ASSERT_TRUE(add.ok) << add.describe();
  EXPECT_EQ(seen().size(), 1u);
  EXPECT_TRUE(runChain(installed, "DEL", "ctr-i", pod, kShopArgs, add.result).ok);

  auto uninstall =
      sim::runLocal({plugin_, "uninstall", "--bin-dir", bin_dir, "--conf-dir", conf_dir});
  ASSERT_TRUE(uninstall.ok()) << uninstall.describe();
  EXPECT_EQ(slurp(conf_dir + "/10-bridge.conf"), original);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(conf_dir)) left.push_back(e.path().filename());
  EXPECT_EQ(left, std::vector<std::string>{"10-bridge.conf"});
  EXPECT_FALSE(fs::exists(bin_dir + "/nodemesh-cni"));
}

TEST_F(CniE2eTest, WatchReinsertsAfterThePrimaryRewritesAndUninstallsOnSigterm) {
  const std::string conf_dir = dir_.path() + "/net.d";
  const std::string bin_dir = dir_.path() + "/bin";
  fs::create_directories(conf_dir);
  const std::string primary = conf_dir + "/10-calico.conflist";
  const std::string v1 =
      "{\"name\":\"k8s\",\"cniVersion\":\"0.3.1\",\"plugins\":[{\"type\":\"calico\"}]}\n";
  const std::string v2 =
      "{\"name\":\"k8s\",\"cniVersion\":\"1.0.0\",\"plugins\":[{\"type\":\"calico\",\"mtu\":1400}]"
      "}";
  std::ofstream(primary) << v1;
  sim::ProcessSpec spec;
  spec.argv = {plugin_, "install", "--watch", "--bin-dir", bin_dir, "--conf-dir", conf_dir};
  spec.stdout_path = dir_.path() + "/installer.log";
  auto installer = sim::Process::spawn(spec);
  auto ours_in_primary = [&] {
    const json j = json::parse(slurp(primary), nullptr, false);
    if (!j.is_object() || !j.contains("plugins")) return false;
    int n = 0;
    for (const auto& p : j["plugins"]) n += p.value("type", "") == "nodemesh-cni" ? 1 : 0;
    return n == 1;
  };
  ASSERT_TRUE(sim::waitFor(ours_in_primary, std::chrono::seconds(10))) << installer->output();
  // The primary CNI writes its config again (temp + rename), without us.
  std::ofstream(conf_dir + "/.calico-tmp") << v2;
  fs::rename(conf_dir + "/.calico-tmp", primary);
  ASSERT_TRUE(sim::waitFor(ours_in_primary, std::chrono::seconds(10)))
      << slurp(primary) << installer->output();
  EXPECT_EQ(json::parse(slurp(primary))["plugins"][0]["mtu"], 1400);
  ASSERT_TRUE(installer->signal(SIGTERM));
  EXPECT_EQ(installer->waitExit(std::chrono::seconds(10)), std::optional<int>(0))
      << installer->output();
  EXPECT_EQ(slurp(primary), v2);  // the primary's latest version, byte for byte
  EXPECT_FALSE(fs::exists(bin_dir + "/nodemesh-cni"));
}

}  // namespace
}  // namespace nodemesh::cni
