// Self-test of the end-to-end harness: nm-testapp's transfers and checks, the simulated
// cluster's wiring, and that nothing survives a cluster (also when the test body throws or a
// previous run was killed).

#include <linux/bpf.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/cgroup.h"
#include "common/fd.h"
#include "sim/process.h"
#include "sim/sim_cluster.h"
#include "sim/testapp_client.h"
#include "tests/e2e/privileged_gate.h"
#include "tests/e2e/testapp/stream.h"

namespace nodemesh::sim {
namespace {

using std::chrono::seconds;
namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1024 * 1024;

// A process is gone when it no longer exists or is a zombie nobody reaped yet.
bool processGone(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

std::vector<pid_t> cgroupPids(const std::string& cgroup) {
  std::vector<pid_t> pids;
  std::ifstream in(cgroup + "/cgroup.procs");
  pid_t pid;
  while (in >> pid) pids.push_back(pid);
  return pids;
}

// Lines of `ip -o link` in the test's (root) netns that mention prefix: a veth whose peer is
// in one of the cluster's namespaces shows as "link-netns <prefix>-...". The cluster creates
// nothing there, so this stays empty. (Comparing whole link lists would race with anything
// else running on the machine.)
std::string rootLinksMentioning(const std::string& prefix) {
  CommandResult r = runLocal({"ip", "-o", "link", "show"});
  std::string hits;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(prefix) != std::string::npos) hits += line + "\n";
  }
  return hits;
}

// A port on 127.0.0.1 that nothing listens on (bound, then released).
uint16_t unusedLoopbackPort() {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
    // Port 0 would make the caller's connect fail for the wrong reason.
    throw HarnessError(std::string("bind 127.0.0.1:0: ") + std::strerror(errno));
  }
  return ntohs(sin.sin_port);
}

// Pins a tiny BPF array map at path (what the agent's pins look like to the cleanup).
bool pinMap(const std::string& path) {
  union bpf_attr create {};
  create.map_type = BPF_MAP_TYPE_ARRAY;
  create.key_size = 4;
  create.value_size = 8;
  create.max_entries = 1;
  UniqueFd map(static_cast<int>(::syscall(SYS_bpf, BPF_MAP_CREATE, &create, sizeof(create))));
  if (!map.valid()) return false;
  union bpf_attr pin {};
  pin.pathname = reinterpret_cast<uint64_t>(path.c_str());
  pin.bpf_fd = static_cast<uint32_t>(map.get());
  return ::syscall(SYS_bpf, BPF_OBJ_PIN, &pin, sizeof(pin)) == 0;
}

std::string uniqueTempPath(const std::string& stem) {
  static int n = 0;
  return ::testing::TempDir() + "/nm-harness-" + std::to_string(::getpid()) + "-" +
         std::to_string(n++) + "-" + stem;
}

// ---- nm-testapp, on loopback in the test's own netns: no privileges needed ----------------

class TestappTest : public ::testing::Test {
 protected:
  void TearDown() override {
    server_.reset();
    for (const auto& p : files_) ::unlink(p.c_str());
  }

  Process& startServer(const std::vector<std::string>& extra) {
    ProcessSpec spec;
    spec.argv = {testappPath(), "serve", "--bind", "127.0.0.1", "--port", "0"};
    spec.argv.insert(spec.argv.end(), extra.begin(), extra.end());
    spec.stdout_path = uniqueTempPath("serve.out");
    spec.stderr_path = uniqueTempPath("serve.err");
    files_.push_back(spec.stdout_path);
    files_.push_back(spec.stderr_path);
    server_ = Process::spawn(spec);
    return *server_;
  }

  std::unique_ptr<Process> server_;
  std::vector<std::string> files_;
};

