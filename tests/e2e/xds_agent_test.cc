// The agent fed by istiod (docs/xds.md), end to end: two simulated nodes whose agents take the
// mesh only from a stand-in istiod (tests/istiod_standin: delta xDS over TLS) and every workload
// certificate from the stand-in of Istio's CA (tests/ca_standin) on the same port, with no
// local config file. The stand-in runs in this process, listening inside node1's network
// namespace on its underlay address, which both agents reach.
//
// What the stand-ins cover and what they do not: see their headers. They speak istiod's wire
// protocol (the resources, ACK/NACK, removals, reconnects with initial_resource_versions, the
// CA's CSR signing with ImpersonatedIdentity and the bearer token); they do not compute the
// resources from Kubernetes objects as istiod does (the test pushes them).

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "common/ip_address.h"
#include "identity/local_ca.h"
#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"
#include "tests/ca_standin/ca_standin.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/istiod_standin/istiod_standin.h"

namespace nodemesh::sim {
namespace {

using testing::CaStandin;
using testing::CaStandinOptions;
using testing::IstiodStandin;

constexpr const char* kAddressType = "type.googleapis.com/istio.workload.Address";
constexpr const char* kAuthorizationType = "type.googleapis.com/istio.security.Authorization";
constexpr const char* kToken = "node-agent-token";
constexpr const char* kCartVip = "10.96.0.20:80";

// The address as istiod sends it: 4 bytes for IPv4, 16 for IPv6.
std::string ipBytes(const std::string& text) {
  const auto ip = nodemesh::IpAddress::parse(text).value();
  const auto& bytes = ip.bytes();
  const size_t skip = ip.isV4() ? 12 : 0;
  return {reinterpret_cast<const char*>(bytes.data()) + skip, bytes.size() - skip};
}

// Runs `fn` on a thread that entered `netns_path`: sockets it creates stay in that namespace.
void inNetns(const std::string& netns_path, const std::function<void()>& fn) {
  std::string problem;
  std::thread t([&] {
    UniqueFd ns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid() || ::setns(ns.get(), CLONE_NEWNET) != 0) {
      problem = "setns " + netns_path + ": " + std::strerror(errno);
      return;
    }
    fn();
  });
  t.join();
  if (!problem.empty()) throw HarnessError(problem);
}

istio::workload::Address workload(const std::string& name, const std::string& sa,
                                  const std::string& ip, const std::string& node, bool hbone,
                                  const std::vector<std::string>& policies = {},
                                  bool backs_cart = false) {
  istio::workload::Address address;
  auto* w = address.mutable_workload();
  w->set_uid("Kubernetes//Pod/shop/" + name);
  w->set_name(name);
  w->set_namespace_("shop");
  w->add_addresses(ipBytes(ip));
  w->set_service_account(sa);
  w->set_trust_domain("cluster.local");
  w->set_node(node);
  w->set_tunnel_protocol(hbone ? istio::workload::HBONE : istio::workload::NONE);
  w->set_canonical_name(name);
  w->set_workload_name(name);
  w->set_cluster_id("Kubernetes");
  for (const auto& p : policies) w->add_authorization_policies(p);
  if (backs_cart) {
    auto& ports = (*w->mutable_services())["shop/cart.shop.svc.cluster.local"];
    auto* port = ports.add_ports();
    port->set_service_port(80);
    port->set_target_port(8080);
  }
  return address;
}

istio::workload::Address cartService() {
  istio::workload::Address address;
  auto* s = address.mutable_service();
  s->set_name("cart");
  s->set_namespace_("shop");
  s->set_hostname("cart.shop.svc.cluster.local");
  auto* vip = s->add_addresses();
  vip->set_address(ipBytes("10.96.0.20"));
  auto* port = s->add_ports();
  port->set_service_port(80);
  port->set_target_port(8080);
  return address;
}

// shop/cart-allow-frontend: only frontend's identity may call the pods that name it.
istio::security::Authorization cartAllowFrontend() {
  istio::security::Authorization a;
  a.set_name("cart-allow-frontend");
  a.set_namespace_("shop");
  a.set_scope(istio::security::WORKLOAD_SELECTOR);
  a.set_action(istio::security::ALLOW);
  auto* match = a.add_rules()->add_clauses()->add_matches();
  match->add_principals()->set_exact("cluster.local/ns/shop/sa/frontend");
  return a;
}

class XdsAgentTest : public MeshTest {
 protected:
  void SetUp() override {
    MeshTest::SetUp();
    if (IsSkipped() || HasFatalFailure() || !cluster_) return;
    // One root for istiod's serving certificate and for the workload certificates, as in a
    // cluster where istiod is the CA.
    auto ca = identity::LocalCa::loadOrCreate(cluster_->workDir() + "/istiod-ca", "cluster.local",
                                              clock_);
    ASSERT_TRUE(ca) << ca.error().message;
    ca_ = std::move(*ca);
    CaStandinOptions ca_options;
    ca_options.required_token = kToken;
    ca_options.caller_identity = "spiffe://cluster.local/ns/istio-system/sa/ztunnel";
    for (const char* sa : {"frontend", "cart"}) {
      ca_options.allowed_impersonations.insert(std::string("spiffe://cluster.local/ns/shop/sa/") +
                                               sa);
    }
    ca_service_ = std::make_unique<CaStandin>(*ca_, ca_options);

    IstiodStandin::Options options;
    options.address = "0.0.0.0:0";
    options.root_cert_pem = readText(cluster_->workDir() + "/istiod-ca/ca-cert.pem");
    options.root_key_pem = readText(cluster_->workDir() + "/istiod-ca/ca-key.pem");
    options.token = kToken;
    options.extra.push_back(ca_service_.get());
    node1_netns_ = cluster_->nodeNetnsPath("node1");
    std::string problem;
    inNetns(node1_netns_, [&] {
      auto started = IstiodStandin::start(options);
      if (!started) {
        problem = started.error().message;
        return;
      }
      istiod_ = std::move(*started);
    });
    ASSERT_TRUE(istiod_) << problem;
    const std::string port = istiod_->address().substr(istiod_->address().rfind(':') + 1);
    address_ = cluster_->node("node1").underlay_ip + ":" + port;
    root_file_ = cluster_->writeFile("istiod-root.pem", istiod_->rootCertPem());
    token_file_ = cluster_->writeFile("istio-token", kToken);

    istiod_->setResource(kAddressType, "Kubernetes//Pod/shop/frontend",
                         workload("frontend", "frontend", "10.244.1.10", "node1", true));
    istiod_->setResource(kAddressType, "Kubernetes//Pod/shop/cart-v2",
                         workload("cart-v2", "cart", "10.244.1.21", "node1", true));
    istiod_->setResource(
        kAddressType, "Kubernetes//Pod/shop/cart-v1",
        workload("cart-v1", "cart", "10.244.2.20", "node2", true, {"shop/cart-allow-frontend"},
                 /*backs_cart=*/true));
    istiod_->setResource(kAddressType, "Kubernetes//Pod/shop/batch",
                         workload("batch", "default", "10.244.2.30", "node2", false));
    istiod_->setResource(kAddressType, "shop/cart.shop.svc.cluster.local", cartService());
    istiod_->setResource(kAuthorizationType, "shop/cart-allow-frontend", cartAllowFrontend());
  }

