#include "agent/admin/admin_api.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>

#include "common/http_server.h"
#include "config/local/local_config.h"

namespace nodemesh::agent::admin {
namespace {

class FakeState final : public AdminState {
 public:
  FakeState() {
    auto r = nodemesh::config::loadLocalConfigFile(std::string(NODEMESH_EXAMPLES_DIR) +
                                                   "/two-nodes.yaml");
    snapshot_ = r.snapshot;
  }
  model::SnapshotPtr snapshot() const override { return snapshot_; }
  std::vector<PodView> pods() const override {
    return {{"shop/frontend-7d9f",
             "cluster1//v1/Pod/shop/frontend-7d9f",
             "/var/run/netns/fe",
             11,
             {"10.244.1.10"}}};
  }
  std::vector<tunnel::ConnectionInfo> connections() const override {
    tunnel::ConnectionInfo c;
    c.pod = "shop/frontend-7d9f";
    c.src = SocketAddress::parse("127.0.0.1:4000").value();
    c.dst = SocketAddress::parse("10.244.2.20:8080").value();
    c.transport = tunnel::Transport::kHbone;
    c.bytes_to_dst = 1234;
    c.age = std::chrono::milliseconds(5000);
    c.state = "open";
    return {c};
  }
  std::vector<CertificateView> certificates() const override {
    return {{"spiffe://cluster.local/ns/shop/sa/frontend", "AB12",
             std::chrono::system_clock::time_point(std::chrono::seconds(1700000000)),
             std::chrono::system_clock::time_point(std::chrono::seconds(1700086400)),
             "-----BEGIN CERTIFICATE-----\n...\n"}};
  }
  AgentInfo info() const override {
    AgentInfo i;
    i.node = "node1";
    i.bpffs = "/sys/fs/bpf/nodemesh";
    i.exclude_outbound_ports = {9090};
    return i;
  }
  void quit() override { quits.fetch_add(1); }

  std::atomic<int> quits{0};

 private:
  model::SnapshotPtr snapshot_;
};

class AdminApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions o;
    o.name = "admin";
    o.address = kAdminAddress;
    o.port = 0;
    auto s = HttpServer::start(o, adminRoutes(state_));
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
  }
  httplib::Result get(const std::string& path) {
    httplib::Client c("127.0.0.1", server_->port());
    return c.Get(path);
  }
  httplib::Result post(const std::string& path) {
    httplib::Client c("127.0.0.1", server_->port());
    return c.Post(path);
  }
  FakeState state_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(AdminApiTest, ConfigDumpHasTheConfigCertificatesWithoutKeysAndPods) {
  auto r = get("/config_dump");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  auto j = nlohmann::json::parse(r->body);
  EXPECT_EQ(j["workloads"].size(), 4u);
  EXPECT_EQ(j["workloads"][0]["uid"], "cluster1//v1/Pod/shop/frontend-7d9f");
  EXPECT_EQ(j["workloads"][0]["workloadIps"], nlohmann::json({"10.244.1.10"}));
  EXPECT_EQ(j["workloads"][0]["protocol"], "HBONE");
  EXPECT_EQ(j["services"][0]["vips"], nlohmann::json({"/10.96.0.20"}));
  EXPECT_EQ(j["services"][0]["ports"]["80"], 8080);
  EXPECT_EQ(j["services"][0]["endpoints"].size(), 2u);
  EXPECT_EQ(j["policies"][0]["rules"][0][0][0]["principals"][0]["Exact"],
            "cluster.local/ns/shop/sa/frontend");
  EXPECT_EQ(j["certificates"][0]["certChain"][0]["expirationTime"], "2023-11-15T22:13:20Z");
  EXPECT_EQ(r->body.find("PRIVATE"), std::string::npos);
  EXPECT_EQ(j["enrolledPods"][0]["netns"], "/var/run/netns/fe");
  EXPECT_EQ(j["agent"]["excludeOutboundPorts"], nlohmann::json({9090}));
}

TEST_F(AdminApiTest, Connections) {
  auto r = get("/connections");
  ASSERT_TRUE(r);
  auto j = nlohmann::json::parse(r->body);
  ASSERT_EQ(j["connections"].size(), 1u);
  EXPECT_EQ(j["connections"][0]["bytes_to_dst"], 1234);
  EXPECT_EQ(j["connections"][0]["transport"], "hbone");
  EXPECT_EQ(j["connections"][0]["age_ms"], 5000);
}

TEST_F(AdminApiTest, LoggingReadsAndSetsTheLevel) {
  auto before = spdlog::default_logger()->level();
  auto r = post("/logging?level=debug");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::debug);
  EXPECT_EQ(nlohmann::json::parse(get("/logging")->body)["level"], "debug");
  EXPECT_EQ(post("/logging?level=loud")->status, 400);
  EXPECT_EQ(post("/logging")->status, 400);
  spdlog::default_logger()->set_level(before);
}

