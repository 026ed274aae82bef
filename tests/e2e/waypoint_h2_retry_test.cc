// End-to-end tests of the waypoint's retries for HTTP/2 requests (docs/waypoint.md, "HTTP/2"):
// h2load and curl --http2-prior-knowledge in frontend call the cart service (cart-v1 on node2,
// cart-v2 on node1) through the node agents and the waypoint, whose upstreams speak HTTP/2 to
// tests/e2e/scripts/h2_server.py in both pods; cart-v2 runs it with FLAKY=1, so it answers every
// other /flaky with 503 and every other /flaky-grpc with a trailers-only grpc-status 14.
// - With the default policy (Istio's: 2 retries on 503, to an endpoint not tried yet), the
//   HTTP/2 client sees no failure: every 503 is retried, on cart-v1.
// - A POST with a body is not retried once it reached the pod, and is when it never did (the
//   pod's server down); a GET that keeps failing is tried three times and flagged URX; a rule's
//   GEP-1731 retry (attempts 1) bounds it to two.
// - A gRPC request answered UNAVAILABLE in a trailers-only response is retried.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/waypoint_fixture.h"

namespace nodemesh::sim {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kRetryRoute = R"(httpRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: cart-retry, namespace: shop}
  spec:
    parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
    rules:
    - name: retry-once
      matches: [{headers: [{name: x-retry, value: once}]}]
      backendRefs: [{name: cart, port: 80}]
      retry: {codes: [503], attempts: 1, backoff: 10ms}
    - name: default
      backendRefs: [{name: cart, port: 80}]
)";

// Lines of `text` equal to `line`, or (`prefix`) starting with it.
size_t countLines(const std::string& text, const std::string& line, bool prefix = false) {
  size_t n = 0;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    n += (prefix ? l.rfind(line, 0) == 0 : l == line) ? 1 : 0;
  }
  return n;
}

class WaypointH2RetryTest : public WaypointTest {
 protected:
  std::string meshConfig() override { return withWaypoint(testConfig()) + kRetryRoute; }

  // h2_server.py in both cart pods (cart-v2 flaky), and one HTTP/2 request through the mesh.
  void startServers() {
    for (const char* pod : {"cart-v1", "cart-v2"}) {
      std::vector<std::string> env;
      if (std::string(pod) == "cart-v2") env.emplace_back("FLAKY=1");
      Process& p = cluster_->startInPod(
          pod, {"/usr/bin/python3", e2eScript("h2_server.py"), pod, "8080", "0"}, env);
      ASSERT_TRUE(p.waitForOutput("listening", seconds(10))) << p.output();
      (std::string(pod) == "cart-v1" ? v1_ : v2_) = &p;
    }
    ASSERT_TRUE(waypoint_->waitForOutput("waypoint: config in force", seconds(10)));
    // The first request may race the agents' and the waypoint's start.
    CommandResult r;
    ASSERT_TRUE(waitFor(
        [&] {
          r = curl("/who");
          return r.out == "200";
        },
        seconds(15)))
        << r.describe() << "\n"
        << waypoint_->output();
  }

