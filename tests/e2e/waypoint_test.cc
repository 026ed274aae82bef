// End-to-end tests of the waypoint on the two-node mesh: the cart service (VIP 10.96.0.20:80 ->
// 8080, endpoints cart-v1 on node2 and cart-v2 on node1) names a waypoint, nodemesh-waypoint
// running in its own pod (waypoint-0, node2, 10.244.2.9; not enrolled: the agents never
// capture it). What each hop saw is read from the agents' access logs.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>

#include "tests/e2e/waypoint_fixture.h"

namespace nodemesh::sim {
namespace {

// Traffic to a service with a waypoint goes through it: the client's agent sends it to the
// waypoint (CONNECT to the VIP), the waypoint picks an endpoint and connects with its own
// identity, so the destination's agent sees the waypoint as the client.
TEST_F(WaypointTest, ServiceTrafficGoesThroughTheWaypointWhichTheDestinationSees) {
  Process& v1 = serve("cart-v1", 8080, 0);
  Process& v2 = serve("cart-v2", 8080, 0);
  for (int i = 0; i < 4; ++i) {
    auto done = connect("frontend", kCartVip, 100000, 100000);
    EXPECT_EQ(done.value("error", "?"), "") << done.dump() << "\n" << waypoint_->output();
    EXPECT_EQ(done.value("received", 0), 100000) << done.dump();
  }
  // node1's agent: every connection to the VIP went to the waypoint.
  ASSERT_TRUE(
      waitFor([&] { return accessLines(agent1_->output(), kCartVip).size() >= 4; }, seconds(5)))
      << agent1_->output();
  for (const auto& line : accessLines(agent1_->output(), "service_addr=10.96.0.20:80")) {
    EXPECT_NE(line.find("waypoint=shop/waypoint-0"), std::string::npos) << line;
    EXPECT_NE(line.find(std::string("dst_identity=") + kWaypointIdentity), std::string::npos)
        << line;
  }
  // The endpoints' agents: the connections arrived from the waypoint, with its identity.
  const std::string from_waypoint_needle = std::string("src_identity=") + kWaypointIdentity;
  auto inbound_from_waypoint = [&] {
    std::vector<std::string> lines;
    for (const auto& line :
         accessLines(agent1_->output() + agent2_->output(), "direction=inbound")) {
      if (line.find(from_waypoint_needle) != std::string::npos) lines.push_back(line);
    }
    return lines;
  };
  EXPECT_TRUE(waitFor([&] { return inbound_from_waypoint().size() >= 4; }, seconds(5)))
      << agent1_->output() << agent2_->output();
  for (const auto& line : inbound_from_waypoint()) {
    EXPECT_NE(line.find("src=10.244.2.9:"), std::string::npos) << line;
  }
  // The servers saw the bytes (the waypoint passed them through).
  EXPECT_GE(countOf(v1.output() + v2.output(), "\"event\":\"conn\""), 4u);
}

// A pod addressed directly (it has no waypoint of its own) never goes through the waypoint.
TEST_F(WaypointTest, TrafficToAPodWithoutAWaypointDoesNotPassThroughIt) {
  serve("cart-v1", 8080, 1);
  auto done = connect("frontend", "10.244.2.20:8080", 1000, 1000);
  EXPECT_EQ(done.value("error", "?"), "") << done.dump();
  ASSERT_TRUE(waitFor(
      [&] { return !accessLines(agent2_->output(), "dst=10.244.2.20:8080").empty(); }, seconds(5)));
  for (const auto& line : accessLines(agent1_->output(), "10.244.2.20:8080")) {
    EXPECT_EQ(line.find("waypoint="), std::string::npos) << line;
  }
  for (const auto& line : accessLines(agent2_->output(), "dst=10.244.2.20:8080")) {
    EXPECT_NE(line.find(std::string("src_identity=") + kFrontendIdentity), std::string::npos)
        << line;
  }
  // The waypoint's own pod is not enrolled by its node's agent.
  EXPECT_EQ(agent2_->output().find("enrolled pod shop/waypoint-0"), std::string::npos);
}

// An HTTP server in `pod` on 8080 whose /who answers the pod's name (Python's http.server,
// HTTP/1.0 with Content-Length).
Process& httpServer(SimCluster& cluster, const std::string& pod) {
  const std::string dir = cluster.workDir() + "/www-" + pod;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/who") << pod << "\n";
  Process& p = cluster.startInPod(pod, {"/usr/bin/python3", "-m", "http.server", "8080", "--bind",
                                        "0.0.0.0", "--directory", dir});
  return p;
}

// HTTP/1.1 through the waypoint: curl in frontend asks the cart VIP; the waypoint parses each
// request and sends it to an endpoint, so requests on one kept-alive client connection are
// balanced over both endpoints.
TEST_F(WaypointTest, HttpRequestsAreParsedAndBalancedPerRequest) {
  httpServer(*cluster_, "cart-v1");
  httpServer(*cluster_, "cart-v2");
  ASSERT_TRUE(waitFor(
      [&] {
        auto r = cluster_->runInPod("cart-v1", {"curl", "-s", "http://127.0.0.1:8080/who"});
        auto r2 = cluster_->runInPod("cart-v2", {"curl", "-s", "http://127.0.0.1:8080/who"});
        return r.out == "cart-v1\n" && r2.out == "cart-v2\n";
      },
      seconds(10)));
  // 40 requests on one connection (curl reuses it for the URLs of one invocation).
  std::vector<std::string> argv = {"curl", "-sS", "--fail"};
  for (int i = 0; i < 40; ++i) argv.emplace_back("http://10.96.0.20:80/who");
  auto r = cluster_->runInPod("frontend", argv, seconds(30));
  ASSERT_EQ(r.exit_code, 0) << r.describe() << "\n" << r.out << "\n" << waypoint_->output();
  const size_t v1 = countOf(r.out, "cart-v1\n");
  const size_t v2 = countOf(r.out, "cart-v2\n");
  EXPECT_EQ(v1 + v2, 40u) << r.out;
  EXPECT_GE(v1, 5u) << r.out;  // per request, not per connection
  EXPECT_GE(v2, 5u) << r.out;
  // One client connection reached the waypoint: the node agent saw one (its access line comes
  // when the connection has closed, just after curl exits), the waypoint 40 requests on it.
  EXPECT_TRUE(
      waitFor([&] { return !accessLines(agent1_->output(), "service_addr=10.96.0.20:80").empty(); },
              seconds(5)));
  EXPECT_EQ(accessLines(agent1_->output(), "service_addr=10.96.0.20:80").size(), 1u)
      << agent1_->output();
  // A path the servers do not have: the endpoint's 404 comes back as it is.
  auto missing = cluster_->runInPod(
      "frontend",
      {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://10.96.0.20:80/nope"},
      seconds(10));
  EXPECT_EQ(missing.out, "404");
}

// An HTTP/1.1 server in `pod` on 8080 that answers every GET with the request's header fields,
// one "name: value" per line (what arrived at the backend).
Process& echoServer(SimCluster& cluster, const std::string& pod) {
  const std::string script =
      "import http.server\n"
      "class H(http.server.BaseHTTPRequestHandler):\n"
      "    protocol_version = 'HTTP/1.1'\n"
      "    def do_GET(self):\n"
      "        body = ''.join(f'{k.lower()}: {v}\\n' for k, v in self.headers.items()).encode()\n"
      "        self.send_response(200)\n"
      "        self.send_header('content-length', str(len(body)))\n"
      "        self.end_headers()\n"
      "        self.wfile.write(body)\n"
      "    def log_message(self, *a): pass\n"
      "http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()\n";
  return cluster.startInPod(pod, {"/usr/bin/python3", "-c", script});
}

// Must show 3: the backend gets the client's trace id with a new span id and an x-request-id;
// the waypoint's access log and Istio metrics name the original client's identity.
TEST_F(WaypointTest, TraceContextAccessLogAndMetricsNameTheClient) {
  echoServer(*cluster_, "cart-v1");
  echoServer(*cluster_, "cart-v2");
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string parent = "00f067aa0ba902b7";
  std::string out;
  ASSERT_TRUE(waitFor(
      [&] {
        auto r = cluster_->runInPod("frontend", {"curl", "-sS", "--fail", "-H",
                                                 "traceparent: 00-" + trace + "-" + parent + "-01",
                                                 "http://10.96.0.20:80/hello"});
        out = r.out;
        return r.exit_code == 0;
      },
      seconds(10)))
      << out << waypoint_->output();
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(out, m, std::regex("traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-01")))
      << out;
  EXPECT_EQ(m[1].str(), trace);
  EXPECT_NE(m[2].str(), parent);  // the waypoint's own span
  EXPECT_TRUE(std::regex_search(out, std::regex("x-request-id: [0-9a-f-]{36}"))) << out;

  // The access log line of that request, with the client's identity and the trace.
  // (Requests sent while the server was starting got 503: the one that reached it is the 200.)
  ASSERT_TRUE(waitFor(
      [&] {
        for (const auto& l : accessLines(waypoint_->output(), "path=/hello")) {
          if (l.find("response_code=200") != std::string::npos) return true;
        }
        return false;
      },
      seconds(5)))
      << waypoint_->output();
  std::string line;
  for (const auto& l : accessLines(waypoint_->output(), "path=/hello")) {
    if (l.find("response_code=200") != std::string::npos) line = l;
  }
  EXPECT_NE(line.find(std::string("src_identity=") + kFrontendIdentity), std::string::npos) << line;
  EXPECT_NE(line.find("trace_id=" + trace), std::string::npos) << line;
  EXPECT_NE(line.find("response_code=200"), std::string::npos) << line;

  // Istio's request metrics, reporter="waypoint", from the waypoint's /metrics.
  auto metrics = cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15020/metrics"});
  std::string series;
  std::istringstream in(metrics.out);
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("istio_requests_total{", 0) == 0 &&
        l.find("response_code=\"200\"") != std::string::npos) {
      series = l;
    }
  }
  ASSERT_FALSE(series.empty()) << metrics.out;
  EXPECT_NE(series.find("reporter=\"waypoint\""), std::string::npos) << series;
  EXPECT_NE(series.find(std::string("source_principal=\"") + kFrontendIdentity + "\""),
            std::string::npos)
      << series;
  EXPECT_NE(series.find("source_workload=\"frontend-7d9f\""), std::string::npos) << series;
  EXPECT_NE(series.find("response_code=\"200\""), std::string::npos) << series;
  EXPECT_NE(series.find("destination_service_name=\"cart\""), std::string::npos) << series;
}

