// End-to-end tests of the waypoint's local rate limits. HTTP/1.1: a fixed-rate client in frontend
// (tests/e2e/scripts/rate_load.py, Python http.client over keep-alive connections) sends through
// the node agents and the waypoint to a Python HTTP/1.1 server in cart-v1. One HTTPRoute of cart
// is limited to 100 requests/s by an HTTPLocalRateLimitPolicy; another route of the same service
// has no policy. gRPC: a GRPCRoute limited to 2 calls/s, called by grpcio: the calls over the
// limit fail UNAVAILABLE, the waypoint's gRPC form of its 429.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>

#include "tests/e2e/waypoint_fixture.h"

namespace nodemesh::sim {
namespace {

constexpr const char* kRateLimitConfig = R"(httpRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: cart-limited, namespace: shop}
  spec:
    parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
    rules:
    - matches: [{path: {type: PathPrefix, value: /limited}}]
      backendRefs: [{name: cart, port: 80}]
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: cart-open, namespace: shop}
  spec:
    parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
    rules:
    - matches: [{path: {type: PathPrefix, value: /open}}]
      backendRefs: [{name: cart, port: 80}]
rateLimitPolicies:
- apiVersion: policy.linkerd.io/v1alpha1
  kind: HTTPLocalRateLimitPolicy
  metadata: {name: cart-limited-rl, namespace: shop}
  spec:
    targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: cart-limited}]
    total: {requestsPerSecond: 100}
)";

// A minimal keep-alive HTTP/1.1 server: 200 "ok" to every GET, as fast as Python allows.
Process& okServer(SimCluster& cluster, const std::string& pod) {
  const std::string script = R"(import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    disable_nagle_algorithm = True
    def do_GET(self):
        self.send_response(200)
        self.send_header('content-length', '3')
        self.end_headers()
        self.wfile.write(b'ok\n')
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()
)";
  return cluster.startInPod(pod, {"/usr/bin/python3", "-c", script});
}

class WaypointRateLimitTest : public WaypointTest {
 protected:
  std::string meshConfig() override { return withWaypoint(testConfig()) + kRateLimitConfig; }

  void SetUp() override {
    WaypointTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    okServer(*cluster_, "cart-v1");
    okServer(*cluster_, "cart-v2");
    ASSERT_TRUE(waypoint_->waitForOutput("waypoint: config in force", seconds(10)));
    ASSERT_TRUE(waitFor(
        [&] {
          auto r = cluster_->runInPod(
              "frontend", {"curl", "-sS", "--max-time", "5", "http://10.96.0.20:80/open"});
          return r.ok() && r.out == "ok\n";
        },
        seconds(15)))
        << waypoint_->output();
  }

  // The Prometheus text of the waypoint's /metrics.
  std::string metrics() {
    return cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15020/metrics"}).out;
  }
};

TEST_F(WaypointRateLimitTest, ALimitedRouteAdmitsItsRateAndTheOtherRouteIsUnaffected) {
  // 300 requests/s to the limited route and 100/s to the open one for 8 s; the first 2 s (the
  // limiter's one-second burst, the connections' start) are left out of the counts, so the 6 s
  // window should see 100/s admitted: 600 +-10%.
  constexpr double kDuration = 8, kWarmup = 2;
  auto r = cluster_->runInPod(
      "frontend",
      {"/usr/bin/python3", e2eScript("rate_load.py"), "10.96.0.20", "80", std::to_string(kDuration),
       std::to_string(kWarmup), "/limited:300", "/open:100"},
      seconds(60));
  ASSERT_TRUE(r.ok()) << r.describe() << "\n" << r.out;
  auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << r.out;
  const double window = j["window_s"].get<double>();
  const auto& limited = j["paths"]["/limited"];
  const auto& open = j["paths"]["/open"];
  const int ok = limited["counts"].value("200", 0);
  const int rejected = limited["counts"].value("429", 0);
  const double admitted_per_s = ok / window;
  RecordProperty("limited_admitted_per_s", std::to_string(admitted_per_s));
  std::cout << "rate limit e2e: /limited " << ok << " x 200, " << rejected << " x 429 in " << window
            << " s (" << admitted_per_s << "/s admitted); /open " << open["counts"] << ", errors "
            << limited["errors"] << "/" << open["errors"] << "\n";
  EXPECT_GE(admitted_per_s, 90) << r.out;
  EXPECT_LE(admitted_per_s, 110) << r.out;
  // Every other request of the window was answered 429: nothing failed or was served otherwise.
  EXPECT_EQ(limited["counts"].size(), 2u) << r.out;
  EXPECT_GE(ok + rejected, 0.9 * 300 * window) << r.out;
  EXPECT_EQ(limited["errors"], 0) << r.out;
  // The open route of the same service: every request served.
  EXPECT_EQ(open["counts"].size(), 1u) << r.out;
  EXPECT_GE(open["counts"].value("200", 0), 0.9 * 100 * window) << r.out;
  EXPECT_EQ(open["errors"], 0) << r.out;

  // What a 429 says: retry-after and the RateLimit fields
  // (draft-ietf-httpapi-ratelimit-headers-08).
  const auto& h = limited["sample_429"];
  ASSERT_TRUE(h.is_object()) << r.out;
  EXPECT_EQ(h.value("retry-after", ""), "1");
  EXPECT_EQ(h.value("ratelimit-policy", ""), "\"shop/cart-limited-rl/total\";q=100;w=1");
  EXPECT_EQ(h.value("ratelimit", ""), "\"shop/cart-limited-rl/total\";r=0;t=1");

  // The access log flags them RL, and the counter has them by policy and limit.
  ASSERT_TRUE(waitFor(
      [&] { return !accessLines(waypoint_->output(), "response_flags=RL").empty(); }, seconds(5)));
  const auto rl = accessLines(waypoint_->output(), "response_flags=RL");
  for (const std::string& line : rl) {
    ASSERT_NE(line.find("response_code=429"), std::string::npos) << line;
    ASSERT_NE(line.find("path=/limited"), std::string::npos) << line;
  }
  const std::string m = metrics();
  const std::string series =
      "nodemesh_waypoint_rate_limited_total{policy=\"shop/cart-limited-rl\",limit=\"total\"} ";
  auto at = m.find(series);
  ASSERT_NE(at, std::string::npos) << m;
  EXPECT_GE(std::stoll(m.substr(at + series.size())), rejected);
  EXPECT_NE(m.find("response_code=\"429\""), std::string::npos);
  auto stats = nlohmann::json::parse(
      cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/stats"}).out, nullptr,
      false);
  EXPECT_GE(stats["rateLimited"]["shop/cart-limited-rl"]["total"].get<int64_t>(), rejected)
      << stats.dump();
}