  // One request with curl --http2-prior-knowledge from frontend (one per invocation, as in
  // waypoint_h2_test.cc); prints the status code.
  CommandResult curl(const std::string& path, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {
        "curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(std::string("http://") + kCartVip + path);
    return cluster_->runInPod("frontend", argv, seconds(30));
  }

  // The waypoint's /stats "retries" object (published on its tick).
  nlohmann::json retryStats() {
    auto j = nlohmann::json::parse(
        cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/stats"}).out, nullptr,
        false);
    return j.is_object() ? j.value("retries", nlohmann::json::object()) : nlohmann::json{};
  }
  static int64_t field(const nlohmann::json& j, const char* name) {
    return j.is_object() ? j.value(name, int64_t{-1}) : -1;
  }
  // Waits until the counter `name` grew by `delta` since `before` (the stats lag a tick).
  bool retryCounterGrew(const nlohmann::json& before, const char* name, int64_t delta,
                        nlohmann::json& after) {
    return waitFor(
        [&] {
          after = retryStats();
          return field(after, name) - field(before, name) == delta;
        },
        seconds(5));
  }

  // Access log lines of the waypoint for `path` (waits until `n` are there).
  std::vector<std::string> logLines(const std::string& path, size_t n) {
    const std::string needle = "path=" + path + " ";
    waitFor([&] { return accessLines(waypoint_->output(), needle).size() >= n; }, seconds(5));
    return accessLines(waypoint_->output(), needle);
  }

  Process* v1_ = nullptr;
  Process* v2_ = nullptr;
};

// (1) One endpoint answers every other request 503: the HTTP/2 client sees only 200s, each 503
// was retried once, on the other endpoint.
TEST_F(WaypointH2RetryTest, AFlakyEndpointIsHiddenFromHttp2ClientsByRetries) {
  startServers();
  if (HasFatalFailure()) return;
  const auto before = retryStats();

  constexpr int kRequests = 200;
  // h2load: 2 client connections, 4 streams at once on each.
  auto load = cluster_->runInPod("frontend",
                                 {"h2load", "-n", std::to_string(kRequests), "-c", "2", "-m", "4",
                                  std::string("http://") + kCartVip + "/flaky"},
                                 seconds(120));
  ASSERT_EQ(load.exit_code, 0) << load.describe() << "\n" << load.out;
  EXPECT_NE(load.out.find("status codes: 200 2xx, 0 3xx, 0 4xx, 0 5xx"), std::string::npos)
      << load.out << waypoint_->output();

  const size_t v2_failed = countLines(v2_->output(), "failed /flaky");
  const size_t v2_served = countLines(v2_->output(), "req /flaky ", /*prefix=*/true);
  const size_t v1_served = countLines(v1_->output(), "req /flaky ", /*prefix=*/true);
  EXPECT_EQ(countLines(v1_->output(), "failed /flaky"), 0u);
  nlohmann::json after;
  EXPECT_TRUE(retryCounterGrew(before, "on_status", static_cast<int64_t>(v2_failed), after))
      << "retried " << field(after, "on_status") - field(before, "on_status") << ", cart-v2 failed "
      << v2_failed;
  std::cout << "HTTP/2 retry e2e: cart-v2 answered " << v2_served << " (" << v2_failed
            << " x 503), cart-v1 " << v1_served << "\n";
  EXPECT_GE(v2_failed, 10u) << "cart-v2 got its share and failed half of it";
  // Every request cart-v2 failed went on to cart-v1, within the budget.
  EXPECT_EQ(v1_served + v2_served, kRequests + v2_failed);
  EXPECT_EQ(field(after, "budget_exhausted"), field(before, "budget_exhausted"));
  EXPECT_EQ(field(after, "limit_exceeded"), field(before, "limit_exceeded"));

  const auto lines = logLines("/flaky", kRequests);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kRequests));
  size_t retried = 0;
  for (const std::string& line : lines) {
    EXPECT_NE(line.find("protocol=HTTP/2"), std::string::npos) << line;
    EXPECT_NE(line.find("response_code=200 "), std::string::npos) << line;
    if (line.find("upstream_attempts=2 ") == std::string::npos) {
      EXPECT_NE(line.find("upstream_attempts=1 "), std::string::npos) << line;
      continue;
    }
    ++retried;
    EXPECT_NE(line.find("dst_workload=shop/cart-v1"), std::string::npos) << line;
    EXPECT_NE(line.find("response_flags=- "), std::string::npos) << line;
  }
  EXPECT_EQ(retried, v2_failed);
}