// Sends `request` (Python escapes allowed) to the cart VIP from frontend, optionally waits,
// and returns the first line of what came back ("" when nothing did).
std::string rawExchange(SimCluster& cluster, const std::string& request, int pause_s = 0) {
  const std::string script =
      "import socket, sys, time\n"
      "s = socket.create_connection(('10.96.0.20', 80), timeout=20)\n"
      "s.sendall(" +
      request +
      ")\n"
      "time.sleep(" +
      std::to_string(pause_s) +
      ")\n"
      "data = b''\n"
      "try:\n"
      "    while b'\\r\\n' not in data:\n"
      "        chunk = s.recv(4096)\n"
      "        if not chunk: break\n"
      "        data += chunk\n"
      "except OSError as e:\n"
      "    print('error', e)\n"
      "print(data.split(b'\\r\\n')[0].decode(errors='replace'))\n";
  auto r = cluster.runInPod("frontend", {"/usr/bin/python3", "-c", script}, seconds(30));
  std::string out = r.out;
  while (!out.empty() && (out.back() == '\n')) out.pop_back();
  return out;
}

// Must show 5: malformed HTTP never reaches an application: request smuggling shapes get 400,
// oversized headers 431, a request that does not finish in time 408.
TEST_F(WaypointTest, MalformedRequestsAreAnsweredByTheWaypointAndNeverForwarded) {
  // A waypoint with a short request timeout (the default is 30 s).
  waypoint_->kill();
  waypoint_ = &cluster_->startInPod(
      "waypoint",
      {waypointPath(), "--config", config_path_, "--workload", "cluster1//v1/Pod/shop/waypoint-0",
       "--state-dir", cluster_->workDir() + "/ca", "--request-timeout-ms", "1000"});
  ASSERT_TRUE(waypoint_->waitForOutput("serving HBONE on", seconds(10))) << waypoint_->output();
  echoServer(*cluster_, "cart-v1");
  echoServer(*cluster_, "cart-v2");

  // Content-Length and Transfer-Encoding together (RFC 9112 6.3, the classic smuggling shape).
  EXPECT_EQ(rawExchange(*cluster_,
                        "b'POST / HTTP/1.1\\r\\nHost: cart\\r\\nContent-Length: 5\\r\\n"
                        "Transfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\nGET /x HTTP/1.1\\r\\n"
                        "Host: cart\\r\\n\\r\\n'"),
            "HTTP/1.1 400 Bad Request");
  // Two different Content-Lengths.
  EXPECT_EQ(rawExchange(*cluster_,
                        "b'POST / HTTP/1.1\\r\\nHost: cart\\r\\nContent-Length: 5\\r\\n"
                        "Content-Length: 6\\r\\n\\r\\nhello!'"),
            "HTTP/1.1 400 Bad Request");
  // Obsolete line folding.
  EXPECT_EQ(
      rawExchange(*cluster_, "b'GET / HTTP/1.1\\r\\nHost: cart\\r\\nX-A: 1\\r\\n 2\\r\\n\\r\\n'"),
      "HTTP/1.1 400 Bad Request");
  // A 70 KiB header section.
  EXPECT_EQ(rawExchange(*cluster_,
                        "b'GET / HTTP/1.1\\r\\nHost: cart\\r\\nX-Big: ' + b'a' * 70000 + "
                        "b'\\r\\n\\r\\n'"),
            "HTTP/1.1 431 Request Header Fields Too Large");
  // A head that never completes (slowloris): 408 once the request timeout passed. (A body
  // that stalls reaches the endpoint as it streams, as in Envoy; its endpoint may answer.)
  EXPECT_EQ(rawExchange(*cluster_, "b'GET / HTTP/1.1\\r\\nHost: cart\\r\\nX-Slow: 1\\r\\n'", 3),
            "HTTP/1.1 408 Request Timeout");

  // None of them reached an endpoint: no connection from the waypoint arrived anywhere.
  std::string inbound = agent1_->output() + agent2_->output();
  EXPECT_EQ(accessLines(inbound, std::string("src_identity=") + kWaypointIdentity).size(), 0u)
      << inbound;
  // And the waypoint still serves.
  auto ok = cluster_->runInPod("frontend", {"curl", "-sS", "--fail", "http://10.96.0.20:80/"},
                               seconds(10));
  EXPECT_EQ(ok.exit_code, 0) << ok.describe() << waypoint_->output();
}