TEST_F(TestappTest, LoopbackTransferOf64MiBBothWaysIsVerified) {
  Process& server = startServer({});
  auto port = waitForListening(server);
  ASSERT_TRUE(port.has_value()) << server.errorOutput();

  std::string to = "127.0.0.1:" + std::to_string(*port);
  CommandResult r = runLocal(
      {testappPath(), "connect", "--to", to, "--send", "64M", "--expect", "48M", "--seed", "77"},
      seconds(60));
  ASSERT_TRUE(r.ok()) << r.describe();
  auto done = findEvent(r.out, "done");
  ASSERT_TRUE(done.has_value()) << r.out;
  EXPECT_TRUE((*done)["ok"].get<bool>());
  EXPECT_EQ((*done)["sent"].get<uint64_t>(), 64 * kMiB);
  EXPECT_EQ((*done)["received"].get<uint64_t>(), 48 * kMiB);
  EXPECT_EQ((*done)["peer"].get<std::string>(), to);

  ASSERT_EQ(server.waitExit(seconds(10)), 0) << server.output() << server.errorOutput();
  auto conn = findEvent(server.output(), "conn");
  ASSERT_TRUE(conn.has_value()) << server.output();
  EXPECT_TRUE((*conn)["received_ok"].get<bool>());
  EXPECT_EQ((*conn)["received"].get<uint64_t>(), 64 * kMiB);
  EXPECT_EQ((*conn)["sent"].get<uint64_t>(), 48 * kMiB);
  EXPECT_EQ((*conn)["peer"].get<std::string>(), (*done)["local"].get<std::string>());
  EXPECT_EQ((*conn)["local"].get<std::string>(), to);
}

