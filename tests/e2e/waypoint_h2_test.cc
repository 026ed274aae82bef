// End-to-end tests of HTTP/2 and gRPC through the waypoint (waypoint_fixture.h): real clients
// (curl --http2-prior-knowledge, h2load, Python grpcio) in frontend ask the cart VIP; the
// waypoint parses HTTP/2, routes each request and sends it on over multiplexed HTTP/2 upstreams
// to Python servers (python3-h2, grpcio) in the cart pods.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <regex>

#include "tests/e2e/waypoint_fixture.h"

namespace nodemesh::sim {
namespace {

// Lines of `text` that start with `prefix`.
std::vector<std::string> linesStartingWith(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  }
  return out;
}

class WaypointH2Test : public WaypointTest {
 protected:
  // tests/e2e/scripts/h2_server.py in `pod` on 8080 (a GOAWAY after `goaway_every` requests
  // on a connection when not 0); waits until it listens.
  Process& h2Server(const std::string& pod, int goaway_every = 0) {
    Process& p = cluster_->startInPod(pod, {"/usr/bin/python3", e2eScript("h2_server.py"), pod,
                                            "8080", std::to_string(goaway_every)});
    EXPECT_TRUE(p.waitForOutput("listening", seconds(10))) << p.output();
    return p;
  }

  // One request with curl --http2-prior-knowledge from frontend (one per invocation: curl
  // 7.88's reuse of a prior-knowledge connection is broken, curl/curl#10634); prints the body
  // and then the HTTP version.
  CommandResult curlH2(const std::string& path = "/who") {
    return cluster_->runInPod("frontend",
                              {"curl", "-sS", "--fail", "--http2-prior-knowledge", "-w",
                               "%{http_version}", std::string("http://") + kCartVip + path},
                              seconds(30));
  }