// The routed mesh: services cart-v1 and cart-v2 (one endpoint each) and an HTTPRoute on cart
// that sends `x-user-group: beta` to v2 and splits the rest by `weights`.
std::string withRoutes(std::string text, int v1_weight, int v2_weight) {
  text = withCartVersions(std::move(text));
  text +=
      "httpRoutes:\n"
      "- apiVersion: gateway.networking.k8s.io/v1\n"
      "  kind: HTTPRoute\n"
      "  metadata: {name: cart-split, namespace: shop}\n"
      "  spec:\n"
      "    parentRefs: [{group: \"\", kind: Service, name: cart, port: 80}]\n"
      "    rules:\n"
      "    - matches: [{headers: [{name: x-user-group, value: beta}]}]\n"
      "      backendRefs: [{name: cart-v2, port: 80}]\n"
      "    - backendRefs:\n"
      "      - {name: cart-v1, port: 80, weight: " +
      std::to_string(v1_weight) +
      "}\n"
      "      - {name: cart-v2, port: 80, weight: " +
      std::to_string(v2_weight) + "}\n";
  return text;
}

class WaypointRoutingTest : public WaypointTest {
 protected:
  void SetUp() override {
    WaypointTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    rewrite(withRoutes(withWaypoint(testConfig()), 90, 10));
    httpServer(*cluster_, "cart-v1");
    httpServer(*cluster_, "cart-v2");
    ASSERT_TRUE(waitFor(
        [&] {
          auto r = cluster_->runInPod("cart-v1", {"curl", "-s", "http://127.0.0.1:8080/who"});
          auto r2 = cluster_->runInPod("cart-v2", {"curl", "-s", "http://127.0.0.1:8080/who"});
          return r.out == "cart-v1\n" && r2.out == "cart-v2\n";
        },
        seconds(10)));
  }

