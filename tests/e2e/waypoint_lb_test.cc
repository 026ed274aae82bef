// The waypoint balances requests with the node agents' load balancer (tunnel/lb): a slow
// endpoint gets few requests, one that fails is ejected, and a service's routing preferences
// keep requests on the waypoint's own node. The cart service has two endpoints: cart-v1 on
// node2 (the waypoint's node) and cart-v2 on node1.

#include <string>
#include <vector>

#include "tests/e2e/waypoint_fixture.h"

namespace nodemesh::sim {
namespace {

using std::chrono::seconds;

// An HTTP/1.1 server on 8080 that answers GET /who with its pod's name after `delay_ms`.
Process& whoServer(SimCluster& cluster, const std::string& pod, int delay_ms) {
  const std::string script =
      "import http.server, sys, time\n"
      "name, delay = sys.argv[1], int(sys.argv[2]) / 1000.0\n"
      "class H(http.server.BaseHTTPRequestHandler):\n"
      "    protocol_version = 'HTTP/1.1'\n"
      "    def do_GET(self):\n"
      "        time.sleep(delay)\n"
      "        body = (name + '\\n').encode()\n"
      "        self.send_response(200)\n"
      "        self.send_header('content-length', str(len(body)))\n"
      "        self.end_headers()\n"
      "        self.wfile.write(body)\n"
      "    def log_message(self, *a): pass\n"
      "http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()\n";
  return cluster.startInPod(pod, {"/usr/bin/python3", "-c", script, pod, std::to_string(delay_ms)});
}

class WaypointLbTest : public WaypointTest {
 protected:
  // Waits until the server in `pod` answers locally.
  void waitServing(const std::string& pod) {
    ASSERT_TRUE(waitFor(
        [&] {
          auto r = cluster_->runInPod(pod, {"curl", "-s", "http://127.0.0.1:8080/who"});
          return r.out == pod + "\n";
        },
        seconds(10)))
        << pod;
  }
};

// Peak-EWMA latency in the power of two choices: an endpoint that takes 60 ms per request gets
// a small share of sequential requests, where picking on requests in flight alone (always 0
// here) would give it half.
TEST_F(WaypointLbTest, SlowEndpointGetsFewRequests) {
  whoServer(*cluster_, "cart-v1", 0);
  whoServer(*cluster_, "cart-v2", 60);
  waitServing("cart-v1");
  waitServing("cart-v2");
  std::vector<std::string> argv = {"curl", "-sS", "--fail"};
  for (int i = 0; i < 200; ++i) argv.emplace_back("http://10.96.0.20:80/who");
  auto r = cluster_->runInPod("frontend", argv, seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.describe() << "\n" << waypoint_->output();
  const size_t fast = countOf(r.out, "cart-v1\n");
  const size_t slow = countOf(r.out, "cart-v2\n");
  EXPECT_EQ(fast + slow, 200u) << r.out;
  EXPECT_GE(slow, 1u) << "the slow endpoint is still tried now and then";
  EXPECT_LT(slow, 40u) << "fast " << fast << ", slow " << slow;
}

// An endpoint whose pod refuses the connection fails the requests sent to it, until three
// failures in a row eject it; each failed request is retried on the other endpoint (the default
// retry policy), so the client sees none of them.
TEST_F(WaypointLbTest, FailingEndpointIsEjectedAfterThreeFailures) {
  whoServer(*cluster_, "cart-v1", 0);
  waitServing("cart-v1");  // cart-v2 runs no server: its agent's connect to 8080 is refused
  std::vector<std::string> argv = {"curl", "-s", "-w", "code=%{http_code};\\n"};
  for (int i = 0; i < 60; ++i) argv.emplace_back("http://10.96.0.20:80/who");
  auto r = cluster_->runInPod("frontend", argv, seconds(60));
  EXPECT_EQ(countOf(r.out, "code=200;"), 60u) << r.out << "\n" << waypoint_->output();
  EXPECT_EQ(countOf(r.out, "cart-v1\n"), 60u) << r.out;
  // Three failures eject it for 5 s; the 60 requests take less than that.
  ASSERT_TRUE(waitFor([&] { return countOf(waypoint_->output(), "path=/who ") >= 60; }, seconds(5)))
      << waypoint_->output();
  const auto attempts = accessLines(waypoint_->output(), "upstream_attempts=2 ");
  EXPECT_GE(attempts.size(), 1u) << waypoint_->output();
  EXPECT_LE(attempts.size(), 3u) << waypoint_->output();
}

// A service whose load balancer prefers the node (ztunnel's routingPreferences: [Node]): the
// waypoint, on node2, sends every request to the endpoint on node2, as an agent there would.
class WaypointLocalityTest : public WaypointLbTest {
 protected:
  std::string meshConfig() override {
    std::string text = withWaypoint(testConfig());
    const std::string anchor = "  ports: {80: 8080}\n";
    text.insert(text.find(anchor) + anchor.size(),
                "  loadBalancer:\n    routingPreferences: [Node]\n    mode: Failover\n");
    return text;
  }
};

TEST_F(WaypointLocalityTest, RequestsStayOnTheWaypointsNode) {
  whoServer(*cluster_, "cart-v1", 0);
  whoServer(*cluster_, "cart-v2", 0);
  waitServing("cart-v1");
  waitServing("cart-v2");
  std::vector<std::string> argv = {"curl", "-sS", "--fail"};
  for (int i = 0; i < 40; ++i) argv.emplace_back("http://10.96.0.20:80/who");
  auto r = cluster_->runInPod("frontend", argv, seconds(30));
  ASSERT_EQ(r.exit_code, 0) << r.describe() << "\n" << waypoint_->output();
  EXPECT_EQ(countOf(r.out, "cart-v1\n"), 40u) << r.out;
}

}  // namespace
}  // namespace nodemesh::sim
