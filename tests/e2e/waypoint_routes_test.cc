// End-to-end tests of the waypoint's HTTPRoute matches and filters, route timeouts, mirrors and
// upstream keep-alive, each with curl as the client in frontend, through the node agents and
// the waypoint, to Python HTTP/1.1 servers in cart-v1 and cart-v2 that answer with what they
// received (their pod, method, path and header fields) and log each request on stdout.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <regex>
#include <thread>

#include "tests/e2e/waypoint_fixture.h"

namespace nodemesh::sim {
namespace {

// One HTTPRoute on cart with a rule per feature, told apart by path.
constexpr const char* kRoutes = R"(httpRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: cart-routes, namespace: shop}
  spec:
    parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
    rules:
    - name: exact
      matches: [{path: {type: Exact, value: /exact}}]
      backendRefs: [{name: cart-v2, port: 80}]
    - name: prefix
      matches: [{path: {type: PathPrefix, value: /exact}}]
      backendRefs: [{name: cart-v1, port: 80}]
    - name: regex
      matches: [{path: {type: RegularExpression, value: "/re/[0-9]+"}}]
      backendRefs: [{name: cart-v2, port: 80}]
    - name: header
      matches: [{path: {type: PathPrefix, value: /hdr}, headers: [{name: x-test, value: "yes"}]}]
      backendRefs: [{name: cart-v2, port: 80}]
    - name: query
      matches: [{path: {type: PathPrefix, value: /q}, queryParams: [{name: color, value: blue}]}]
      backendRefs: [{name: cart-v2, port: 80}]
    - name: method
      matches: [{path: {type: PathPrefix, value: /m}, method: POST}]
      backendRefs: [{name: cart-v2, port: 80}]
    - name: reqmod
      matches: [{path: {type: PathPrefix, value: /reqmod}}]
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: x-set, value: s1}]
          add: [{name: x-add, value: a1}]
          remove: [x-remove]
      backendRefs: [{name: cart-v1, port: 80}]
    - name: respmod
      matches: [{path: {type: PathPrefix, value: /respmod}}]
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier:
          set: [{name: x-resp, value: r1}]
          remove: [x-drop-me]
      backendRefs: [{name: cart-v1, port: 80}]
    - name: redirect
      matches: [{path: {type: PathPrefix, value: /redirect}}]
      filters:
      - type: RequestRedirect
        requestRedirect: {hostname: example.com, statusCode: 301}
    - name: rewrite-prefix
      matches: [{path: {type: PathPrefix, value: /old}}]
      filters:
      - type: URLRewrite
        urlRewrite:
          hostname: rewritten.example
          path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
      backendRefs: [{name: cart-v1, port: 80}]
    - name: rewrite-full
      matches: [{path: {type: PathPrefix, value: /full}}]
      filters:
      - type: URLRewrite
        urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /replaced}}
      backendRefs: [{name: cart-v1, port: 80}]
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
    - name: slow-backend
      matches: [{path: {type: PathPrefix, value: /slowbe}}]
      timeouts: {request: 20s, backendRequest: 500ms}
      backendRefs: [{name: cart-v1, port: 80}]
    - name: default
      backendRefs: [{name: cart-v1, port: 80}]
)";

// Answers every request with what arrived ("pod=", "method=", "path=", "body=" lines, then the
// header fields as "name: value"), HTTP/1.1 keep-alive; paths under /slow answer after 3 s and
// responses carry x-drop-me. Logs "REQ <pod> <method> <path> host=<host>" first.
Process& echoServer(SimCluster& cluster, const std::string& pod) {
  const std::string script = R"(import http.server, sys, time
POD = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    # Head and body are two writes: without TCP_NODELAY the body waits for the delayed ACK of
    # the head (40 ms) on every kept-alive connection, as no real server lets it.
    disable_nagle_algorithm = True
    def answer(self):
        n = int(self.headers.get('content-length') or 0)
        data = self.rfile.read(n) if n else b''
        print(f'REQ {POD} {self.command} {self.path} host={self.headers.get("host")}', flush=True)
        if self.path.startswith('/slow'):
            time.sleep(3)
        lines = [f'pod={POD}', f'method={self.command}', f'path={self.path}', f'body={len(data)}']
        lines += [f'{k.lower()}: {v}' for k, v in self.headers.items()]
        body = ('\n'.join(lines) + '\n').encode()
        self.send_response(200)
        self.send_header('content-length', str(len(body)))
        self.send_header('x-drop-me', 'still-here')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()
)";
  return cluster.startInPod(pod, {"/usr/bin/python3", "-c", script, pod});
}