  // Runs grpc_app.py client in frontend: `count` calls of `method` to the cart VIP.
  std::vector<std::string> calls(const std::string& method, int count) {
    auto r = cluster_->runInPod("frontend",
                                {"/usr/bin/python3", e2eScript("grpc_app.py"), "client", kCartVip,
                                 method, std::to_string(count)},
                                seconds(60));
    EXPECT_EQ(r.exit_code, 0) << r.describe() << "\n" << r.out;
    std::vector<std::string> out;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  // The waypoint's /stats (a copy its loop publishes on each tick).
  nlohmann::json stats() {
    auto r = cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/stats"});
    return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  }

  // h2load from frontend: `n` requests to `path` over `clients` connections, `streams` at once
  // on each.
  CommandResult h2load(int n, int clients, int streams, const std::string& path) {
    return cluster_->runInPod(
        "frontend",
        {"h2load", "-n", std::to_string(n), "-c", std::to_string(clients), "-m",
         std::to_string(streams), std::string("http://") + kCartVip + path},
        seconds(120));
  }
};

// (i) curl and h2load over HTTP/2 get 200s; requests on one client connection are balanced over
// both endpoints, and the upstreams are multiplexed: far fewer upstream connections than requests.
TEST_F(WaypointH2Test, Http2RequestsAreRoutedBalancedPerRequestAndMultiplexed) {
  Process& v1 = h2Server("cart-v1");
  Process& v2 = h2Server("cart-v2");

  // The first request may race the agents' and the waypoint's start (as in waypoint_test.cc).
  CommandResult r;
  ASSERT_TRUE(waitFor(
      [&] {
        r = curlH2();
        return r.exit_code == 0;
      },
      seconds(10)))
      << r.describe() << "\n"
      << r.out << "\n"
      << waypoint_->output();
  EXPECT_TRUE(r.out == "cart-v1\n2" || r.out == "cart-v2\n2") << r.out;

  // 40 requests one after the other on one client connection.
  auto seq = h2load(40, 1, 1, "/seq");
  ASSERT_EQ(seq.exit_code, 0) << seq.describe() << "\n" << seq.out;
  EXPECT_NE(seq.out.find("status codes: 40 2xx"), std::string::npos) << seq.out;
  const size_t seq_v1 = linesStartingWith(v1.output(), "req /seq").size();
  const size_t seq_v2 = linesStartingWith(v2.output(), "req /seq").size();
  EXPECT_EQ(seq_v1 + seq_v2, 40u);
  EXPECT_GE(seq_v1, 5u) << seq_v1 << "/" << seq_v2;  // per request, not per connection
  EXPECT_GE(seq_v2, 5u) << seq_v1 << "/" << seq_v2;

  // h2load: 2 clients, 10 concurrent streams each.
  auto load = h2load(600, 2, 10, "/load");
  ASSERT_EQ(load.exit_code, 0) << load.describe() << "\n" << load.out;
  EXPECT_NE(load.out.find("600 succeeded"), std::string::npos) << load.out << waypoint_->output();
  EXPECT_NE(load.out.find("status codes: 600 2xx"), std::string::npos) << load.out;

  const size_t load_v1 = linesStartingWith(v1.output(), "req /load").size();
  const size_t load_v2 = linesStartingWith(v2.output(), "req /load").size();
  EXPECT_EQ(load_v1 + load_v2, 600u);
  EXPECT_GE(load_v1, 150u) << load_v1 << "/" << load_v2;
  EXPECT_GE(load_v2, 150u) << load_v1 << "/" << load_v2;
  // Multiplexed: 641 requests, up to 20 at once, reached the endpoints on a few connections.
  const size_t conns =
      linesStartingWith(v1.output(), "conn").size() + linesStartingWith(v2.output(), "conn").size();
  EXPECT_GE(conns, 2u);
  EXPECT_LE(conns, 8u) << v1.output() << v2.output();

  // The waypoint's access log: one line per request, as HTTP/2.
  ASSERT_TRUE(waitFor([&] { return accessLines(waypoint_->output(), "path=/load").size() >= 600; },
                      seconds(5)));
  const auto lines = accessLines(waypoint_->output(), "path=/who");
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines.front().find("protocol=HTTP/2"), std::string::npos) << lines.front();
  EXPECT_NE(lines.front().find("response_code=200"), std::string::npos) << lines.front();
  EXPECT_NE(lines.front().find(std::string("src_identity=") + kFrontendIdentity), std::string::npos)
      << lines.front();
}

// Endpoints that end their connections with GOAWAY every 25 requests: the requests they did not
// process (above the GOAWAY's last stream id) are sent again on a new connection, so the client
// sees no failure.
TEST_F(WaypointH2Test, RequestsAnUpstreamDidNotProcessAreRetriedOnANewConnection) {
  Process& v1 = h2Server("cart-v1", 25);
  Process& v2 = h2Server("cart-v2", 25);
  CommandResult load;
  ASSERT_TRUE(waitFor(
      [&] {
        load = h2load(1, 1, 1, "/warmup");
        return load.out.find("status codes: 1 2xx") != std::string::npos;
      },
      seconds(10)))
      << load.out;
  load = h2load(500, 2, 10, "/load");
  EXPECT_NE(load.out.find("status codes: 500 2xx"), std::string::npos)
      << load.out << waypoint_->output();
  const size_t goaways = countOf(v1.output(), "goaway\n") + countOf(v2.output(), "goaway\n");
  EXPECT_GE(goaways, 15u);
  // The waypoint counted them (its stats reach /metrics once a second).
  std::string metrics;
  auto retries = [&] {
    metrics = cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15020/metrics"}).out;
    std::smatch m;
    std::regex re("nodemesh_waypoint_h2_upstream_retries_total (\\d+)");
    return std::regex_search(metrics, m, re) ? std::stoul(m[1].str()) : 0;
  };
  EXPECT_TRUE(waitFor([&] { return retries() > 0; }, seconds(5))) << metrics;
  std::printf("upstream GOAWAYs: %zu, requests retried: %lu\n", goaways, retries());
}

// Bodies larger than every window on the way (the client's, the waypoint's 1 MiB stream window,
// the Python server's 64 KiB) arrive whole both ways: back-pressure, not loss or a stall.
TEST_F(WaypointH2Test, LargeBodiesFlowBothWaysUnderFlowControl) {
  h2Server("cart-v1");
  h2Server("cart-v2");
  CommandResult down;
  ASSERT_TRUE(waitFor(
      [&] {
        down = cluster_->runInPod("frontend",
                                  {"curl", "-sS", "--fail", "--http2-prior-knowledge", "-o",
                                   "/dev/null", "-w", "%{size_download} %{http_version}",
                                   std::string("http://") + kCartVip + "/big/8000000"},
                                  seconds(60));
        return down.exit_code == 0;
      },
      seconds(10)))
      << down.describe() << "\n"
      << waypoint_->output();
  EXPECT_EQ(down.out, "8000000 2");
  const std::string upload = cluster_->writeFile("upload.bin", std::string(6 * 1024 * 1024, 'u'));
  auto up = cluster_->runInPod("frontend",
                               {"curl", "-sS", "--fail", "--http2-prior-knowledge", "--data-binary",
                                "@" + upload, std::string("http://") + kCartVip + "/size"},
                               seconds(60));
  EXPECT_EQ(up.exit_code, 0) << up.describe() << "\n" << waypoint_->output();
  EXPECT_EQ(up.out, std::to_string(6 * 1024 * 1024) + "\n");
}

// A GRPCRoute on cart: shop.Cart/Get goes to cart-v1, shop.Cart/Put to cart-v2; nothing else
// matches.
std::string withGrpcRoutes(std::string text) {
  text = withCartVersions(std::move(text));
  text +=
      "grpcRoutes:\n"
      "- apiVersion: gateway.networking.k8s.io/v1\n"
      "  kind: GRPCRoute\n"
      "  metadata: {name: cart-grpc, namespace: shop}\n"
      "  spec:\n"
      "    parentRefs: [{group: \"\", kind: Service, name: cart, port: 80}]\n"
      "    rules:\n"
      "    - matches: [{method: {service: shop.Cart, method: Get}}]\n"
      "      backendRefs: [{name: cart-v1, port: 80}]\n"
      "    - matches: [{method: {service: shop.Cart, method: Put}}]\n"
      "      backendRefs: [{name: cart-v2, port: 80}]\n";
  return text;
}

class WaypointGrpcTest : public WaypointH2Test {
 protected:
  std::string meshConfig() override { return withGrpcRoutes(withWaypoint(testConfig())); }
};

// (ii) gRPC is routed by method with a real grpcio client and server; a call no route matches
// gets UNIMPLEMENTED from the waypoint itself (its 404, mapped to gRPC).
TEST_F(WaypointGrpcTest, GrpcCallsAreRoutedByMethodAndAnUnroutedMethodIsUnimplemented) {
  Process& v1 = cluster_->startInPod(
      "cart-v1", {"/usr/bin/python3", e2eScript("grpc_app.py"), "server", "cart-v1", "8080"});
  Process& v2 = cluster_->startInPod(
      "cart-v2", {"/usr/bin/python3", e2eScript("grpc_app.py"), "server", "cart-v2", "8080"});
  ASSERT_TRUE(v1.waitForOutput("listening", seconds(10))) << v1.output();
  ASSERT_TRUE(v2.waitForOutput("listening", seconds(10))) << v2.output();

  auto get = calls("/shop.Cart/Get", 20);
  ASSERT_EQ(get.size(), 20u) << waypoint_->output();
  EXPECT_EQ(std::count(get.begin(), get.end(), "ok cart-v1 Get"), 20) << get.front();
  auto put = calls("/shop.Cart/Put", 20);
  ASSERT_EQ(put.size(), 20u);
  EXPECT_EQ(std::count(put.begin(), put.end(), "ok cart-v2 Put"), 20) << put.front();
  // Both servers have Missing: only the route decides, and none matches it.
  auto missing = calls("/shop.Cart/Missing", 3);
  ASSERT_EQ(missing.size(), 3u);
  for (const auto& line : missing) EXPECT_EQ(line.rfind("error UNIMPLEMENTED", 0), 0u) << line;

  // Telemetry: gRPC status per call, HTTP/2, the GRPCRoute that served it.
  ASSERT_TRUE(waitFor(
      [&] { return accessLines(waypoint_->output(), "path=/shop.Cart/Missing").size() >= 3; },
      seconds(5)));
  const auto ok_lines = accessLines(waypoint_->output(), "path=/shop.Cart/Get");
  ASSERT_EQ(ok_lines.size(), 20u);
  EXPECT_NE(ok_lines.front().find("protocol=HTTP/2"), std::string::npos) << ok_lines.front();
  EXPECT_NE(ok_lines.front().find("grpc_status=0"), std::string::npos) << ok_lines.front();
  const auto nr = accessLines(waypoint_->output(), "path=/shop.Cart/Missing").front();
  EXPECT_NE(nr.find("grpc_status=12"), std::string::npos) << nr;
  EXPECT_NE(nr.find("response_flags=NR"), std::string::npos) << nr;
  auto metrics = cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15020/metrics"});
  bool grpc_series = false;
  for (const auto& l : linesStartingWith(metrics.out, "istio_requests_total{")) {
    if (l.find("request_protocol=\"grpc\"") != std::string::npos &&
        l.find("grpc_response_status=\"12\"") != std::string::npos) {
      grpc_series = true;
    }
  }
  EXPECT_TRUE(grpc_series) << metrics.out;
}

// (iii) HTTP/2 abuse through the waypoint: rapid reset and a CONTINUATION flood end the
// client's connection with GOAWAY ENHANCE_YOUR_CALM, and the waypoint keeps serving.
TEST_F(WaypointH2Test, FloodsEndWithGoawayAndTheWaypointKeepsServing) {
  h2Server("cart-v1");
  h2Server("cart-v2");
  auto abuse = [&](const std::string& mode, int count) {
    auto r = cluster_->runInPod("frontend",
                                {"/usr/bin/python3", e2eScript("h2_abuse.py"), "10.96.0.20", "80",
                                 mode, std::to_string(count)},
                                seconds(60));
    std::string out = r.out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  };
  EXPECT_EQ(abuse("rapid_reset", 500), "goaway 11") << waypoint_->output();
  EXPECT_EQ(abuse("continuation", 40), "goaway 11") << waypoint_->output();
  auto r = curlH2();
  EXPECT_EQ(r.exit_code, 0) << r.describe() << "\n" << waypoint_->output();
  EXPECT_TRUE(r.out == "cart-v1\n2" || r.out == "cart-v2\n2") << r.out;
  auto load = h2load(100, 1, 10, "/after");
  EXPECT_NE(load.out.find("status codes: 100 2xx"), std::string::npos) << load.out;
}

// A request whose body never comes (HEADERS without END_STREAM, then nothing): once the
// waypoint's request timeout passed it answers 408 and ends the stream (RST_STREAM NO_ERROR);
// a gRPC call gets a trailers-only response with the status gRPC maps 408 to (UNKNOWN), as
// Envoy's request_timeout gives.
TEST_F(WaypointH2Test, AnIncompleteRequestGets408AfterTheRequestTimeout) {
  startWaypoint({"--request-timeout-ms", "1000"});
  h2Server("cart-v1");
  h2Server("cart-v2");
  CommandResult ok;
  ASSERT_TRUE(waitFor(
      [&] {
        ok = curlH2();
        return ok.exit_code == 0;
      },
      seconds(10)))
      << ok.describe() << "\n"
      << waypoint_->output();
  auto incomplete = [&](const std::string& mode) {
    return cluster_
        ->runInPod("frontend",
                   {"/usr/bin/python3", e2eScript("h2_incomplete.py"), "10.96.0.20", "80", mode},
                   seconds(30))
        .out;
  };
  const std::string http = incomplete("http");
  EXPECT_NE(http.find("status 408\n"), std::string::npos) << http << waypoint_->output();
  EXPECT_NE(http.find("rst 0\n"), std::string::npos) << http;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(http, m, std::regex("elapsed ([0-9.]+)"))) << http;
  EXPECT_GE(std::stod(m[1].str()), 0.9) << http;  // not before the timeout
  EXPECT_LT(std::stod(m[1].str()), 5.0) << http;
  const std::string grpc = incomplete("grpc");
  EXPECT_NE(grpc.find("status 200\ngrpc-status 2\nend\n"), std::string::npos)
      << grpc << waypoint_->output();
  // The access log names the cause: SI (stream idle timeout, as for HTTP/1.1's 408).
  ASSERT_TRUE(waitFor([&] { return !accessLines(waypoint_->output(), "path=/upload").empty(); },
                      seconds(5)));
  const auto line = accessLines(waypoint_->output(), "path=/upload").front();
  EXPECT_NE(line.find("response_code=408"), std::string::npos) << line;
  EXPECT_NE(line.find("response_flags=SI"), std::string::npos) << line;
}

