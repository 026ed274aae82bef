// End-to-end tests of the waypoint's retries (docs/waypoint.md, "Retries"): curl in frontend
// calls the cart service (cart-v1 on node2, cart-v2 on node1) through the node agents and the
// waypoint; both pods run tests/e2e/scripts/flaky_server.py, and cart-v2 answers every other
// GET /flaky with 503.
// - With the default policy (Istio's: 2 retries on 503, to an endpoint not tried yet) and the
//   default budget, the client sees no failure: every 503 is retried, on cart-v1.
// - With the budget set low (10% of requests, no minimum) the retries stay within it and the
//   client sees exactly the 503s it did not retry.
// - A rule's GEP-1731 retry (codes [500], attempts 1) retries 500 once and no longer 503; a
//   POST with a body is never retried; retries that run out flag URX.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <map>
#include <regex>
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
    - name: retry-500
      matches: [{path: {type: PathPrefix, value: /fail500}}]
      backendRefs: [{name: cart, port: 80}]
      retry: {codes: [500], attempts: 1, backoff: 10ms}
    - name: default
      backendRefs: [{name: cart, port: 80}]
)";

class WaypointRetryTest : public WaypointTest {
 protected:
  std::string meshConfig() override { return withWaypoint(testConfig()) + kRetryRoute; }

  void startServers() {
    for (const char* pod : {"cart-v1", "cart-v2"}) {
      std::vector<std::string> env;
      if (std::string(pod) == "cart-v2") env.emplace_back("FLAKY=1");
      servers_[pod] =
          &cluster_->startInPod(pod, {"/usr/bin/python3", e2eScript("flaky_server.py"), pod}, env);
    }
    waitPodsServing({"cart-v1", "cart-v2"});
    if (HasFatalFailure()) return;
    // Through the mesh once (not counted: the counters are read as differences).
    ASSERT_TRUE(waitFor(
        [&] {
          auto r = cluster_->runInPod("frontend", {"curl", "-s", "http://10.96.0.20:80/who"});
          return r.out.find("cart-v") == 0;
        },
        seconds(10)));
  }

  std::map<std::string, Process*> servers_;

  // The pod's server's counters: (served, failed).
  std::pair<int, int> podStats(const std::string& pod) {
    auto r = cluster_->runInPod(pod, {"curl", "-s", "http://127.0.0.1:8080/stats"});
    std::smatch m;
    if (!std::regex_search(r.out, m, std::regex(R"(served=(\d+) failed=(\d+))"))) return {-1, -1};
    return {std::stoi(m[1]), std::stoi(m[2])};
  }

  // The waypoint's /stats "retries" object, once its tick published what happened before.
  nlohmann::json retryStats() {
    std::this_thread::sleep_for(milliseconds(300));
    auto j = nlohmann::json::parse(
        cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/stats"}).out, nullptr,
        false);
    return j.is_object() ? j.value("retries", nlohmann::json::object()) : nlohmann::json{};
  }
  static int64_t field(const nlohmann::json& j, const char* name) {
    return j.is_object() ? j.value(name, int64_t{-1}) : -1;
  }

  // `n` sequential GETs of `path` (one curl, kept alive): the status codes in order.
  std::vector<int> codes(const std::string& path, int n) {
    std::vector<std::string> argv = {"curl", "-s", "-w", "%{http_code}\\n"};
    for (int i = 0; i < n; ++i) {  // -o is per URL
      argv.insert(argv.end(), {"-o", "/dev/null", "http://10.96.0.20:80" + path});
    }
    auto r = cluster_->runInPod("frontend", argv, seconds(120));
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    std::vector<int> out;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
      int code = 0;
      std::from_chars(line.data(), line.data() + line.size(), code);
      out.push_back(code);
    }
    return out;
  }

  // Access log lines of the waypoint for `path` (waits until `n` are there).
  std::vector<std::string> logLines(const std::string& path, size_t n) {
    const std::string needle = "path=" + path + " ";
    waitFor([&] { return accessLines(waypoint_->output(), needle).size() >= n; }, seconds(5));
    return accessLines(waypoint_->output(), needle);
  }
};