TEST_F(AdminApiTest, ExplainValidatesItsInput) {
  auto ok = get("/explain?src=10.244.1.10&dst=10.244.2.20:8080");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(nlohmann::json::parse(ok->body)["verdict"], "allow");
  EXPECT_EQ(get("/explain?src=10.244.1.10")->status, 400);
  EXPECT_EQ(get("/explain?src=nope&dst=10.244.2.20:8080")->status, 400);
  auto bad = get("/explain?src=10.244.1.10&dst=10.244.2.20");
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(nlohmann::json::parse(bad->body)["error"].get<std::string>().find("IP:PORT"),
            std::string::npos);
}

TEST_F(AdminApiTest, QuitAndUnknownPaths) {
  EXPECT_EQ(get("/quitquitquit")->status, 405);  // GET must not stop the agent
  EXPECT_EQ(state_.quits.load(), 0);
  EXPECT_EQ(post("/quitquitquit")->status, 200);
  EXPECT_EQ(state_.quits.load(), 1);
  EXPECT_EQ(get("/nothing")->status, 404);
  EXPECT_EQ(get("/")->status, 200);
}

// The second line behind the 127.0.0.1 bind: every handler refuses a peer that is not loopback
// (and does nothing: no quit), and serves one that is.
TEST(AdminRoutesTest, EveryHandlerAnswers403ToAPeerThatIsNotLoopback) {
  FakeState state;
  const auto routes = adminRoutes(state);
  ASSERT_GE(routes.size(), 6u);
  for (const auto& route : routes) {
    for (const char* peer : {"10.0.0.7", "192.168.1.2", "::ffff:10.0.0.7", "2001:db8::1", ""}) {
      HttpRequest req;
      req.method = route.method;
      req.path = route.path;
      req.remote_addr = peer;
      EXPECT_EQ(route.handler(req).status, 403)
          << route.method << " " << route.path << " from '" << peer << "'";
    }
    HttpRequest local;
    local.method = route.method;
    local.path = route.path;
    local.remote_addr = route.path == "/quitquitquit" ? "::1" : "127.0.0.1";
    EXPECT_NE(route.handler(local).status, 403) << route.method << " " << route.path;
  }
  EXPECT_EQ(state.quits.load(), 1) << "only the loopback POST /quitquitquit quits";
}

TEST(HttpServerTest, ASecondServerOnTheSamePortFails) {
  HttpServerOptions o;
  o.name = "a";
  o.address = "127.0.0.1";
  auto first = HttpServer::start(o, {});
  ASSERT_TRUE(first);
  o.port = (*first)->port();
  auto second = HttpServer::start(o, {});
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find(std::to_string(o.port)), std::string::npos);
}

TEST(ReadinessTest, ReadyOnlyWhenEverythingIsUp) {
  Readiness r;
  HttpServerOptions o;
  o.name = "readiness";
  o.address = "127.0.0.1";
  auto s = HttpServer::start(o, readinessRoutes(r));
  ASSERT_TRUE(s);
  httplib::Client c("127.0.0.1", (*s)->port());
  auto not_ready = c.Get("/healthz/ready");
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_NE(not_ready->body.find("capture programs not attached"), std::string::npos);
  r.setProgramsAttached();
  r.setConfigLoaded();
  EXPECT_EQ(c.Get("/healthz/ready")->status, 503);
  r.setTunnelStarted();
  EXPECT_EQ(c.Get("/healthz/ready")->status, 200);
  r.setPodsPending();
  auto pods = c.Get("/healthz/ready");
  EXPECT_EQ(pods->status, 503);
  EXPECT_NE(pods->body.find("pods of the node not listed"), std::string::npos);
  r.setPodsEnrolled();
  EXPECT_EQ(c.Get("/healthz/ready")->status, 200);
  r.setStopping();
  EXPECT_EQ(c.Get("/healthz/ready")->status, 503);
}

TEST(MetricsRouteTest, ServesPrometheusText) {
  HttpServerOptions o;
  o.name = "metrics";
  o.address = "127.0.0.1";
  metrics::TcpMetrics tcp;
  auto s = HttpServer::start(o, metricsRoutes([&] {
                               metrics::AgentMetricsInput in;
                               in.tcp = &tcp;
                               in.enrolled_pods = 2;
                               return in;
                             }));
  ASSERT_TRUE(s);
  httplib::Client c("127.0.0.1", (*s)->port());
  auto r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get_header_value("Content-Type"), telemetry::kPrometheusContentType);
  EXPECT_NE(r->body.find("nodemesh_enrolled_pods 2\n"), std::string::npos);
  EXPECT_EQ(c.Get("/stats/prometheus")->status, 200);
}

}  // namespace
}  // namespace nodemesh::agent::admin