class WaypointRoutesTest : public WaypointTest {
 protected:
  std::string meshConfig() override {
    return withCartVersions(withWaypoint(testConfig())) + kRoutes;
  }

  void SetUp() override {
    WaypointTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    v1_ = &echoServer(*cluster_, "cart-v1");
    v2_ = &echoServer(*cluster_, "cart-v2");
    ASSERT_TRUE(waitFor(
        [&] {
          auto r = cluster_->runInPod("cart-v1", {"curl", "-s", "http://127.0.0.1:8080/"});
          auto r2 = cluster_->runInPod("cart-v2", {"curl", "-s", "http://127.0.0.1:8080/"});
          return r.out.rfind("pod=cart-v1", 0) == 0 && r2.out.rfind("pod=cart-v2", 0) == 0;
        },
        seconds(10)));
    // The routes loaded, and the path through the agents works (capture follows pods within
    // a second or so).
    ASSERT_TRUE(waypoint_->waitForOutput("waypoint: config in force", seconds(10)));
    ASSERT_TRUE(waitFor([&] { return curl("/").exit_code == 0 && curl("/exact").exit_code == 0; },
                        seconds(15)))
        << waypoint_->output();
  }

  // curl from frontend to the cart VIP with `args` before the URL; its output.
  CommandResult curl(const std::string& path, const std::vector<std::string>& args = {}) {
    std::vector<std::string> argv = {"curl", "-sS", "--max-time", "20"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("http://10.96.0.20:80" + path);
    return cluster_->runInPod("frontend", argv, seconds(30));
  }

  // The pod that served `path` (the echo's first line), "" when the request failed.
  std::string servedBy(const std::string& path, const std::vector<std::string>& args = {}) {
    auto r = curl(path, args);
    EXPECT_EQ(r.exit_code, 0) << path << ": " << r.describe() << "\n" << waypoint_->output();
    static const std::regex kPod("^pod=(\\S+)");
    std::smatch m;
    return std::regex_search(r.out, m, kPod) ? m[1].str() : "";
  }

  // The waypoint's /stats (admin, 127.0.0.1:15000 in its pod).
  nlohmann::json stats() {
    auto r = cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/stats"});
    return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  }

  Process* v1_ = nullptr;
  Process* v2_ = nullptr;
};

bool hasLine(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST_F(WaypointRoutesTest, PathExactBeatsPrefix) {
  EXPECT_EQ(servedBy("/exact"), "cart-v2");
  EXPECT_EQ(servedBy("/exact/more"), "cart-v1");  // only the prefix rule matches
  EXPECT_EQ(servedBy("/exactly"), "cart-v1");     // neither: a prefix matches whole elements
}

TEST_F(WaypointRoutesTest, PathRegularExpression) {
  EXPECT_EQ(servedBy("/re/123"), "cart-v2");
  EXPECT_EQ(servedBy("/re/abc"), "cart-v1");  // not matching: the default rule
}

TEST_F(WaypointRoutesTest, HeaderMatch) {
  EXPECT_EQ(servedBy("/hdr", {"-H", "x-test: yes"}), "cart-v2");
  EXPECT_EQ(servedBy("/hdr", {"-H", "x-test: no"}), "cart-v1");
  EXPECT_EQ(servedBy("/hdr"), "cart-v1");
}

TEST_F(WaypointRoutesTest, QueryParamMatch) {
  EXPECT_EQ(servedBy("/q?color=blue"), "cart-v2");
  EXPECT_EQ(servedBy("/q?size=1&color=blue"), "cart-v2");
  EXPECT_EQ(servedBy("/q?color=red"), "cart-v1");
}

TEST_F(WaypointRoutesTest, MethodMatch) {
  EXPECT_EQ(servedBy("/m", {"-X", "POST", "-d", "x=1"}), "cart-v2");
  EXPECT_EQ(servedBy("/m"), "cart-v1");  // GET
}

TEST_F(WaypointRoutesTest, RequestHeaderModifierSetsAddsAndRemoves) {
  auto r = curl("/reqmod", {"-H", "x-set: original", "-H", "x-add: original", "-H",
                            "x-remove: gone", "-H", "x-keep: kept"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(hasLine(r.out, "x-set: s1")) << r.out;
  EXPECT_EQ(r.out.find("x-set: original"), std::string::npos) << r.out;
  EXPECT_TRUE(hasLine(r.out, "x-add: original")) << r.out;
  EXPECT_TRUE(hasLine(r.out, "x-add: a1")) << r.out;
  EXPECT_EQ(r.out.find("x-remove"), std::string::npos) << r.out;
  EXPECT_TRUE(hasLine(r.out, "x-keep: kept")) << r.out;
}

TEST_F(WaypointRoutesTest, ResponseHeaderModifierReachesTheClient) {
  auto r = curl("/respmod", {"-D", "-", "-o", "/dev/null"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("x-resp: r1\r\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("x-drop-me"), std::string::npos) << r.out;
  // Another route's response keeps the backend's field.
  auto other = curl("/", {"-D", "-", "-o", "/dev/null"});
  EXPECT_NE(other.out.find("x-drop-me: still-here"), std::string::npos) << other.out;
}

TEST_F(WaypointRoutesTest, RequestRedirect) {
  auto r = curl("/redirect/x?y=1", {"-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "301 http://example.com/redirect/x?y=1");
  // Answered by the waypoint: no backend saw it.
  EXPECT_EQ(v1_->output().find("/redirect"), std::string::npos) << v1_->output();
  EXPECT_EQ(v2_->output().find("/redirect"), std::string::npos) << v2_->output();
}

TEST_F(WaypointRoutesTest, UrlRewriteHostnameAndPaths) {
  auto r = curl("/old/page?x=1");
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(hasLine(r.out, "path=/new/page?x=1")) << r.out;
  EXPECT_TRUE(hasLine(r.out, "host: rewritten.example")) << r.out;
  auto full = curl("/full/any/thing");
  ASSERT_EQ(full.exit_code, 0) << full.describe();
  EXPECT_TRUE(hasLine(full.out, "path=/replaced")) << full.out;
  EXPECT_TRUE(hasLine(full.out, "host: 10.96.0.20")) << full.out;  // not rewritten
}

TEST_F(WaypointRoutesTest, RequestMirrorCopiesTheRequestWithoutAffectingTheClient) {
  auto r = curl("/mirror/a", {"-X", "POST", "-d", "hello-mirror"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(hasLine(r.out, "pod=cart-v1")) << r.out;  // the client's answer: the backend's
  EXPECT_TRUE(hasLine(r.out, "body=12")) << r.out;
  // The mirror backend got the copy, with "-shadow" on its host, and the body.
  ASSERT_TRUE(
      waitFor([&] { return v2_->output().find("REQ cart-v2 POST /mirror/a") != std::string::npos; },
              seconds(5)))
      << v2_->output() << waypoint_->output();
  EXPECT_NE(v2_->output().find("REQ cart-v2 POST /mirror/a host=10.96.0.20-shadow"),
            std::string::npos)
      << v2_->output();
  EXPECT_NE(v1_->output().find("REQ cart-v1 POST /mirror/a host=10.96.0.20\n"), std::string::npos)
      << v1_->output();
  // A mirror that fails (its backend is down) changes nothing for the client.
  v2_->kill();
  ASSERT_TRUE(waitFor(
      [&] {
        return cluster_->runInPod("cart-v2", {"curl", "-s", "http://127.0.0.1:8080/"}).exit_code !=
               0;
      },
      seconds(5)));
  for (int i = 0; i < 3; ++i) {
    auto again = curl("/mirror/b", {"-o", "/dev/null", "-w", "%{http_code}"});
    EXPECT_EQ(again.out, "200") << again.describe() << waypoint_->output();
  }
  EXPECT_TRUE(waitFor(
      [&] {
        auto s = stats();
        return s["mirrors"]["started"] == 4 && s["mirrors"]["failed"] == 3;
      },
      seconds(2)))
      << stats().dump();
}

TEST_F(WaypointRoutesTest, RequestTimeoutAnswers504) {
  const auto start = std::chrono::steady_clock::now();
  auto r = curl("/slow", {"-o", "/dev/null", "-w", "%{http_code}"});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.out, "504") << r.describe() << waypoint_->output();
  EXPECT_LT(took, seconds(3)) << "the backend answers after 3 s";
  // backendRequest: per attempt.
  auto be = curl("/slowbe", {"-o", "/dev/null", "-w", "%{http_code}"});
  EXPECT_EQ(be.out, "504") << be.describe();
  // The access log says why: UT (upstream request timeout).
  ASSERT_TRUE(waitFor([&] { return !accessLines(waypoint_->output(), "path=/slowbe").empty(); },
                      seconds(5)));
  EXPECT_NE(accessLines(waypoint_->output(), "path=/slow ").at(0).find("response_flags=UT"),
            std::string::npos)
      << waypoint_->output();
  // (/stats is a copy the loop publishes on its tick.)
  EXPECT_TRUE(waitFor([&] { return stats()["route_timeouts"] == 2; }, seconds(2)))
      << stats().dump();
  // Routes without a timeout still wait for a slow backend.
  auto other = curl("/slowpoke-is-not-a-timeout-route", {"-o", "/dev/null", "-w", "%{http_code}"});
  EXPECT_EQ(other.out, "200") << other.describe();
}

// Keep-alive reuse: requests on one curl connection (and from separate curl runs) reuse idle
// upstream connections: far fewer CONNECT streams to the endpoints than requests.
TEST_F(WaypointRoutesTest, UpstreamConnectionsAreReused) {
  const auto before = stats();
  ASSERT_TRUE(before.contains("http1_upstream")) << before.dump();
  constexpr int kRequests = 30;
  std::vector<std::string> argv = {"curl", "-sS", "--fail"};
  for (int i = 0; i < kRequests; ++i) argv.emplace_back("http://10.96.0.20:80/exact");
  auto r = cluster_->runInPod("frontend", argv, seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.describe() << waypoint_->output();
  EXPECT_EQ(countOf(r.out, "pod=cart-v2\n"), static_cast<size_t>(kRequests));
  std::this_thread::sleep_for(milliseconds(300));  // the loop publishes /stats on its tick
  const auto after = stats();
  const uint64_t connects = after["http1_upstream"]["connects"].get<uint64_t>() -
                            before["http1_upstream"]["connects"].get<uint64_t>();
  const uint64_t reuses = after["http1_upstream"]["reuses"].get<uint64_t>() -
                          before["http1_upstream"]["reuses"].get<uint64_t>();
  std::printf("%d requests: %lu upstream connects, %lu reuses\n", kRequests, connects, reuses);
  EXPECT_LE(connects, 2u) << after.dump();
  EXPECT_GE(reuses, static_cast<uint64_t>(kRequests) - 2) << after.dump();
  // The endpoint's agent saw as few inbound connections from the waypoint.
  EXPECT_GE(after["http1_upstream"]["idle"].get<uint64_t>(), 1u) << after.dump();

  // The pod closing its idle connection is noticed; the next request still succeeds.
  v2_->kill();
  v2_ = &echoServer(*cluster_, "cart-v2");
  ASSERT_TRUE(waitFor(
      [&] {
        return cluster_->runInPod("cart-v2", {"curl", "-s", "http://127.0.0.1:8080/"}).exit_code ==
               0;
      },
      seconds(10)));
  EXPECT_EQ(servedBy("/exact"), "cart-v2");
}

// A pod that closes a kept-alive connection just as the next request arrives (the race every
// HTTP/1.1 client pool has): requests without a body are sent once more on a new connection and
// succeed; a POST with a body is not (it may have been processed) and gets 503.
TEST_F(WaypointRoutesTest, StaleReusedConnectionIsRetriedOnlyForSafeRequests) {
  // Answers the first request on each connection with keep-alive, then closes the connection
  // without a word when a second one arrives.
  const std::string script = R"(import socket, threading
def serve(c):
    buf, answered = b'', False
    while True:
        data = c.recv(65536)
        if not data:
            break
        buf += data
        if b'\r\n\r\n' not in buf:
            continue
        if answered:
            break
        head, buf = buf.split(b'\r\n\r\n', 1)
        n = 0
        for line in head.split(b'\r\n'):
            if line.lower().startswith(b'content-length:'):
                n = int(line.split(b':')[1])
        while len(buf) < n:
            buf += c.recv(65536)
        buf = buf[n:]
        answered = True
        body = b'pod=one-shot\n'
        c.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n' % len(body) + body)
    c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8080))
s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
)";
  v1_->kill();
  cluster_->startInPod("cart-v1", {"/usr/bin/python3", "-c", script});
  ASSERT_TRUE(waitFor([&] { return servedBy("/") == "one-shot"; }, seconds(10)));
  const auto before = stats();
  constexpr int kRequests = 6;
  std::vector<std::string> argv = {"curl", "-sS", "--fail"};
  for (int i = 0; i < kRequests; ++i) argv.emplace_back("http://10.96.0.20:80/");
  auto r = cluster_->runInPod("frontend", argv, seconds(30));
  ASSERT_EQ(r.exit_code, 0) << r.describe() << waypoint_->output();
  EXPECT_EQ(countOf(r.out, "pod=one-shot\n"), static_cast<size_t>(kRequests)) << r.out;
  std::this_thread::sleep_for(milliseconds(300));  // the loop publishes /stats on its tick
  const auto after = stats();
  const uint64_t retries = after["http1_upstream"]["retries"].get<uint64_t>() -
                           before["http1_upstream"]["retries"].get<uint64_t>();
  EXPECT_EQ(retries, static_cast<uint64_t>(kRequests)) << after.dump();
  // A POST with a body on such a connection is not sent twice.
  auto post = curl("/", {"-X", "POST", "-d", "once", "-o", "/dev/null", "-w", "%{http_code}"});
  EXPECT_EQ(post.out, "503") << post.describe() << waypoint_->output();
}

// Before/after figures for the docs: h2load --h1 through the waypoint with upstream reuse and
// without (--upstream-max-idle 0: a new upstream connection per request). Not an assertion on
// speed (bench/ holds those); run with --gtest_also_run_disabled_tests.
TEST_F(WaypointRoutesTest, DISABLED_KeepAliveLoadFigures) {
  auto run = [&](const char* label) {
    auto r = cluster_->runInPod(
        "frontend", {"h2load", "--h1", "-n", "20000", "-c", "10", "http://10.96.0.20:80/exact"},
        seconds(300));
    std::smatch m;
    std::regex_search(r.out, m, std::regex("finished in [^\n]*"));
    std::smatch ok;
    std::regex_search(r.out, ok, std::regex("requests: [^\n]*"));
    auto s = stats();
    std::printf("%s: %s; %s; upstream connects %s\n", label, m.str().c_str(), ok.str().c_str(),
                s["http1_upstream"]["connects"].dump().c_str());
  };
  run("with reuse");
  startWaypoint({"--upstream-max-idle", "0"});
  ASSERT_TRUE(waypoint_->waitForOutput("waypoint: config in force", seconds(10)));
  run("without reuse");
}

}  // namespace
}  // namespace nodemesh::sim
