// End-to-end tests of a DestinationRule's trafficPolicy in the waypoint. The cart service has two
// endpoints (cart-v1 on node2, cart-v2 on node1), each a Python HTTP/1.1 server answering
// GET /who with its pod's name.
// - Outlier detection: cart-v2 starts answering every request 503; after consecutive5xxErrors
//   (3) of them it is ejected and gets no more requests (the client sees only cart-v1: the
//   three 503s were retried there); once it recovers and its ejection time has passed it gets
//   requests again.
// - Circuit breaking: maxConnections 1 + http1MaxPendingRequests 1 with a slow backend and eight
//   concurrent clients: the requests over the limit are answered 503 at once, flagged UO in the
//   access log and counted; maxRequestsPerConnection 1: no upstream connection is reused.

#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/waypoint_fixture.h"

namespace nodemesh::sim {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// GET /who: the pod's name after `delay_ms`, or 503 "<pod> failing" while the file `fail_flag`
// exists.
Process& whoServer(SimCluster& cluster, const std::string& pod, int delay_ms,
                   const std::string& fail_flag) {
  const std::string script =
      "import http.server, os, sys, time\n"
      "name, delay, flag = sys.argv[1], int(sys.argv[2]) / 1000.0, sys.argv[3]\n"
      "class H(http.server.BaseHTTPRequestHandler):\n"
      "    protocol_version = 'HTTP/1.1'\n"
      "    def do_GET(self):\n"
      "        time.sleep(delay)\n"
      "        failing = os.path.exists(flag)\n"
      "        body = (name + (' failing' if failing else '') + '\\n').encode()\n"
      "        self.send_response(503 if failing else 200)\n"
      "        self.send_header('content-length', str(len(body)))\n"
      "        self.end_headers()\n"
      "        self.wfile.write(body)\n"
      "    def log_message(self, *a): pass\n"
      "http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()\n";
  return cluster.startInPod(
      pod, {"/usr/bin/python3", "-c", script, pod, std::to_string(delay_ms), fail_flag});
}

// The responses of a curl run with -w "code=%{http_code};\n" after each body: (code, body).
std::vector<std::pair<int, std::string>> responses(const std::string& out) {
  std::vector<std::pair<int, std::string>> r;
  std::istringstream in(out);
  std::string body;
  for (std::string line; std::getline(in, line);) {
    auto at = line.find("code=");
    if (at == std::string::npos) {
      body += line;
      continue;
    }
    body += line.substr(0, at);
    int code = 0;  // stays 0 when curl printed no number (no response)
    const char* digits = line.c_str() + at + 5;
    std::from_chars(digits, line.c_str() + line.size(), code);
    r.emplace_back(code, body);
    body.clear();
  }
  return r;
}

class WaypointTrafficPolicyTest : public WaypointTest {
 protected:
  std::string meshConfig() override { return withWaypoint(testConfig()) + rule(); }
  virtual std::string rule() = 0;

  void startServers(int delay_ms) {
    for (const char* pod : {"cart-v1", "cart-v2"}) whoServer(*cluster_, pod, delay_ms, flag(pod));
    waitPodsServing({"cart-v1", "cart-v2"});
  }

  // While this file exists, the pod's server answers 503.
  std::string flag(const std::string& pod) { return cluster_->workDir() + "/" + pod + ".fail"; }
  void setFailing(const std::string& pod, bool failing) {
    if (failing) {
      std::ofstream(flag(pod)) << "1";
    } else {
      std::filesystem::remove(flag(pod));
    }
  }

  // `n` sequential requests from frontend (a new connection each), their responses in order.
  std::vector<std::pair<int, std::string>> sequential(int n) {
    std::vector<std::string> argv = {"curl", "-s", "-w", "code=%{http_code};\\n"};
    for (int i = 0; i < n; ++i) argv.emplace_back("http://10.96.0.20:80/who");
    auto r = cluster_->runInPod("frontend", argv, seconds(60));
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    return responses(r.out);
  }

  std::string metrics() {
    return cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15020/metrics"}).out;
  }
  // Retries after a retryable status so far (/stats), once the loop's tick published them.
  int64_t statusRetries() {
    std::this_thread::sleep_for(milliseconds(300));
    auto j = nlohmann::json::parse(
        cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/stats"}).out, nullptr,
        false);
    if (!j.is_object() || !j.contains("retries")) return -1;
    return j["retries"].value("on_status", int64_t{-1});
  }
  // The value of an unlabelled counter in /metrics, -1 when absent.
  int64_t counter(const std::string& name) {
    const std::string m = metrics();
    auto at = m.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stoll(m.substr(at + name.size() + 2));
  }
};

class WaypointOutlierTest : public WaypointTrafficPolicyTest {
 protected:
  std::string rule() override {
    return R"(destinationRules:
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: cart, namespace: shop}
  spec:
    host: cart
    trafficPolicy:
      outlierDetection:
        consecutive5xxErrors: 3
        interval: 1s
        baseEjectionTime: 5s
        maxEjectionPercent: 50
)";
  }
};

