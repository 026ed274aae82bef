// End-to-end tests of node debugging (issue 5) on the simulated two-node cluster
// (tests/e2e/mesh_fixture.h): a real Prometheus server scraping the agent's Istio metrics,
// `nodemeshctl explain` on the example mesh, live connections, `doctor`, the admin API bound to
// loopback only, readiness, /quitquitquit, and the access log.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <httplib.h>

#include <cstring>

#include "tests/e2e/mesh_fixture.h"

namespace nodemesh::sim {
namespace {

constexpr const char* kFrontend = "10.244.1.10";
constexpr const char* kCartV1 = "10.244.2.20";
constexpr const char* kCartV2 = "10.244.1.21";
constexpr const char* kNode1Ip = "192.168.250.1";
constexpr uint16_t kAdminPort = 15000;
constexpr uint16_t kMetricsPort = 15020;
constexpr uint16_t kReadinessPort = 15021;

std::string ctlPath() {
  return binDir() + "/nodemeshctl";
}

struct HttpResult {
  int status = -1;
  std::string body;
  std::string error;
};

// An HTTP request made from inside a network namespace (the client's socket is created there).
HttpResult httpInNetns(const std::string& netns, const std::string& method, const std::string& host,
                       uint16_t port, const std::string& path, const httplib::Params& params = {}) {
  HttpResult out;
  auto fd = openNetns(netns);
  if (!fd) {
    out.error = fd.error().message;
    return out;
  }
  auto scope = ScopedNetns::enter(fd->get());
  if (!scope) {
    out.error = scope.error().message;
    return out;
  }
  httplib::Client client(host, port);
  client.set_connection_timeout(std::chrono::seconds(3));
  client.set_read_timeout(std::chrono::seconds(10));
  auto res = method == "GET" ? client.Get(path, params, httplib::Headers{})
                             : client.Post(httplib::append_query_params(path, params));
  if (!res) {
    out.error = httplib::to_string(res.error());
    return out;
  }
  out.status = res->status;
  out.body = res->body;
  return out;
}

// connect() from inside a netns: 0 when it connected, else the errno.
int connectErrno(const std::string& netns, const std::string& ip, uint16_t port) {
  auto fd = openNetns(netns);
  if (!fd) return EBADF;
  auto scope = ScopedNetns::enter(fd->get());
  if (!scope) return EBADF;
  UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &sa.sin_addr);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) return 0;
  return errno;
}

// On examples/two-nodes.yaml as it is (its policies: only frontend -> cart:8080 is allowed,
// port 9999 is denied namespace-wide), so that verdicts are the example mesh's.
class DebugTest : public MeshTest {
 protected:
  void SetUp() override {
    MeshTest::SetUp();
    if (IsSkipped() || !cluster_) return;
    config_path_ = cluster_->writeFile("example.yaml", exampleConfig());
  }

  // nodemeshctl in node's network namespace, with the node agent's pins.
  CommandResult ctl(const std::string& node, std::vector<std::string> args) {
    std::vector<std::string> argv = {ctlPath()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--bpffs", bpffs(node), "--width", "120"});
    return cluster_->runInNetns(cluster_->nodeNetnsPath(node), argv, seconds(30));
  }

  nlohmann::json ctlJson(const std::string& node, std::vector<std::string> args,
                         int expect_exit = 0) {
    args.insert(args.end(), {"-o", "json"});
    auto r = ctl(node, args);
    EXPECT_EQ(r.exit_code, expect_exit) << r.describe() << "\n" << r.out;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j.is_discarded() ? nlohmann::json() : j;
  }

  nlohmann::json explain(const std::string& src, const std::string& dst, int expect_exit) {
    return ctlJson("node1", {"explain", src, dst}, expect_exit);
  }

  static size_t longestLine(const std::string& text) {
    size_t longest = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      size_t n = 0;  // display columns: UTF-8 continuation bytes do not count
      for (unsigned char c : line) n += (c & 0xC0) == 0x80 ? 0 : 1;
      longest = std::max(longest, n);
    }
    return longest;
  }
};

// ---- must-show 1: a real Prometheus scrapes the agent --------------------------------------