// (2) What is not retried, and how far a failing GET goes: the default's 2 retries, a rule's 1.
TEST_F(WaypointH2RetryTest, APostWithABodyIsNotRetriedAndAFailingGetRunsOutOfAttempts) {
  startServers();
  if (HasFatalFailure()) return;
  const auto before = retryStats();

  auto post = curl("/fail503?post", {"-d", "order=1"});
  EXPECT_EQ(post.out, "503") << post.describe();
  auto lines = logLines("/fail503?post", 1);
  ASSERT_EQ(lines.size(), 1u) << waypoint_->output();
  EXPECT_NE(lines[0].find("upstream_attempts=1 "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("response_flags=- "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("method=POST"), std::string::npos) << lines[0];

  // The default policy: three attempts (both endpoints, then either), then the 503 goes out.
  auto get = curl("/fail503");
  EXPECT_EQ(get.out, "503") << get.describe();
  lines = logLines("/fail503", 1);
  ASSERT_EQ(lines.size(), 1u) << waypoint_->output();
  EXPECT_NE(lines[0].find("upstream_attempts=3 "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("response_flags=URX "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("response_code=503 "), std::string::npos) << lines[0];
  // Each endpoint got one of the first two attempts (an endpoint not tried yet first).
  const size_t v1_failed = countLines(v1_->output(), "failed /fail503");
  const size_t v2_failed = countLines(v2_->output(), "failed /fail503");
  EXPECT_EQ(countLines(v1_->output(), "failed /fail503?post") +
                countLines(v2_->output(), "failed /fail503?post"),
            1u);
  EXPECT_EQ(v1_failed + v2_failed, 3u);
  EXPECT_GE(v1_failed, 1u);
  EXPECT_GE(v2_failed, 1u);

  // The rule's retry {codes: [503], attempts: 1}: two attempts.
  auto once = curl("/fail503?once", {"-H", "x-retry: once"});
  EXPECT_EQ(once.out, "503") << once.describe();
  lines = logLines("/fail503?once", 1);
  ASSERT_EQ(lines.size(), 1u) << waypoint_->output();
  EXPECT_NE(lines[0].find("upstream_attempts=2 "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("response_flags=URX "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("shop/cart-retry rule 0 (retry-once)"), std::string::npos) << lines[0];

  nlohmann::json after;
  EXPECT_TRUE(retryCounterGrew(before, "limit_exceeded", 2, after)) << after.dump();
  EXPECT_EQ(field(after, "on_status") - field(before, "on_status"), 2 + 1) << after.dump();
  EXPECT_EQ(field(after, "on_failure"), field(before, "on_failure")) << after.dump();
}

// A pod whose server is down: its agent refuses the CONNECT of the HTTP/2 upstream, so nothing
// of the request reached an application and even a POST with a body is retried, on the other
// endpoint.
TEST_F(WaypointH2RetryTest, ARequestThatNeverReachedThePodIsRetriedWhateverItsMethod) {
  startServers();
  if (HasFatalFailure()) return;
  v2_->kill();
  ASSERT_TRUE(waitFor(
      [&] {
        return cluster_->runInPod("cart-v2", {"ss", "-Hltn", "sport = :8080"}).out.empty();
      },
      seconds(5)));
  constexpr int kPosts = 20;
  auto r =
      cluster_->runInPod("frontend",
                         {"sh", "-c",
                          "for i in $(seq " + std::to_string(kPosts) +
                              "); do curl -sS --http2-prior-knowledge -d order=$i -o /dev/null "
                              "-w '%{http_code}\\n' http://" +
                              kCartVip + "/order || exit 1; done"},
                         seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(countLines(r.out, "200"), static_cast<size_t>(kPosts)) << r.out << waypoint_->output();
  const auto lines = logLines("/order", kPosts);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kPosts)) << waypoint_->output();
  size_t retried = 0;
  for (const std::string& line : lines) {
    EXPECT_NE(line.find("method=POST "), std::string::npos) << line;
    EXPECT_NE(line.find("response_code=200 "), std::string::npos) << line;
    EXPECT_NE(line.find("dst_workload=shop/cart-v1"), std::string::npos) << line;
    if (line.find("upstream_attempts=2 ") != std::string::npos) ++retried;
  }
  std::cout << "HTTP/2 retry e2e: " << retried << " of " << kPosts
            << " POSTs retried after cart-v2's agent refused them\n";
  EXPECT_GE(retried, 1u) << "cart-v2 was picked first for some of them";
}

// (3) gRPC: a trailers-only response with grpc-status 14 (UNAVAILABLE) is retried like a 503 (a
// bodyless call: one with a body is a POST, which is not retried).
TEST_F(WaypointH2RetryTest, AGrpcUnavailableTrailersOnlyAnswerIsRetried) {
  startServers();
  if (HasFatalFailure()) return;
  const auto before = retryStats();

  constexpr int kCalls = 20;
  const std::string url = std::string("http://") + kCartVip + "/flaky-grpc";
  auto r = cluster_->runInPod(
      "frontend",
      {"sh", "-c",
       "for i in $(seq " + std::to_string(kCalls) +
           "); do curl -sS --http2-prior-knowledge -X POST -H 'content-type: application/grpc' "
           "-H 'te: trailers' -o /dev/null -w '%{http_code}\\n' " +
           url + " || exit 1; done"},
      seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(countLines(r.out, "200"), static_cast<size_t>(kCalls)) << r.out;

  const size_t v2_failed = countLines(v2_->output(), "failed /flaky-grpc");
  EXPECT_GE(v2_failed, 1u) << "cart-v2 got some of the calls and failed half of them";
  const auto lines = logLines("/flaky-grpc", kCalls);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kCalls)) << waypoint_->output();
  size_t retried = 0;
  for (const std::string& line : lines) {
    // Every call ended with the successful endpoint's status; none saw UNAVAILABLE.
    EXPECT_NE(line.find("grpc_status=0"), std::string::npos) << line;
    if (line.find("upstream_attempts=2 ") == std::string::npos) continue;
    ++retried;
    EXPECT_NE(line.find("dst_workload=shop/cart-v1"), std::string::npos) << line;
  }
  std::cout << "HTTP/2 retry e2e: " << retried << " of " << kCalls
            << " gRPC calls retried after UNAVAILABLE\n";
  EXPECT_EQ(retried, v2_failed);
  nlohmann::json after;
  EXPECT_TRUE(retryCounterGrew(before, "on_status", static_cast<int64_t>(v2_failed), after))
      << after.dump();
}

}  // namespace
}  // namespace nodemesh::sim