  // Replaces the config file the agents and the waypoint watch (atomically, as kubelet does)
  // and waits until the waypoint loaded it.
  void rewrite(const std::string& text) {
    // The config the waypoint started with is in force first (its loop logs it too).
    ASSERT_TRUE(waypoint_->waitForOutput("waypoint: config in force", seconds(10)));
    const size_t before = countOf(waypoint_->output(), "waypoint: config in force");
    const std::string tmp = cluster_->writeFile("mesh.yaml.tmp", text);
    std::filesystem::rename(tmp, config_path_);
    ASSERT_TRUE(
        waitFor([&] { return countOf(waypoint_->output(), "waypoint: config in force") > before; },
                seconds(10)))
        << waypoint_->output();
  }

  // `count` requests on one curl connection; the bodies, in order.
  std::vector<std::string> requests(int count, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {"curl", "-sS", "--fail"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    for (int i = 0; i < count; ++i) argv.emplace_back("http://10.96.0.20:80/who");
    auto r = cluster_->runInPod("frontend", argv, seconds(120));
    EXPECT_EQ(r.exit_code, 0) << r.describe() << "\n" << waypoint_->output();
    std::vector<std::string> who;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) who.push_back(line);
    return who;
  }
};

// Must show 1: 1,000 requests over a 90/10 route land 900+-50 / 100+-50; a header match sends
// every beta request to v2.
TEST_F(WaypointRoutingTest, WeightedSplitAndHeaderMatch) {
  auto who = requests(1000);
  ASSERT_EQ(who.size(), 1000u);
  const auto v1 = std::count(who.begin(), who.end(), "cart-v1");
  const auto v2 = std::count(who.begin(), who.end(), "cart-v2");
  std::printf("90/10 route: cart-v1 %ld, cart-v2 %ld of 1000\n", v1, v2);
  EXPECT_EQ(v1 + v2, 1000);
  EXPECT_NEAR(v1, 900, 50);
  EXPECT_NEAR(v2, 100, 50);

  auto beta = requests(100, {"-H", "x-user-group: beta"});
  ASSERT_EQ(beta.size(), 100u);
  EXPECT_EQ(std::count(beta.begin(), beta.end(), "cart-v2"), 100);
}