TEST_F(WaypointRetryTest, AFlakyEndpointIsHiddenByRetriesToTheOtherOne) {
  startServers();
  if (HasFatalFailure()) return;
  const auto v1_before = podStats("cart-v1");
  const auto v2_before = podStats("cart-v2");
  const auto before = retryStats();

  constexpr int kRequests = 200;
  const std::vector<int> got = codes("/flaky", kRequests);
  ASSERT_EQ(got.size(), static_cast<size_t>(kRequests));
  const auto ok = std::count(got.begin(), got.end(), 200);

  const auto v1 = podStats("cart-v1");
  const auto v2 = podStats("cart-v2");
  const auto after = retryStats();
  const int v2_failed = v2.second - v2_before.second;
  const int v2_served = v2.first - v2_before.first;
  const int v1_served = v1.first - v1_before.first;
  const int64_t retries = field(after, "on_status") - field(before, "on_status");
  std::cout << "retry e2e (default budget): " << ok << " of " << kRequests << " succeeded; cart-v2 "
            << "answered " << v2_served << " (" << v2_failed << " x 503), cart-v1 " << v1_served
            << "; " << retries << " retries\n";
  // The client sees at least 99% success (every 503 was retried: 100% here).
  EXPECT_GE(ok, kRequests * 99 / 100) << waypoint_->output();
  EXPECT_EQ(ok, kRequests);
  EXPECT_GE(v2_failed, 10) << "cart-v2 got its share and failed half of it";
  // Each 503 was retried once, within the budget (20% of requests + 10/s).
  EXPECT_EQ(retries, v2_failed) << after.dump();
  EXPECT_LE(retries, kRequests / 5 + 100);
  EXPECT_EQ(field(after, "budget_exhausted"), field(before, "budget_exhausted"));
  // ... on the endpoint not tried yet: every request cart-v2 failed went on to cart-v1.
  EXPECT_EQ(v1_served + v2_served, kRequests + v2_failed);
  const auto lines = logLines("/flaky", kRequests);
  size_t retried = 0;
  for (const std::string& line : lines) {
    if (line.find("upstream_attempts=2 ") == std::string::npos) continue;
    ++retried;
    EXPECT_NE(line.find("response_code=200 "), std::string::npos) << line;
    EXPECT_NE(line.find("dst_workload=shop/cart-v1"), std::string::npos) << line;
  }
  EXPECT_EQ(retried, static_cast<size_t>(v2_failed));
  const std::string metrics =
      cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15020/metrics"}).out;
  EXPECT_TRUE(std::regex_search(
      metrics, std::regex(R"(nodemesh_waypoint_retries_total\{cause="status"\} [1-9])")))
      << metrics;
}

TEST_F(WaypointRetryTest, ALowBudgetLetsTheClientSeeTheFailuresItDidNotRetry) {
  startWaypoint({"--retry-budget-ratio", "0.1", "--retry-budget-min-per-second", "0"});
  if (HasFatalFailure()) return;
  startServers();
  if (HasFatalFailure()) return;
  const auto v2_before = podStats("cart-v2");
  const auto before = retryStats();

  constexpr int kRequests = 200;
  const std::vector<int> got = codes("/flaky", kRequests);
  ASSERT_EQ(got.size(), static_cast<size_t>(kRequests));
  const auto ok = std::count(got.begin(), got.end(), 200);
  const auto unavailable = std::count(got.begin(), got.end(), 503);

  const auto v2 = podStats("cart-v2");
  const auto after = retryStats();
  const int v2_failed = v2.second - v2_before.second;
  const int64_t retries = field(after, "on_status") - field(before, "on_status");
  const int64_t refused = field(after, "budget_exhausted") - field(before, "budget_exhausted");
  std::cout << "retry e2e (budget 10%, no minimum): " << ok << " x 200, " << unavailable
            << " x 503 of " << kRequests << "; cart-v2 failed " << v2_failed << ", " << retries
            << " retried, " << refused << " refused by the budget\n";
  EXPECT_EQ(ok + unavailable, kRequests);
  EXPECT_GE(v2_failed, 10);
  // Within the budget: at most 10% of the requests (one more for the one in hand).
  EXPECT_LE(retries, kRequests / 10 + 1);
  EXPECT_GE(retries, 1);
  // The client saw exactly the 503s that were not retried.
  EXPECT_EQ(unavailable, v2_failed - retries);
  EXPECT_EQ(refused, unavailable);
}