// HTTPRoutes on cart for HTTP/2 and gRPC clients: a mirror, and route timeouts (gRPC calls are
// routed by HTTPRoutes when no GRPCRoute attaches; GRPCRoute v1 has no timeouts).
constexpr const char* kH2Routes = R"(httpRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: cart-h2, namespace: shop}
  spec:
    parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
    rules:
    - name: mirror
      matches: [{path: {type: PathPrefix, value: /mirror}}]
      filters:
      - type: RequestMirror
        requestMirror: {backendRef: {name: cart-v2, port: 80}}
      backendRefs: [{name: cart-v1, port: 80}]
    - name: slow
      matches: [{path: {type: PathPrefix, value: /slow}}]
      timeouts: {request: 1s}
      backendRefs: [{name: cart-v1, port: 80}]
    - name: stall
      matches: [{path: {type: PathPrefix, value: /stall}}]
      timeouts: {request: 1s}
      backendRefs: [{name: cart-v1, port: 80}]
    - name: slow-backend
      matches: [{path: {type: PathPrefix, value: /slowbe}}]
      timeouts: {request: 20s, backendRequest: 500ms}
      backendRefs: [{name: cart-v1, port: 80}]
    - name: grpc-slow
      matches: [{path: {type: Exact, value: /shop.Cart/Slow}}]
      timeouts: {request: 1s}
      backendRefs: [{name: cart-v1, port: 80}]
    - name: default
      backendRefs: [{name: cart-v1, port: 80}]
)";