TEST_F(TestappTest, ServerDetectsACorruptedByte) {
  Process& server = startServer({});
  auto port = waitForListening(server);
  ASSERT_TRUE(port.has_value()) << server.errorOutput();

  UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(*port);
  ASSERT_EQ(::connect(sock.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  testapp::StreamHeader header{9, 1000, 0};
  std::vector<uint8_t> payload(1000);
  testapp::PrngStream(9).fill(payload.data(), payload.size());
  payload[500] ^= 0x01;
  auto raw = header.encode();
  ASSERT_EQ(::send(sock.get(), raw.data(), raw.size(), MSG_NOSIGNAL), 16);
  ASSERT_EQ(::send(sock.get(), payload.data(), payload.size(), MSG_NOSIGNAL), 1000);
  ::shutdown(sock.get(), SHUT_WR);
  char c;
  EXPECT_EQ(::recv(sock.get(), &c, 1, 0), 0);  // server_bytes = 0: just the FIN

  EXPECT_EQ(server.waitExit(seconds(10)), 1);
  auto conn = findEvent(server.output(), "conn");
  ASSERT_TRUE(conn.has_value()) << server.output();
  EXPECT_FALSE((*conn)["received_ok"].get<bool>());
  EXPECT_EQ((*conn)["error"].get<std::string>(), "data mismatch at byte 500");
}

TEST_F(TestappTest, ConnectReportsFailureWithoutListener) {
  CommandResult r = runLocal({testappPath(), "connect", "--to",
                              "127.0.0.1:" + std::to_string(unusedLoopbackPort()), "--send", "1K",
                              "--expect", "1K", "--timeout-ms", "2000"});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  auto done = findEvent(r.out, "done");
  ASSERT_TRUE(done.has_value()) << r.out;
  EXPECT_FALSE((*done)["ok"].get<bool>());
  EXPECT_NE((*done)["error"].get<std::string>().find("refused"), std::string::npos);
}

TEST_F(TestappTest, ConnectManyAgainstMultiConnectionServer) {
  Process& server = startServer({"--count", "20"});
  auto port = waitForListening(server);
  ASSERT_TRUE(port.has_value()) << server.errorOutput();
  CommandResult r =
      runLocal({testappPath(), "connect-many", "--to", "127.0.0.1:" + std::to_string(*port),
                "--count", "20", "--send", "4K", "--expect", "1K"});
  ASSERT_TRUE(r.ok()) << r.describe();
  auto many = findEvent(r.out, "many");
  ASSERT_TRUE(many.has_value()) << r.out;
  EXPECT_EQ((*many)["ok_count"].get<int>(), 20);
  EXPECT_EQ(server.waitExit(seconds(10)), 0);
  EXPECT_EQ(findEvents(server.output(), "conn").size(), 20u);
}

// ---- The simulated cluster (root) ---------------------------------------------------------

class SimClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { NODEMESH_REQUIRE_ROOT_OR_SKIP(); }

  // Two nodes, pod a on node1, pod b on node2.
  static void buildTwoNodes(SimCluster& cluster) {
    cluster.addNode("node1");
    cluster.addNode("node2");
    cluster.addPod("node1", "a", "10.244.1.10");
    cluster.addPod("node2", "b", "10.244.2.20");
  }
};

TEST_F(SimClusterTest, CrossNodePodsTransferBothWaysAndServerSeesPodIp) {
  SimCluster cluster;
  buildTwoNodes(cluster);
  EXPECT_EQ(cluster.node("node1").underlay_ip, "192.168.250.1");
  EXPECT_EQ(cluster.node("node2").pod_cidr, "10.244.2.0/24");

  Process& server = cluster.startInPod("b", {testappPath(), "serve", "--port", "0"});
  auto port = waitForListening(server);
  ASSERT_TRUE(port.has_value()) << server.errorOutput();

  std::string to = "10.244.2.20:" + std::to_string(*port);
  CommandResult r = cluster.runInPod(
      "a", {testappPath(), "connect", "--to", to, "--send", "6M", "--expect", "5M"}, seconds(60));
  ASSERT_TRUE(r.ok()) << r.describe();
  auto done = findEvent(r.out, "done");
  ASSERT_TRUE(done.has_value()) << r.out;
  EXPECT_TRUE((*done)["ok"].get<bool>());
  EXPECT_EQ((*done)["peer"].get<std::string>(), to);
  EXPECT_EQ(hostOf((*done)["local"].get<std::string>()), "10.244.1.10");

  ASSERT_EQ(server.waitExit(seconds(10)), 0) << server.output() << server.errorOutput();
  auto conn = findEvent(server.output(), "conn");
  ASSERT_TRUE(conn.has_value()) << server.output();
  EXPECT_TRUE((*conn)["received_ok"].get<bool>());
  EXPECT_EQ((*conn)["received"].get<uint64_t>(), 6 * kMiB);
  EXPECT_EQ((*conn)["sent"].get<uint64_t>(), 5 * kMiB);
  EXPECT_EQ(hostOf((*conn)["peer"].get<std::string>()), "10.244.1.10");
  EXPECT_EQ((*conn)["local"].get<std::string>(), to);
}

TEST_F(SimClusterTest, ProcessesRunInTheirNetnsAndNodeCgroup) {
  SimCluster cluster;
  buildTwoNodes(cluster);
  Process& app = cluster.startInPod("a", {"sleep", "60"});
  Process& agent = cluster.startInNode("node1", {"sleep", "60"});

  auto inode = [](const std::string& path) {
    struct stat st {};
    ::stat(path.c_str(), &st);
    return st.st_ino;
  };
  EXPECT_EQ(inode("/proc/" + std::to_string(app.pid()) + "/ns/net"),
            inode(cluster.podNetnsPath("a")));
  EXPECT_EQ(inode("/proc/" + std::to_string(agent.pid()) + "/ns/net"),
            inode(cluster.nodeNetnsPath("node1")));
  auto root = findCgroup2Root();
  ASSERT_TRUE(root.ok());
  std::string relative = cluster.nodeCgroupPath("node1").substr(root->size());
  for (pid_t pid : {app.pid(), agent.pid()}) {
    EXPECT_NE(readFile("/proc/" + std::to_string(pid) + "/cgroup").find("0::" + relative + "\n"),
              std::string::npos);
  }

  // Pods: lo up, eth0 with the pod IP, default route via the node's gateway.
  CommandResult addr = cluster.runInPod("a", {"ip", "-o", "-4", "addr", "show"});
  ASSERT_TRUE(addr.ok()) << addr.describe();
  EXPECT_NE(addr.out.find("eth0    inet 10.244.1.10/24"), std::string::npos) << addr.out;
  EXPECT_NE(addr.out.find("lo    inet 127.0.0.1/8"), std::string::npos) << addr.out;
  CommandResult route = cluster.runInPod("a", {"ip", "route", "show", "default"});
  EXPECT_NE(route.out.find("default via 10.244.1.1 dev eth0"), std::string::npos) << route.out;

  // Signals and exit codes.
  EXPECT_TRUE(app.isRunning());
  EXPECT_TRUE(app.signal(SIGTERM));
  EXPECT_EQ(app.waitExit(seconds(5)), 128 + SIGTERM);
  EXPECT_FALSE(app.isRunning());
  EXPECT_FALSE(agent.waitExit(std::chrono::milliseconds(50)).has_value());
}

TEST_F(SimClusterTest, SameNodePodsAndManyConnections) {
  SimCluster cluster;
  cluster.addNode("node1", "192.168.250.11/24", "10.244.7.0/24");
  cluster.addPod("node1", "a", "10.244.7.10");
  cluster.addPod("node1", "c", "10.244.7.30");
  Process& server =
      cluster.startInPod("c", {testappPath(), "serve", "--port", "8080", "--count", "0"});
  ASSERT_EQ(waitForListening(server), 8080) << server.errorOutput();
  CommandResult r = cluster.runInPod(
      "a", {testappPath(), "connect-many", "--to", "10.244.7.30:8080", "--count", "25"});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(
      waitFor([&] { return findEvents(server.output(), "conn").size() == 25; }, seconds(5)));
  for (const auto& conn : findEvents(server.output(), "conn")) {
    EXPECT_EQ(hostOf(conn["peer"].get<std::string>()), "10.244.7.10");
    EXPECT_TRUE(conn["received_ok"].get<bool>());
  }
}

TEST_F(SimClusterTest, RemovePodDeletesNetnsAndKillsItsProcesses) {
  SimCluster cluster;
  buildTwoNodes(cluster);
  Process& app = cluster.startInPod("b", {"sleep", "60"});
  std::string netns = cluster.podNetnsPath("b");
  ASSERT_TRUE(fs::exists(netns));

  cluster.removePod("b");
  EXPECT_FALSE(fs::exists(netns));
  EXPECT_FALSE(cluster.hasPod("b"));
  EXPECT_FALSE(app.isRunning());
  // The node-side veth went with the pod: only cni0's own ports remain on node2.
  CommandResult links = cluster.runInNode("node2", {"ip", "-o", "link", "show", "master", "cni0"});
  EXPECT_EQ(links.out, "") << links.out;
  // The pod's address can be used again.
  cluster.addPod("node2", "b2", "10.244.2.20");
}

void expectNothingLeft(const std::string& prefix, const std::vector<pid_t>& pids) {
  EXPECT_EQ(SimCluster::findLeftovers(prefix), std::vector<std::string>{});
  CommandResult netns = runLocal({"ip", "netns", "list"});
  EXPECT_EQ(netns.out.find(prefix), std::string::npos) << netns.out;
  for (pid_t pid : pids) EXPECT_TRUE(processGone(pid)) << "pid " << pid << " survived";
  EXPECT_EQ(rootLinksMentioning(prefix), "");
}

TEST_F(SimClusterTest, TeardownLeavesNothingBehind) {
  std::string prefix;
  std::vector<pid_t> pids;
  {
    SimCluster cluster;
    prefix = cluster.prefix();
    buildTwoNodes(cluster);
    cluster.startInPod("a", {testappPath(), "serve", "--port", "9000"});
    // A process that leaves children behind: only the cgroup knows them.
    cluster.startInNode("node2", {"sh", "-c", "sleep 600 & sleep 600 & wait"});
    std::string extra = cluster.createCgroup("agent/extra");
    ASSERT_TRUE(fs::is_directory(extra));
    ASSERT_TRUE(waitFor([&] { return cgroupPids(cluster.nodeCgroupPath("node2")).size() == 3; },
                        seconds(5)));
    for (const auto& n : {"node1", "node2"}) {
      auto p = cgroupPids(cluster.nodeCgroupPath(n));
      pids.insert(pids.end(), p.begin(), p.end());
    }
    std::string pins = cluster.bpffsDir();
    ASSERT_EQ(::mkdir((pins + "/maps").c_str(), 0700), 0);
    ASSERT_TRUE(pinMap(pins + "/maps/state")) << std::strerror(errno);
    ASSERT_TRUE(pinMap(pins + "/top")) << std::strerror(errno);
    EXPECT_FALSE(SimCluster::findLeftovers(prefix).empty());
    EXPECT_EQ(rootLinksMentioning(prefix), "");
  }
  ASSERT_EQ(pids.size(), 4u);
  expectNothingLeft(prefix, pids);
}

TEST_F(SimClusterTest, CleansUpWhenTheTestBodyThrows) {
  std::string prefix;
  std::vector<pid_t> pids;
  try {
    SimCluster cluster;
    prefix = cluster.prefix();
    buildTwoNodes(cluster);
    pids.push_back(cluster.startInPod("b", {"sleep", "600"}).pid());
    cluster.bpffsDir();
    throw std::runtime_error("test body failed");
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "test body failed");
  }
  expectNothingLeft(prefix, pids);

  // A setup error inside the harness (a pod IP outside the node's CIDR) also cleans up.
  try {
    SimCluster cluster;
    prefix = cluster.prefix();
    cluster.addNode("node1");
    cluster.addPod("node1", "a", "10.9.9.9");
    ADD_FAILURE() << "addPod accepted an IP outside the pod CIDR";
  } catch (const HarnessError& e) {
    EXPECT_NE(std::string(e.what()).find("not in node1's CIDR"), std::string::npos) << e.what();
  }
  expectNothingLeft(prefix, {});
}