TEST_F(WaypointOutlierTest, AFailingPodIsEjectedAndGetsTrafficBackAfterItRecovers) {
  startServers(0);
  if (HasFatalFailure()) return;
  // Both serve.
  auto before = sequential(20);
  ASSERT_EQ(before.size(), 20u);
  for (const auto& [code, body] : before) ASSERT_EQ(code, 200) << body;

  // cart-v2 fails every request from now on: three 503s in a row eject it, then only cart-v1.
  // The client sees none of them: each is retried on cart-v1 (the default retry policy), and
  // the retries count them.
  const int64_t retries_before = statusRetries();
  setFailing("cart-v2", true);
  const auto t_fail = std::chrono::steady_clock::now();
  auto during = sequential(40);
  ASSERT_EQ(during.size(), 40u);
  for (size_t i = 0; i < during.size(); ++i) {
    EXPECT_EQ(during[i], (std::pair<int, std::string>{200, "cart-v1"})) << i;
  }
  const auto t_done = std::chrono::steady_clock::now();
  const int64_t failed = statusRetries() - retries_before;
  std::cout << "outlier e2e: " << failed << " x 503 from cart-v2 (each retried on cart-v1) "
            << "before its ejection, 40 requests in "
            << std::chrono::duration_cast<milliseconds>(t_done - t_fail).count() << " ms\n";
  // Ejected within 5 requests to it (3 with this rule), unless the 40 requests outlasted the
  // 5 s ejection (then it fails 3 more before the next one).
  EXPECT_GE(failed, 3);
  if (t_done - t_fail < seconds(5)) {
    EXPECT_EQ(failed, 3) << waypoint_->output();
  }
  EXPECT_LE(failed, 6);
  ASSERT_TRUE(waypoint_->waitForOutput(
      "of shop/cart.shop.svc.cluster.local for 5000 ms after 3 consecutive 5xx responses "
      "(ejection 1 in a row)",
      seconds(2)))
      << waypoint_->output();
  EXPECT_NE(waypoint_->output().find("outlier detection: ejected shop/cart-v2"), std::string::npos);
  EXPECT_GE(counter("nodemesh_waypoint_outlier_ejections_total"), 1);
  auto stats = nlohmann::json::parse(
      cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/stats"}).out, nullptr,
      false);
  EXPECT_GE(stats.value("outlier_ejections", 0), 1) << stats.dump();

  // It recovers; once its ejection time has passed it gets requests again, and none fails.
  setFailing("cart-v2", false);
  std::this_thread::sleep_for(seconds(6));
  auto after = sequential(40);
  ASSERT_EQ(after.size(), 40u);
  int v2 = 0;
  for (const auto& [code, body] : after) {
    EXPECT_EQ(code, 200) << body;
    if (body == "cart-v2") ++v2;
  }
  EXPECT_GE(v2, 5) << "cart-v2 is back in the rotation";
  const std::string dump =
      cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/config_dump"}).out;
  EXPECT_NE(dump.find("DestinationRule shop/cart host cart.shop.svc.cluster.local "
                      "outlierDetection{consecutive5xxErrors: 3"),
            std::string::npos)
      << dump;
}

class WaypointCircuitBreakerTest : public WaypointTrafficPolicyTest {
 protected:
  std::string rule() override {
    return R"(destinationRules:
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: cart, namespace: shop}
  spec:
    host: cart.shop.svc.cluster.local
    trafficPolicy:
      connectionPool:
        tcp: {maxConnections: 1}
        http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
)";
  }
};

TEST_F(WaypointCircuitBreakerTest, RequestsOverTheLimitAreAnswered503UO) {
  startServers(1000);  // each request holds its connection for a second
  if (HasFatalFailure()) return;
  // Eight at once: two may be in flight (one on the connection, one "pending"), the others are
  // answered at once.
  std::vector<std::string> argv = {"curl",           "-s", "-Z", "--parallel-immediate",
                                   "--parallel-max", "8",  "-w", "code=%{http_code};\\n"};
  for (int i = 0; i < 8; ++i) argv.emplace_back("http://10.96.0.20:80/who");
  auto r = cluster_->runInPod("frontend", argv, seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  int ok = 0;
  int overflow = 0;
  for (const auto& [code, body] : responses(r.out)) {
    if (code == 200) ++ok;
    if (code == 503) ++overflow;
  }
  // (Parallel transfers may interleave bodies and codes: the bodies are counted as a whole.)
  EXPECT_EQ(static_cast<int>(countOf(r.out, "reset reason: overflow")), overflow) << r.out;
  std::cout << "circuit breaker e2e: " << ok << " x 200, " << overflow << " x 503 of 8\n";
  EXPECT_EQ(ok + overflow, 8) << r.out;
  EXPECT_GE(ok, 1) << r.out;
  EXPECT_LE(ok, 2) << r.out;
  EXPECT_GE(overflow, 6) << r.out;
  ASSERT_TRUE(waitFor(
      [&] { return !accessLines(waypoint_->output(), "response_flags=UO").empty(); }, seconds(5)))
      << waypoint_->output();
  for (const std::string& line : accessLines(waypoint_->output(), "response_flags=UO")) {
    EXPECT_NE(line.find("response_code=503"), std::string::npos) << line;
  }
  EXPECT_EQ(counter("nodemesh_waypoint_upstream_overflow_total"), overflow);
  // Below the limit again: served. maxRequestsPerConnection 1: each request on a new upstream
  // connection, none reused (the three come on one client connection, one after the other).
  auto stats = [&] {
    return nlohmann::json::parse(
        cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/stats"}).out, nullptr,
        false);
  };
  const int64_t connects_before = stats()["http1_upstream"].value("connects", int64_t{0});
  auto after = sequential(3);
  ASSERT_EQ(after.size(), 3u);
  for (const auto& [code, body] : after) EXPECT_EQ(code, 200) << body;
  const auto s = stats();
  EXPECT_EQ(s["http1_upstream"].value("reuses", int64_t{-1}), 0) << s.dump();
  EXPECT_EQ(s["http1_upstream"].value("connects", int64_t{0}) - connects_before, 3) << s.dump();
  EXPECT_EQ(s.value("upstream_overflow", int64_t{0}), overflow) << s.dump();
}

}  // namespace
}  // namespace nodemesh::sim