// Must show 1: changing the weights in the file shifts the split without failing a request in
// flight (curl exits non-zero on the first failure).
TEST_F(WaypointRoutingTest, ChangingTheWeightsShiftsTheSplitWithoutDroppingARequest) {
  std::vector<std::string> argv = {"curl", "-sS", "--fail"};
  for (int i = 0; i < 3000; ++i) argv.emplace_back("http://10.96.0.20:80/who");
  Process& client = cluster_->startInPod("frontend", argv);
  ASSERT_TRUE(waitFor([&] { return countOf(client.output(), "cart-") >= 300; }, seconds(60)));
  rewrite(withRoutes(withWaypoint(testConfig()), 50, 50));
  const size_t switched_at = countOf(client.output(), "cart-");
  auto status = client.waitExit(seconds(180));
  ASSERT_TRUE(status.has_value()) << client.output();
  EXPECT_EQ(*status, 0) << waypoint_->output();
  std::vector<std::string> who;
  std::istringstream in(client.output());
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("cart-", 0) == 0) who.push_back(line);
  }
  ASSERT_EQ(who.size(), 3000u);
  // After the reload (a margin of 50 requests for the ones in flight), about half go to v2.
  ASSERT_LT(switched_at + 50, who.size());
  const auto after = std::count(who.begin() + static_cast<long>(switched_at) + 50, who.end(),
                                std::string("cart-v2"));
  const double share =
      static_cast<double>(after) / static_cast<double>(who.size() - switched_at - 50);
  std::printf("after the change to 50/50: %.1f%% to cart-v2 (reload after %zu requests)\n",
              share * 100, switched_at);
  EXPECT_NEAR(share, 0.5, 0.1);
}

}  // namespace
}  // namespace nodemesh::sim