constexpr const char* kGrpcRateLimitConfig = R"(grpcRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: GRPCRoute
  metadata: {name: cart-grpc, namespace: shop}
  spec:
    parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
    rules:
    - backendRefs: [{name: cart, port: 80}]
rateLimitPolicies:
- apiVersion: policy.linkerd.io/v1alpha1
  kind: HTTPLocalRateLimitPolicy
  metadata: {name: cart-grpc-rl, namespace: shop}
  spec:
    targetRef: {group: gateway.networking.k8s.io, kind: GRPCRoute, name: cart-grpc}
    identity: {requestsPerSecond: 2}
)";

class WaypointGrpcRateLimitTest : public WaypointTest {
 protected:
  std::string meshConfig() override { return withWaypoint(testConfig()) + kGrpcRateLimitConfig; }
};

TEST_F(WaypointGrpcRateLimitTest, CallsOverTheLimitFailUnavailable) {
  for (const char* pod : {"cart-v1", "cart-v2"}) {
    Process& p = cluster_->startInPod(
        pod, {"/usr/bin/python3", e2eScript("grpc_app.py"), "server", pod, "8080"});
    ASSERT_TRUE(p.waitForOutput("listening", seconds(10))) << p.output();
  }
  ASSERT_TRUE(waypoint_->waitForOutput("waypoint: config in force", seconds(10)));
  // 20 calls in a row on one channel: the burst of 2 (and what refills while they run, 2/s)
  // passes, the rest are refused.
  auto r = cluster_->runInPod(
      "frontend",
      {"/usr/bin/python3", e2eScript("grpc_app.py"), "client", kCartVip, "/shop.Cart/Get", "20"},
      seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.describe() << "\n" << r.out;
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 20u) << r.out;
  const auto ok = std::count_if(lines.begin(), lines.end(),
                                [](const std::string& l) { return l.rfind("ok ", 0) == 0; });
  const auto limited =
      std::count(lines.begin(), lines.end(), "error UNAVAILABLE local_rate_limited");
  EXPECT_GE(ok, 2) << r.out;
  EXPECT_LE(ok, 6) << r.out;
  EXPECT_EQ(ok + limited, 20) << r.out;
  ASSERT_TRUE(waitFor(
      [&] { return !accessLines(waypoint_->output(), "response_flags=RL").empty(); }, seconds(5)));
  const auto rl = accessLines(waypoint_->output(), "response_flags=RL");
  EXPECT_NE(rl.front().find("grpc_status=14"), std::string::npos) << rl.front();
  // The waypoint publishes its counters every 100 ms: wait for the last refusals to show.
  const std::string series =
      "nodemesh_waypoint_rate_limited_total{policy=\"shop/cart-grpc-rl\",limit=\"identity\"} " +
      std::to_string(limited) + "\n";
  std::string m;
  EXPECT_TRUE(waitFor(
      [&] {
        m = cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15020/metrics"}).out;
        return m.find(series) != std::string::npos;
      },
      seconds(5)))
      << m;
}

}  // namespace
}  // namespace nodemesh::sim