  void TearDown() override {
    // The stand-in before the cluster: its listener lives in node1's namespace.
    istiod_.reset();
  }

  static std::string readText(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  std::vector<std::string> xdsFlags() const {
    return {
        "--xds-address",       address_,     "--istiod-root-cert",    root_file_,
        "--istiod-token-file", token_file_,  "--istiod-server-name",  IstiodStandin::kServerName,
        "--cluster-id",        "Kubernetes", "--access-log-flush-ms", "0"};
  }

  void startXdsAgents() {
    agent1_ = &startAgent("node1", xdsFlags(), kNoConfigFile);
    agent2_ = &startAgent("node2", xdsFlags(), kNoConfigFile);
    ASSERT_TRUE(agent1_->waitForOutput("enrolled pod shop/frontend", seconds(15)))
        << agent1_->output();
    ASSERT_TRUE(agent1_->waitForOutput("enrolled pod shop/cart-v2", seconds(10)))
        << agent1_->output();
    ASSERT_TRUE(agent2_->waitForOutput("enrolled pod shop/cart-v1", seconds(10)))
        << agent2_->output();
  }

  nlohmann::json controlPlane(const std::string& node) {
    auto r = cluster_->runInNode(node, {binDir() + "/nodemeshctl", "control-plane", "-o", "json"},
                                 seconds(10));
    EXPECT_EQ(r.exit_code, 0) << r.describe() << r.out << r.err;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_discarded() ? nlohmann::json::object() : j;
  }

  identity::SystemClock clock_;
  std::unique_ptr<identity::LocalCa> ca_;
  std::unique_ptr<CaStandin> ca_service_;
  std::unique_ptr<IstiodStandin> istiod_;
  std::string node1_netns_;
  std::string address_;
  std::string root_file_;
  std::string token_file_;
};

// Must show 1: pods enrolled and HBONE between the nodes with certificates from the stand-in
// CA, the policy pushed over xDS enforced, and a workload removed over xDS no longer reached.
TEST_F(XdsAgentTest, TwoNodesFedOnlyByIstiod) {
  startXdsAgents();
  if (HasFatalFailure()) return;

  // frontend -> cart-v1 over HBONE, identities from Istio's CA.
  Process& cart = serve("cart-v1", 8080, 2);
  auto done = connect("frontend", "10.244.2.20:8080", 64 << 10, 64 << 10);
  EXPECT_TRUE(done.value("ok", false)) << done.dump();
  EXPECT_TRUE(
      agent2_->waitForOutput("src_identity=spiffe://cluster.local/ns/shop/sa/frontend", seconds(5)))
      << agent2_->output();
  EXPECT_TRUE(agent2_->waitForOutput("policy=shop/cart-allow-frontend", seconds(5)));
  std::set<std::string> signed_ids;
  for (const auto& call : ca_service_->calls()) {
    EXPECT_EQ(call.authorization, std::string("Bearer ") + kToken);
    if (call.status == grpc::StatusCode::OK) signed_ids.insert(call.signed_identity);
    ASSERT_TRUE(call.impersonated_identity.has_value());
  }
  EXPECT_TRUE(signed_ids.count("spiffe://cluster.local/ns/shop/sa/frontend")) << signed_ids.size();
  EXPECT_TRUE(signed_ids.count("spiffe://cluster.local/ns/shop/sa/cart")) << signed_ids.size();

  // The pushed policy: cart-v2 (service account cart) is refused by cart-v1's agent.
  auto denied = connect("cart-v2", "10.244.2.20:8080", 4096, 4096);
  EXPECT_FALSE(denied.value("ok", true)) << denied.dump();
  EXPECT_TRUE(agent1_->waitForOutput("HBONE CONNECT answered 401", seconds(5)))
      << agent1_->output();

  // Through the service VIP while cart-v1 backs it...
  done = connect("frontend", kCartVip, 4096, 4096);
  EXPECT_TRUE(done.value("ok", false)) << done.dump();
  EXPECT_EQ(cart.waitExit(seconds(10)), 0) << cart.output();

  // ...and no more once istiod removed it: the service has no endpoint, the pod leaves.
  serve("cart-v1", 8080);
  istiod_->removeResource(kAddressType, "Kubernetes//Pod/shop/cart-v1");
  ASSERT_TRUE(agent2_->waitForOutput("unenrolled pod shop/cart-v1", seconds(10)))
      << agent2_->output();
  ASSERT_TRUE(waitFor(
      [&] {
        auto cp = controlPlane("node1");
        return cp["config"]["xds"]["types"][kAddressType].value("resources", 0) == 4;
      },
      seconds(5)));
  done = connect("frontend", kCartVip, 4096, 4096);
  EXPECT_FALSE(done.value("ok", true)) << done.dump();
  EXPECT_TRUE(agent1_->waitForOutput("no endpoint", seconds(5))) << agent1_->output();
}

// Must show 2: istiod restarts; an established connection is not dropped, the agents reconnect
// naming what they hold, and what changed meanwhile arrives.
TEST_F(XdsAgentTest, ReconnectAfterIstiodRestartsKeepsConnectionsAndResyncs) {
  startXdsAgents();
  if (HasFatalFailure()) return;
  serve("cart-v1", 8080);
  // 2 MiB at 512 KiB/s: open for about 4 s, across the restart.
  Process& client =
      cluster_->startInPod("frontend", {testappPath(), "connect", "--to", "10.244.2.20:8080",
                                        "--send", "2M", "--expect", "2M", "--rate", "512K"});
  ASSERT_TRUE(waitFor([&] { return tunnelStats(*agent2_)["active"] >= 1; }, seconds(5)));

  istiod_->stop();
  ASSERT_TRUE(
      waitFor([&] { return !controlPlane("node1")["config"]["xds"].value("connected", true); },
              seconds(5)));
  // While it is down: cart-v2 joins the service.
  istiod_->setResource(kAddressType, "Kubernetes//Pod/shop/cart-v2",
                       workload("cart-v2", "cart", "10.244.1.21", "node1", true, {}, true));
  Status restarted = okStatus();
  inNetns(node1_netns_, [&] { restarted = istiod_->restart(); });
  ASSERT_TRUE(restarted) << restarted.error().message;

  ASSERT_TRUE(client.waitExit(seconds(20)).has_value()) << client.output();
  auto done = findEvent(client.output(), "done");
  ASSERT_TRUE(done.has_value()) << client.output();
  EXPECT_TRUE(done->value("ok", false)) << done->dump();

  // Both agents came back with initial_resource_versions and got the change.
  EXPECT_TRUE(istiod_->waitForRequests(
      [](const std::vector<IstiodStandin::Request>& requests) {
        int resumed = 0;
        for (const auto& r : requests) {
          if (r.type_url == kAddressType && r.initial_resource_versions.size() >= 5) ++resumed;
        }
        return resumed >= 2;
      },
      seconds(20)));
  ASSERT_TRUE(waitFor(
      [&] {
        auto cp = controlPlane("node1");
        return cp["config"]["xds"].value("connected", false);
      },
      seconds(20)));
  Process& v2 = serve("cart-v2", 8080);
  bool reached_v2 = false;
  for (int i = 0; i < 20 && !reached_v2; ++i) {
    (void)connect("frontend", kCartVip, 256, 256);
    reached_v2 = !findEvents(v2.output(), "conn").empty();
  }
  EXPECT_TRUE(reached_v2) << "cart-v2, added while istiod was down, never served the VIP";
}

// Must show 3: an invalid resource is NACKed with the reason, visible in nodemeshctl; the agent
// keeps serving with the last good config.
TEST_F(XdsAgentTest, NackIsVisibleInNodemeshctlAndTheAgentKeepsServing) {
  startXdsAgents();
  if (HasFatalFailure()) return;
  auto bad = workload("broken", "default", "10.244.1.50", "node1", true);
  bad.mutable_workload()->set_addresses(0, std::string("\x0a\x00\x00\x01\x02", 5));
  istiod_->setResource(kAddressType, "Kubernetes//Pod/shop/broken", bad);
  ASSERT_TRUE(waitFor(
      [&] { return controlPlane("node1")["config"]["xds"]["lastNack"].is_object(); }, seconds(10)));
  auto cp = controlPlane("node1");
  const std::string reason = cp["config"]["xds"]["lastNack"].value("reason", "");
  EXPECT_NE(reason.find("broken"), std::string::npos) << reason;
  EXPECT_NE(reason.find("5 bytes"), std::string::npos) << reason;
  auto r = cluster_->runInNode("node1", {binDir() + "/nodemeshctl", "control-plane"}, seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("last NACK:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("5 bytes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Istio's CA at"), std::string::npos) << r.out;
  std::printf("nodemeshctl control-plane:\n%s", r.out.c_str());
  // Still serving.
  Process& cart = serve("cart-v1", 8080);
  auto done = connect("frontend", "10.244.2.20:8080", 4096, 4096);
  EXPECT_TRUE(done.value("ok", false)) << done.dump();
  EXPECT_EQ(cart.waitExit(seconds(10)), 0);
  EXPECT_TRUE(agent1_->isRunning());
}

}  // namespace
}  // namespace nodemesh::sim