TEST_F(DebugTest, PrometheusQueryReturnsTheTestsConnectionsWithIstioLabels) {
  startAgents();
  Process& server = serve("cart-v1", 8080, 3);
  for (int i = 0; i < 3; ++i) {
    auto done = connect("frontend", std::string(kCartV1) + ":8080", 100000, 200000);
    ASSERT_EQ(done.value("received", uint64_t{0}), 200000u) << done.dump();
  }
  (void)server;
  ASSERT_TRUE(waitFor([&] { return countOf(agent1_->output(), "access direction=outbound") >= 3; },
                      seconds(10)))
      << agent1_->output();

  // Prometheus in node1's netns, scraping the agent on loopback every second, its data in the
  // cluster's work directory.
  const std::string dir = cluster_->workDir() + "/prometheus";
  fs::create_directories(dir + "/data");
  const std::string config = dir + "/prometheus.yml";
  std::ofstream(config)
      << ("global:\n"
          "  scrape_interval: 1s\n"
          "  evaluation_interval: 1s\n"
          "scrape_configs:\n"
          "- job_name: nodemesh\n"
          "  static_configs:\n"
          "  - targets: ['127.0.0.1:15020']\n");
  constexpr uint16_t kPromPort = 19090;
  ProcessSpec spec;
  spec.netns_path = cluster_->nodeNetnsPath("node1");
  spec.argv = {"/usr/bin/prometheus", "--config.file=" + config,
               "--storage.tsdb.path=" + dir + "/data",
               "--web.listen-address=127.0.0.1:" + std::to_string(kPromPort)};
  spec.stdout_path = dir + "/prometheus.log";
  spec.stderr_path = spec.stdout_path;
  Process& prometheus = cluster_->startProcess(spec);
  ASSERT_TRUE(prometheus.waitForOutput("Server is ready to receive web requests", seconds(30)))
      << prometheus.output();

  const std::string query =
      "istio_tcp_connections_closed_total{reporter=\"source\","
      "source_workload=\"frontend-7d9f\",destination_workload=\"cart-v1-5c2a\"}";
  nlohmann::json result;
  ASSERT_TRUE(waitFor(
      [&] {
        auto r = httpInNetns(cluster_->nodeNetnsPath("node1"), "GET", "127.0.0.1", kPromPort,
                             "/api/v1/query", {{"query", query}});
        if (r.status != 200) return false;
        auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (j.is_discarded() || j.value("status", "") != "success") return false;
        result = j["data"]["result"];
        return result.is_array() && !result.empty();
      },
      seconds(30), milliseconds(500)))
      << prometheus.output();
  ASSERT_EQ(result.size(), 1u) << result.dump(2);
  const auto& metric = result[0]["metric"];
  EXPECT_EQ(metric.value("source_workload_namespace", ""), "shop");
  EXPECT_EQ(metric.value("source_principal", ""), "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_EQ(metric.value("source_canonical_service", ""), "frontend");
  EXPECT_EQ(metric.value("destination_workload_namespace", ""), "shop");
  EXPECT_EQ(metric.value("destination_principal", ""), "spiffe://cluster.local/ns/shop/sa/cart");
  EXPECT_EQ(metric.value("destination_canonical_service", ""), "cart");
  EXPECT_EQ(metric.value("destination_canonical_revision", ""), "v1");
  EXPECT_EQ(metric.value("destination_service", ""), "cart.shop.svc.cluster.local");
  EXPECT_EQ(metric.value("connection_security_policy", ""), "mutual_tls");
  EXPECT_EQ(metric.value("response_flags", ""), "-");
  EXPECT_EQ(metric.value("request_protocol", ""), "tcp");
  EXPECT_EQ(result[0]["value"][1].get<std::string>(), "3") << result.dump(2);

  // The bytes the test sent and received, summed by PromQL.
  auto value = [&](const std::string& promql) {
    auto r = httpInNetns(cluster_->nodeNetnsPath("node1"), "GET", "127.0.0.1", kPromPort,
                         "/api/v1/query", {{"query", promql}});
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || j["data"]["result"].empty()) return std::string("none");
    return j["data"]["result"][0]["value"][1].get<std::string>();
  };
  auto sum = [&](const std::string& name) {
    return value("sum(" + name +
                 "{reporter=\"source\",source_workload=\"frontend-7d9f\","
                 "destination_workload=\"cart-v1-5c2a\"})");
  };
  // nm-testapp sends a 16-byte header before its stream.
  EXPECT_EQ(sum("istio_tcp_received_bytes_total"), std::to_string(3 * (100000 + 16)));
  EXPECT_EQ(sum("istio_tcp_sent_bytes_total"), std::to_string(3 * 200000));
  EXPECT_EQ(sum("istio_tcp_connections_opened_total"), "3");
  // nodemesh's own series are there too.
  EXPECT_EQ(value("nodemesh_enrolled_pods"), "2");  // frontend and cart-v2 on node1
  EXPECT_EQ(value("nodemesh_capture_decisions_total{reason=\"out_captured\"}"), "3");

  // What one scrape costs, measured here for docs/observability.md.
  auto start = std::chrono::steady_clock::now();
  constexpr int kScrapes = 50;
  size_t bytes = 0;
  for (int i = 0; i < kScrapes; ++i) {
    auto r =
        httpInNetns(cluster_->nodeNetnsPath("node1"), "GET", "127.0.0.1", kMetricsPort, "/metrics");
    ASSERT_EQ(r.status, 200);
    bytes = r.body.size();
  }
  auto per_scrape = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - start) /
                    kScrapes;
  std::printf("/metrics: %zu bytes, %lld us per scrape (HTTP round trip included)\n", bytes,
              static_cast<long long>(per_scrape.count()));
}