TEST_F(SimClusterTest, SweepsLeftoversOfDeadRuns) {
  // A pid that is certainly dead: a child we reaped.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  int status;
  ::waitpid(dead, &status, 0);
  std::string prefix = "nmt" + std::to_string(dead) + "x7";

  auto root = findCgroup2Root();
  ASSERT_TRUE(root.ok());
  std::string cgroup = *root + "/" + prefix + "/node1";
  std::filesystem::create_directories(cgroup);
  // A survivor of the "dead run", still running in its cgroup.
  ProcessSpec spec;
  spec.cgroup_path = cgroup;
  spec.argv = {"sleep", "600"};
  spec.stdout_path = "/dev/null";
  auto survivor = Process::spawn(spec);
  ASSERT_TRUE(runLocal({"ip", "netns", "add", prefix + "-n-node1"}).ok());
  ASSERT_EQ(ensureBpffsMounted().ok(), true);
  ASSERT_EQ(::mkdir(("/sys/fs/bpf/" + prefix).c_str(), 0700), 0);
  ASSERT_TRUE(pinMap("/sys/fs/bpf/" + prefix + "/map"));
  std::filesystem::create_directories(fs::temp_directory_path() / prefix);
  ASSERT_EQ(SimCluster::findLeftovers(prefix).size(), 4u);

  SimCluster::sweepStale();
  EXPECT_EQ(SimCluster::findLeftovers(prefix), std::vector<std::string>{});
  EXPECT_EQ(survivor->waitExit(seconds(5)), 128 + SIGKILL);

  // Objects of live runs (this process) are left alone.
  SimCluster live;
  SimCluster::sweepStale();
  EXPECT_FALSE(SimCluster::findLeftovers(live.prefix()).empty());
}

}  // namespace
}  // namespace nodemesh::sim