class WaypointH2RoutesTest : public WaypointH2Test {
 protected:
  std::string meshConfig() override {
    return withCartVersions(withWaypoint(testConfig())) + kH2Routes;
  }

  // curl --http2-prior-knowledge from frontend to `path` on the cart VIP with `extra` options.
  CommandResult curl(const std::string& path, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {"curl", "-sS", "--http2-prior-knowledge"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(std::string("http://") + kCartVip + path);
    return cluster_->runInPod("frontend", argv, seconds(30));
  }
};

// RequestMirror over HTTP/2: the mirror backend gets the copy (":authority" with "-shadow", the
// body) while the client gets the primary's answer; a body over 64 KiB cancels the copy and a
// mirror backend that is down changes nothing for the client.
TEST_F(WaypointH2RoutesTest, Http2RequestMirrorCopiesTheRequestWithAShadowAuthority) {
  Process& v1 = h2Server("cart-v1");
  Process& v2 = h2Server("cart-v2");
  CommandResult r;
  ASSERT_TRUE(waitFor(
      [&] {
        r = curl("/mirror/a", {"--fail", "-d", "hello-mirror"});
        return r.exit_code == 0;
      },
      seconds(10)))
      << r.describe() << "\n"
      << waypoint_->output();
  EXPECT_EQ(r.out, "cart-v1\n");  // the primary's answer
  ASSERT_TRUE(
      waitFor([&] { return v2.output().find("req /mirror/a ") != std::string::npos; }, seconds(5)))
      << v2.output() << waypoint_->output();
  EXPECT_NE(v2.output().find("req /mirror/a authority=10.96.0.20-shadow body=12\n"),
            std::string::npos)
      << v2.output();
  EXPECT_NE(v1.output().find("req /mirror/a authority=10.96.0.20 body=12\n"), std::string::npos)
      << v1.output();

  // 100 KiB: the client's request goes whole to cart-v1, the mirror is cancelled.
  const std::string upload = cluster_->writeFile("mirror.bin", std::string(100 * 1024, 'm'));
  auto big = curl("/mirror/big", {"--fail", "--data-binary", "@" + upload});
  EXPECT_EQ(big.out, "cart-v1\n") << big.describe();
  EXPECT_NE(v1.output().find("req /mirror/big authority=10.96.0.20 body=102400\n"),
            std::string::npos)
      << v1.output();

  // The mirror backend down: the client does not notice.
  v2.kill();
  for (int i = 0; i < 3; ++i) {
    auto again = curl("/mirror/c", {"-o", "/dev/null", "-w", "%{http_code}"});
    EXPECT_EQ(again.out, "200") << again.describe() << waypoint_->output();
  }
  EXPECT_EQ(v2.output().find("req /mirror/big"), std::string::npos) << v2.output();
  // The mirror counters HTTP/1.1 uses.
  EXPECT_TRUE(waitFor(
      [&] {
        auto s = stats();
        return s["mirrors"]["cancelled"] == 1 && s["mirrors"]["failed"] == 3 &&
               s["mirrors"]["started"] >= 5;
      },
      seconds(3)))
      << stats().dump();
}

// Route timeouts over HTTP/2: past `request` (or `backendRequest`) before the response started
// the client gets 504 (flag UT) and the upstream stream is reset; after it started, both streams
// are reset.
TEST_F(WaypointH2RoutesTest, Http2RouteTimeoutsAnswer504AndCancelTheUpstream) {
  Process& v1 = h2Server("cart-v1");
  h2Server("cart-v2");
  CommandResult r;
  ASSERT_TRUE(waitFor(
      [&] {
        r = curlH2("/who");
        return r.exit_code == 0;
      },
      seconds(10)))
      << r.describe() << "\n"
      << waypoint_->output();
  const auto start = std::chrono::steady_clock::now();
  auto slow = curl("/slow", {"-o", "/dev/null", "-w", "%{http_code} %{http_version}"});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(slow.out, "504 2") << slow.describe() << waypoint_->output();
  EXPECT_LT(took, seconds(3)) << "the backend answers after 3 s";
  auto be = curl("/slowbe", {"-o", "/dev/null", "-w", "%{http_code}"});
  EXPECT_EQ(be.out, "504") << be.describe();
  // The endpoint saw both requests cancelled.
  EXPECT_TRUE(waitFor([&] { return countOf(v1.output(), "reset ") >= 2; }, seconds(3)))
      << v1.output();
  ASSERT_TRUE(waitFor([&] { return !accessLines(waypoint_->output(), "path=/slowbe").empty(); },
                      seconds(5)));
  const auto line = accessLines(waypoint_->output(), "path=/slow ").at(0);
  EXPECT_NE(line.find("response_flags=UT"), std::string::npos) << line;
  EXPECT_NE(line.find("protocol=HTTP/2"), std::string::npos) << line;
  EXPECT_TRUE(waitFor([&] { return stats()["route_timeouts"] == 2; }, seconds(3)))
      << stats().dump();

  // Past the timeout after the response started: the client's stream is reset (curl: 92, the
  // HTTP/2 stream was not closed cleanly) with only the first part of the body, and the
  // upstream's too.
  const size_t resets = countOf(v1.output(), "reset ");
  auto stall = curl("/stall", {"-w", "\n%{http_code}"});
  EXPECT_EQ(stall.exit_code, 92) << stall.describe() << waypoint_->output();
  EXPECT_EQ(stall.out, "first\n\n200") << stall.out;
  EXPECT_TRUE(waitFor([&] { return countOf(v1.output(), "reset ") > resets; }, seconds(3)))
      << v1.output();
  EXPECT_TRUE(waitFor([&] { return stats()["route_timeouts"] == 3; }, seconds(3)))
      << stats().dump();
}

// A gRPC call (grpcio client) past its route's request timeout ends with DEADLINE_EXCEEDED
// from the waypoint, before the slow method answers; other calls are unaffected.
TEST_F(WaypointH2RoutesTest, GrpcCallPastItsRouteTimeoutGetsDeadlineExceeded) {
  Process& v1 = cluster_->startInPod(
      "cart-v1", {"/usr/bin/python3", e2eScript("grpc_app.py"), "server", "cart-v1", "8080"});
  ASSERT_TRUE(v1.waitForOutput("listening", seconds(10))) << v1.output();
  std::vector<std::string> get;
  ASSERT_TRUE(waitFor(
      [&] {
        get = calls("/shop.Cart/Get", 1);
        return get.size() == 1 && get[0] == "ok cart-v1 Get";
      },
      seconds(10)))
      << (get.empty() ? "" : get[0]) << waypoint_->output();
  const auto start = std::chrono::steady_clock::now();
  auto slow = calls("/shop.Cart/Slow", 1);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(slow.size(), 1u);
  EXPECT_EQ(slow[0], "error DEADLINE_EXCEEDED upstream request timeout") << waypoint_->output();
  EXPECT_LT(took, seconds(3)) << "the method answers after 3 s";
  ASSERT_TRUE(
      waitFor([&] { return !accessLines(waypoint_->output(), "path=/shop.Cart/Slow").empty(); },
              seconds(5)));
  const auto line = accessLines(waypoint_->output(), "path=/shop.Cart/Slow").front();
  EXPECT_NE(line.find("grpc_status=4"), std::string::npos) << line;
  EXPECT_NE(line.find("response_flags=UT"), std::string::npos) << line;
}

}  // namespace
}  // namespace nodemesh::sim