TEST_F(WaypointRetryTest, TheRulesRetryPolicyAndWhatIsNeverRetried) {
  startServers();
  if (HasFatalFailure()) return;
  // retry {codes: [500], attempts: 1}: one retry, then the 500 goes to the client, flagged URX.
  const auto before = retryStats();
  const std::vector<int> failing = codes("/fail500", 3);
  EXPECT_EQ(failing, (std::vector<int>{500, 500, 500}));
  auto lines = logLines("/fail500", 3);
  ASSERT_EQ(lines.size(), 3u) << waypoint_->output();
  for (const std::string& line : lines) {
    EXPECT_NE(line.find("upstream_attempts=2 "), std::string::npos) << line;
    EXPECT_NE(line.find("response_flags=URX "), std::string::npos) << line;
    EXPECT_NE(line.find("shop/cart-retry rule 0 (retry-500)"), std::string::npos) << line;
  }
  // The default rule: 503 is retried twice (three attempts); a POST with a body never is.
  EXPECT_EQ(codes("/fail503", 1), std::vector<int>{503});
  auto post = cluster_->runInPod(
      "frontend", {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-d",
                   "order=1", "http://10.96.0.20:80/fail503?post"});
  EXPECT_EQ(post.out, "503") << post.describe();
  lines = logLines("/fail503", 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("upstream_attempts=3 "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("response_flags=URX "), std::string::npos) << lines[0];
  lines = logLines("/fail503?post", 1);
  ASSERT_EQ(lines.size(), 1u) << waypoint_->output();
  EXPECT_NE(lines[0].find("upstream_attempts=1 "), std::string::npos) << lines[0];
  // An idempotent PUT is, with its body sent again each time (up to 64 KiB kept); a larger one
  // is not.
  const std::string small(4000, 'x');
  const std::string large(100 * 1024, 'y');
  for (const auto& [query, body] : std::vector<std::pair<std::string, std::string>>{
           {"?put-small", small}, {"?put-large", large}}) {
    const std::string file = cluster_->writeFile("body" + query.substr(1), body);
    auto put = cluster_->runInPod(
        "frontend", {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                     "--data-binary", "@" + file, "http://10.96.0.20:80/fail503" + query});
    EXPECT_EQ(put.out, "503") << put.describe();
  }
  lines = logLines("/fail503?put-small", 1);
  ASSERT_EQ(lines.size(), 1u) << waypoint_->output();
  EXPECT_NE(lines[0].find("upstream_attempts=3 "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("bytes_received=4000 "), std::string::npos) << lines[0];
  lines = logLines("/fail503?put-large", 1);
  ASSERT_EQ(lines.size(), 1u) << waypoint_->output();
  EXPECT_NE(lines[0].find("upstream_attempts=1 "), std::string::npos) << lines[0];
  const auto after = retryStats();
  EXPECT_EQ(field(after, "on_status") - field(before, "on_status"), 3 + 2 + 2);
  EXPECT_EQ(field(after, "limit_exceeded") - field(before, "limit_exceeded"), 3 + 1 + 1);
  // The rule's policy is in the waypoint's /routes.
  const std::string routes =
      cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/routes"}).out;
  EXPECT_NE(routes.find(R"("attempts": 1,)"), std::string::npos) << routes;
  EXPECT_NE(routes.find(R"("backoffMs": 10,)"), std::string::npos) << routes;
}

// A pod whose server is down: its agent refuses the CONNECT, so nothing of the request reached
// an application and even a POST with a body is retried, on the other endpoint.
TEST_F(WaypointRetryTest, ARequestThatNeverReachedThePodIsRetriedWhateverItsMethod) {
  startServers();
  if (HasFatalFailure()) return;
  servers_.at("cart-v2")->kill();
  ASSERT_TRUE(waitFor(
      [&] {
        return cluster_->runInPod("cart-v2", {"ss", "-Hltn", "sport = :8080"}).out.empty();
      },
      seconds(5)));
  std::vector<std::string> argv = {"curl", "-s", "-w", "code=%{http_code}\\n"};
  for (int i = 0; i < 20; ++i) {
    argv.insert(argv.end(),
                {"-X", "POST", "-d", "order=" + std::to_string(i), "http://10.96.0.20:80/order"});
  }
  auto r = cluster_->runInPod("frontend", argv, seconds(60));
  EXPECT_EQ(countOf(r.out, "cart-v1\ncode=200"), 20u) << r.describe() << waypoint_->output();
  const auto lines = logLines("/order", 20);
  size_t retried = 0;
  for (const std::string& line : lines) {
    if (line.find("upstream_attempts=2 ") == std::string::npos) continue;
    ++retried;
    EXPECT_NE(line.find("method=POST "), std::string::npos) << line;
    EXPECT_NE(line.find("response_code=200 "), std::string::npos) << line;
  }
  // The load balancer tried cart-v2 at least once before ejecting it (3 failures).
  EXPECT_GE(retried, 1u) << waypoint_->output();
  EXPECT_LE(retried, 3u) << waypoint_->output();
}

}  // namespace
}  // namespace nodemesh::sim