// ---- must-show 2: explain ---------------------------------------------------------------------

TEST_F(DebugTest, ExplainTellsTheStoryOfAllowedDeniedUncapturedAndPlaintextConnections) {
  startAgents();  // node1 excludes outbound port 9090

  // Allowed: frontend -> cart-v1, HBONE, the ALLOW policy's rule 0 decides.
  auto allowed = explain(kFrontend, std::string(kCartV1) + ":8080", 0);
  EXPECT_EQ(allowed["verdict"], "allow") << allowed.dump(2);
  EXPECT_EQ(allowed["source"]["workload"], "shop/frontend-7d9f");
  EXPECT_EQ(allowed["capture"]["captured"], true);
  EXPECT_EQ(allowed["capture"]["reason"], "out_captured");
  EXPECT_TRUE(allowed["source"].contains("netns")) << allowed.dump(2);
  ASSERT_EQ(allowed["paths"].size(), 1u);
  const auto& a = allowed["paths"][0];
  EXPECT_EQ(a["endpoint"]["workload"], "shop/cart-v1-5c2a");
  EXPECT_EQ(a["transport"], "hbone");
  EXPECT_EQ(a["inbound"]["listener"], 15008);
  EXPECT_EQ(a["inbound"]["reason"], "in_hbone_steered");
  EXPECT_EQ(a["policy"]["enforced"], true);
  EXPECT_EQ(a["policy"]["policy"], "shop/cart-allow-frontend");
  EXPECT_EQ(a["policy"]["rule"], 0);
  EXPECT_EQ(a["policy"]["source_identity"], "spiffe://cluster.local/ns/shop/sa/frontend");

  // Denied: port 9999 is denied namespace-wide by shop/deny-debug-port.
  auto denied = explain(kFrontend, std::string(kCartV1) + ":9999", 1);
  EXPECT_EQ(denied["verdict"], "deny") << denied.dump(2);
  EXPECT_EQ(denied["paths"][0]["policy"]["policy"], "shop/deny-debug-port");
  EXPECT_EQ(denied["paths"][0]["policy"]["rule"], 0);
  EXPECT_EQ(denied["paths"][0]["policy"]["allowed"], false);

  // Uncaptured: node1 excludes outbound port 9090, so frontend's connection leaves in
  // plaintext; cart-v1's inbound capture sees no identity, and its ALLOW policy wants one.
  auto excluded = explain(kFrontend, std::string(kCartV1) + ":9090", 1);
  EXPECT_EQ(excluded["capture"]["captured"], false) << excluded.dump(2);
  EXPECT_EQ(excluded["capture"]["reason"], "out_skip_excluded");
  EXPECT_EQ(excluded["paths"][0]["transport"], "passthrough");
  EXPECT_EQ(excluded["paths"][0]["inbound"]["listener"], 15006);
  EXPECT_EQ(excluded["paths"][0]["policy"]["source_identity"], nullptr);
  EXPECT_EQ(excluded["verdict"], "deny");
  // A pod in no config, to a workload outside the mesh: nobody captures anything.
  auto outsider = explain("10.244.1.40", "10.244.2.30:5432", 0);
  EXPECT_EQ(outsider["source"], nullptr) << outsider.dump(2);
  EXPECT_EQ(outsider["capture"]["reason"], "source_not_in_mesh");
  EXPECT_EQ(outsider["paths"][0]["transport"], "passthrough");
  EXPECT_EQ(outsider["paths"][0]["inbound"]["reason"], "not_in_mesh");
  EXPECT_EQ(outsider["verdict"], "allow");

  // Plaintext: frontend to the legacy (protocol TCP) batch workload: captured, carried as plain
  // TCP, no policy at the destination.
  auto plaintext = explain(kFrontend, "10.244.2.30:5432", 0);
  EXPECT_EQ(plaintext["capture"]["captured"], true) << plaintext.dump(2);
  EXPECT_EQ(plaintext["paths"][0]["endpoint"]["workload"], "legacy/batch-0");
  EXPECT_EQ(plaintext["paths"][0]["endpoint"]["protocol"], "TCP");
  EXPECT_EQ(plaintext["paths"][0]["transport"], "tcp");
  EXPECT_EQ(plaintext["paths"][0]["policy"]["enforced"], false);
  EXPECT_EQ(plaintext["verdict"], "allow");

  // A service VIP: port 80 -> 8080 on both cart endpoints.
  auto service = explain(kFrontend, "10.96.0.20:80", 0);
  EXPECT_EQ(service["service"]["service"], "shop/cart.shop.svc.cluster.local") << service.dump(2);
  EXPECT_EQ(service["service"]["target_port"], 8080);
  ASSERT_EQ(service["paths"].size(), 2u);
  for (const auto& p : service["paths"]) {
    // cart-v1 is on node2: HBONE; cart-v2 is on frontend's node: the same-node fast path.
    EXPECT_EQ(p["transport"], p["endpoint"]["workload"] == "shop/cart-v2-9b1e" ? "local" : "hbone")
        << p.dump(2);
    EXPECT_EQ(p["policy"]["policy"], "shop/cart-allow-frontend");
  }

  // The same story for humans, within 120 columns.
  auto text = ctl("node1", {"explain", kFrontend, std::string(kCartV1) + ":9999"});
  EXPECT_EQ(text.exit_code, 1) << text.describe();
  EXPECT_NE(text.out.find("verdict: deny"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("shop/deny-debug-port"), std::string::npos) << text.out;
  EXPECT_LE(longestLine(text.out), 120u) << text.out;
  // Bad input is a usage error.
  EXPECT_EQ(ctl("node1", {"explain", "10.244.1.10", "nonsense"}).exit_code, 2);

  // And the explained verdict is what the tunnel does (allowed: bytes arrive over HBONE).
  serve("cart-v1", 8080);
  auto done = connect("frontend", std::string(kCartV1) + ":8080", 1000, 1000);
  EXPECT_EQ(done.value("received", uint64_t{0}), 1000u) << done.dump();

  // Within node1, explained as the same-node fast path, and carried that way.
  auto local = explain(kFrontend, std::string(kCartV2) + ":8080", 0);
  EXPECT_EQ(local["paths"][0]["transport"], "local") << local.dump(2);
  EXPECT_EQ(local["paths"][0]["inbound"]["reason"], "same_node");
  EXPECT_EQ(local["paths"][0]["policy"]["source_identity"],
            "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_EQ(local["verdict"], "allow");
  serve("cart-v2", 8080);
  auto done_local = connect("frontend", std::string(kCartV2) + ":8080", 1000, 1000);
  EXPECT_EQ(done_local.value("received", uint64_t{0}), 1000u) << done_local.dump();
  EXPECT_TRUE(agent1_->waitForOutput("direction=inbound pod=shop/cart-v2-9b1e", seconds(5)));
  EXPECT_NE(agent1_->output().find("transport=local"), std::string::npos) << agent1_->output();
}

// ---- must-show 3: connections and doctor ------------------------------------------------------

TEST_F(DebugTest, ConnectionsListALiveStreamWithGrowingByteCounts) {
  startAgents();
  serve("cart-v1", 8080);
  // 6 MiB at 1 MiB/s: open for about six seconds.
  Process& client = cluster_->startInPod(
      "frontend", {testappPath(), "connect", "--to", std::string(kCartV1) + ":8080", "--send", "6M",
                   "--expect", "1K", "--rate", "1M"});
  auto stream = [&]() -> std::optional<nlohmann::json> {
    auto list = ctlJson("node1", {"connections"});
    if (!list.is_array()) return std::nullopt;
    for (const auto& c : list) {
      if (c.value("dst", "") == std::string(kCartV1) + ":8080" &&
          c.value("direction", "") == "outbound") {
        return c;
      }
    }
    return std::nullopt;
  };
  std::optional<nlohmann::json> first;
  ASSERT_TRUE(waitFor(
      [&] {
        first = stream();
        return first && first->value("bytes_to_dst", uint64_t{0}) > 0;
      },
      seconds(10), milliseconds(200)));
  EXPECT_EQ(first->value("pod", ""), "shop/frontend-7d9f") << first->dump();
  EXPECT_EQ(first->value("transport", ""), "hbone");
  EXPECT_EQ(first->value("src_identity", ""), "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_EQ(first->value("dst_identity", ""), "spiffe://cluster.local/ns/shop/sa/cart");
  EXPECT_EQ(first->value("state", ""), "open");
  std::this_thread::sleep_for(milliseconds(1500));
  auto second = stream();
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(second->value("bytes_to_dst", uint64_t{0}),
            first->value("bytes_to_dst", uint64_t{0}) + 512 * 1024)
      << first->dump() << "\n"
      << second->dump();
  EXPECT_GT(second->value("age_ms", uint64_t{0}), first->value("age_ms", uint64_t{0}));
  // The destination's agent lists the same stream inbound.
  auto inbound = ctlJson("node2", {"connections"});
  bool seen = false;
  for (const auto& c : inbound) {
    seen = seen || (c.value("direction", "") == "inbound" &&
                    c.value("src_identity", "") == "spiffe://cluster.local/ns/shop/sa/frontend");
  }
  EXPECT_TRUE(seen) << inbound.dump(2);
  auto table = ctl("node1", {"connections"});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("shop/frontend"), std::string::npos) << table.out;
  EXPECT_LE(longestLine(table.out), 120u) << table.out;

  ASSERT_TRUE(client.waitExit(seconds(30)).has_value());
  EXPECT_EQ(client.exitCode(), 0) << client.output();
  // Finished: no longer listed.
  EXPECT_TRUE(waitFor([&] { return !stream().has_value(); }, seconds(5)));
}

TEST_F(DebugTest, DoctorPassesHereAndFailsClearlyWithoutBpffs) {
  startAgents();
  serve("cart-v1", 8080);
  auto done = connect("frontend", std::string(kCartV1) + ":8080", 100, 100);
  ASSERT_EQ(done.value("received", uint64_t{0}), 100u) << done.dump();
  auto ok = ctl("node1", {"doctor"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("held by nodemesh-agent"), std::string::npos) << ok.out;
  EXPECT_LE(longestLine(ok.out), 120u) << ok.out;
  auto json = ctlJson("node1", {"doctor"});
  ASSERT_TRUE(json.is_array());
  ASSERT_FALSE(json.empty()) << "doctor ran no check";
  for (const auto& c : json) EXPECT_NE(c.value("status", ""), "FAIL") << c.dump();

  // A pin directory where no bpffs is mounted.
  const std::string missing = cluster_->workDir() + "/no-bpffs/nodemesh";
  auto bad = cluster_->runInNetns(cluster_->nodeNetnsPath("node1"),
                                  {ctlPath(), "doctor", "--bpffs", missing, "--width", "120"});
  EXPECT_EQ(bad.exit_code, 1) << bad.out;
  EXPECT_NE(bad.out.find("FAIL bpffs: no bpffs for " + missing), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("mount -t bpf bpf /sys/fs/bpf"), std::string::npos) << bad.out;

  // `bpf` and `pods` read the pins, also with the agent gone (killed: its pins stay).
  agent1_->kill();
  auto bpf = ctlJson("node1", {"bpf"});
  ASSERT_TRUE(bpf.is_object());
  EXPECT_GE(bpf["counters"].value("out_captured", uint64_t{0}), 1u) << bpf.dump(2);
  auto pods = ctl("node1", {"pods", "-o", "json"});
  EXPECT_EQ(pods.exit_code, 0) << pods.describe();
  auto pod_list = nlohmann::json::parse(pods.out, nullptr, false);
  ASSERT_TRUE(pod_list.is_array()) << pods.out;
  EXPECT_EQ(pod_list.size(), 2u) << pods.out;  // frontend and cart-v2, cookies only
  // 5 cgroup links (connect4/6, getpeername4/6, sockops) + one sk_lookup link per enrolled pod.
  EXPECT_EQ(bpf["links"].size(), 5u + pod_list.size()) << bpf.dump(2);
  EXPECT_NE(pods.err.find("cannot reach the agent"), std::string::npos) << pods.err;
}

// ---- must-show 4: the admin port is loopback only ---------------------------------------------

TEST_F(DebugTest, AdminApiRefusesEveryAddressButLoopback) {
  startAgents();
  const std::string node1 = cluster_->nodeNetnsPath("node1");
  // Loopback: served.
  auto dump = httpInNetns(node1, "GET", "127.0.0.1", kAdminPort, "/config_dump");
  ASSERT_EQ(dump.status, 200) << dump.error;
  auto j = nlohmann::json::parse(dump.body, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["workloads"].size(), 4u);
  EXPECT_EQ(j["enrolledPods"].size(), 2u);
  EXPECT_EQ(j["certificates"].size(), 2u);  // frontend, cart (cart-v2)
  EXPECT_EQ(dump.body.find("PRIVATE KEY"), std::string::npos);
  // The node's own address, from inside the node and from another node: refused.
  EXPECT_EQ(connectErrno(node1, kNode1Ip, kAdminPort), ECONNREFUSED);
  EXPECT_EQ(connectErrno(cluster_->nodeNetnsPath("node2"), kNode1Ip, kAdminPort), ECONNREFUSED);
  // Metrics and readiness do listen on the node's address.
  EXPECT_EQ(connectErrno(cluster_->nodeNetnsPath("node2"), kNode1Ip, kMetricsPort), 0);
  auto ready = httpInNetns(cluster_->nodeNetnsPath("node2"), "GET", kNode1Ip, kReadinessPort,
                           "/healthz/ready");
  EXPECT_EQ(ready.status, 200) << ready.error << ready.body;

  // log-level through the CLI.
  EXPECT_EQ(ctl("node1", {"log-level"}).out, "info\n");
  EXPECT_EQ(ctl("node1", {"log-level", "debug"}).exit_code, 0);
  EXPECT_EQ(ctl("node1", {"log-level"}).out, "debug\n");
  EXPECT_EQ(ctl("node1", {"log-level", "loud"}).exit_code, 2);

  // /quitquitquit: a clean stop, like SIGTERM (everything unpinned).
  auto quit = httpInNetns(node1, "POST", "127.0.0.1", kAdminPort, "/quitquitquit");
  EXPECT_EQ(quit.status, 200) << quit.error;
  auto code = agent1_->waitExit(seconds(15));
  ASSERT_TRUE(code.has_value()) << agent1_->output();
  EXPECT_EQ(*code, 0) << agent1_->output();
  EXPECT_FALSE(fs::exists(bpffs("node1") + "/maps/nm_pods"));
}

// ---- must-show 5: access log lines ------------------------------------------------------------

TEST_F(DebugTest, AccessLogNamesWorkloadsIdentitiesAndVerdictInTextAndJson) {
  startAgents({"--access-log-format", "json"});
  serve("cart-v1", 8080);
  auto done = connect("frontend", std::string(kCartV1) + ":8080", 4000, 3000);
  ASSERT_EQ(done.value("received", uint64_t{0}), 3000u) << done.dump();
  ASSERT_TRUE(agent1_->waitForOutput("\"direction\":\"outbound\"", seconds(5)))
      << agent1_->output();
  auto line = [](const std::string& out, const std::string& direction) {
    for (const auto& j : jsonLines(out)) {
      if (j.value("direction", "") == direction) return j;
    }
    return nlohmann::json();
  };
  ASSERT_TRUE(waitFor([&] { return !line(agent2_->output(), "inbound").is_null(); }, seconds(5)));
  auto out = line(agent1_->output(), "outbound");
  EXPECT_EQ(out.value("pod", ""), "shop/frontend-7d9f") << out.dump();
  EXPECT_EQ(out.value("src_workload", ""), "shop/frontend-7d9f");
  EXPECT_EQ(out.value("dst_workload", ""), "shop/cart-v1-5c2a");
  EXPECT_EQ(out.value("dst", ""), std::string(kCartV1) + ":8080");
  EXPECT_EQ(out.value("src_identity", ""), "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_EQ(out.value("dst_identity", ""), "spiffe://cluster.local/ns/shop/sa/cart");
  EXPECT_EQ(out.value("transport", ""), "hbone");
  EXPECT_EQ(out.value("bytes_to_dst", uint64_t{0}), 4000u + 16);
  EXPECT_EQ(out.value("bytes_from_dst", uint64_t{0}), 3000u);
  EXPECT_EQ(out.value("result", ""), "ok");
  EXPECT_TRUE(out["verdict"].is_null()) << out.dump();  // decided (and logged) at the destination
  EXPECT_TRUE(out.contains("duration_ms"));
  auto in = line(agent2_->output(), "inbound");
  EXPECT_EQ(in.value("src_workload", ""), "shop/frontend-7d9f") << in.dump();
  EXPECT_EQ(in.value("dst_workload", ""), "shop/cart-v1-5c2a");
  EXPECT_EQ(in.value("verdict", ""), "allow");
  EXPECT_EQ(in.value("policy", ""), "shop/cart-allow-frontend");
}

TEST_F(DebugTest, AccessLogTextLinesForAllowedAndDeniedConnections) {
  startAgents();
  // Allowed.
  serve("cart-v1", 8080);
  auto done = connect("frontend", std::string(kCartV1) + ":8080", 100, 100);
  ASSERT_EQ(done.value("received", uint64_t{0}), 100u) << done.dump();
  ASSERT_TRUE(agent2_->waitForOutput("direction=inbound pod=shop/cart-v1-5c2a", seconds(5)));
  EXPECT_TRUE(std::regex_search(
      agent2_->output(),
      std::regex(R"(access direction=inbound pod=shop/cart-v1-5c2a src=10\.244\.1\.10:\d+ )"
                 R"(dst=10\.244\.2\.20:8080 bytes_to_dst=116 bytes_from_dst=100 duration_ms=\d+ )"
                 R"(result=ok transport=hbone src_identity=spiffe://cluster\.local/ns/shop/sa/)"
                 R"(frontend dst_identity=spiffe://cluster\.local/ns/shop/sa/cart )"
                 R"(src_workload=shop/frontend-7d9f dst_workload=shop/cart-v1-5c2a )"
                 R"(verdict=allow policy=shop/cart-allow-frontend(\s|$))")))
      << agent2_->output();

  // Denied: port 9999 of cart-v1, by shop/deny-debug-port.
  serve("cart-v1", 9999);
  auto r = cluster_->runInPod(
      "frontend", {testappPath(), "connect", "--to", std::string(kCartV1) + ":9999", "--send",
                   "100", "--expect", "100"});
  ASSERT_TRUE(agent2_->waitForOutput("verdict=deny", seconds(5))) << agent2_->output();
  EXPECT_TRUE(std::regex_search(
      agent2_->output(),
      std::regex(R"(access direction=inbound pod=shop/cart-v1-5c2a src=10\.244\.1\.10:\d+ )"
                 R"(dst=10\.244\.2\.20:9999 .* src_workload=shop/frontend-7d9f )"
                 R"(dst_workload=shop/cart-v1-5c2a verdict=deny policy=shop/deny-debug-port )"
                 R"(reason="denied by DENY policy shop/deny-debug-port rule 0")")))
      << agent2_->output();
  // The client's side learns it from the 401.
  ASSERT_TRUE(agent1_->waitForOutput("dst=10.244.2.20:9999", seconds(5))) << agent1_->output();
  EXPECT_TRUE(std::regex_search(
      agent1_->output(),
      std::regex(R"(access direction=outbound pod=shop/frontend-7d9f .*dst=10\.244\.2\.20:9999 )"
                 R"(.*result="HBONE CONNECT answered 401" .* verdict=deny policy=- )")))
      << agent1_->output();
  // Metrics: closed with response_flags="DENY" on both sides.
  for (const char* node : {"node1", "node2"}) {
    auto m =
        httpInNetns(cluster_->nodeNetnsPath(node), "GET", "127.0.0.1", kMetricsPort, "/metrics");
    EXPECT_TRUE(std::regex_search(
        m.body, std::regex(R"(istio_tcp_connections_closed_total\{[^}]*response_flags="DENY")")))
        << node << "\n"
        << m.body;
  }
  EXPECT_NE(r.exit_code, 0) << r.out;
}

}  // namespace
}  // namespace nodemesh::sim
