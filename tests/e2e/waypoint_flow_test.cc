// End-to-end tests of HTTP/2 flow control through the waypoint (waypoint_fixture.h): every DATA
// byte an HBONE connection delivers must be given back (consumed()) whatever becomes of the
// stream that carried it, or the connection's 16 MiB window closes for good and the waypoint
// stops hearing from that endpoint. Each test moves well over 16 MiB from one endpoint (cart-v1,
// every request routed there) over one upstream HBONE connection, or leaves bytes unread in the
// shapes that used to lose them, and then checks that the waypoint's /stats count of delivered
// but not given back bytes returns to 0.
#include <nlohmann/json.hpp>

#include <regex>
#include <thread>

#include "tests/e2e/waypoint_fixture.h"

namespace nodemesh::sim {
namespace {

// Every request to cart-v1; /late with a 300 ms request timeout (the waypoint answers 504).
constexpr const char* kRoutes = R"(httpRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: cart-flow, namespace: shop}
  spec:
    parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
    rules:
    - matches: [{path: {type: PathPrefix, value: /late}}]
      timeouts: {request: 300ms}
      backendRefs: [{name: cart-v1, port: 80}]
    - backendRefs: [{name: cart-v1, port: 80}]
)";

// An HTTP/1.1 keep-alive server (python) for the shapes that leave bytes unread:
//   /big/N   N bytes of body;
//   /extra   a 1 KiB response, then 256 KiB more that no request asked for (the connection
//            stays open);
//   /late    waits 0.8 s, then a 2 MiB response (after the route's timeout);
//   anything else: "ok\n".
constexpr const char* kShapesServer = R"(import socket, threading, time
def serve(c):
    buf = b''
    try:
        while True:
            while b'\r\n\r\n' not in buf:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b'\r\n\r\n', 1)
            path = head.split(b' ')[1].decode()
            extra = b''
            if path.startswith('/big/'):
                body = b'b' * int(path[5:])
            elif path == '/extra':
                body, extra = b'e' * 1024, b'x' * (256 * 1024)
            elif path == '/late':
                time.sleep(0.8)
                body = b'l' * (2 * 1024 * 1024)
            else:
                body = b'ok\n'
            c.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n' % len(body) + body + extra)
    except OSError:
        pass
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8080))
s.listen(64)
print('listening', flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
)";

// A client that asks for /big/8388608, reads 64 KiB of the answer and resets its connection
// (SO_LINGER 0), `argv[1]` times.
constexpr const char* kResettingClient = R"(import socket, struct, sys
for _ in range(int(sys.argv[1])):
    s = socket.create_connection(('10.96.0.20', 80), timeout=20)
    s.sendall(b'GET /big/8388608 HTTP/1.1\r\nhost: cart\r\n\r\n')
    got = 0
    while got < 65536:
        data = s.recv(65536)
        if not data:
            sys.exit('closed early')
        got += len(data)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    s.close()
print('done', flush=True)
)";

class WaypointFlowTest : public WaypointTest {
 protected:
  std::string meshConfig() override {
    return withCartVersions(withWaypoint(testConfig())) + kRoutes;
  }

  void SetUp() override {
    WaypointTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(waypoint_->waitForOutput("waypoint: config in force", seconds(10)));
  }

  // nm-loadgen http-server in cart-v1 on 8080 (HTTP/1.1 keep-alive, and h2c with prior
  // knowledge), `body` bytes per response; waits until it answers through the waypoint.
  void startLoadgenServer(int body) {
    cluster_->startInPod("cart-v1", {binDir() + "/nm-loadgen", "http-server", "--port", "8080",
                                     "--body", std::to_string(body)});
    waitUntilServed("/");
  }

  void waitUntilServed(const std::string& path) {
    ASSERT_TRUE(waitFor(
        [&] {
          return cluster_
                     ->runInPod("frontend",
                                {"curl", "-sS", "--fail", "--max-time", "5", "-o", "/dev/null",
                                 std::string("http://") + kCartVip + path},
                                seconds(10))
                     .exit_code == 0;
        },
        seconds(20)))
        << waypoint_->output();
  }

  // h2load from frontend to the cart VIP; `-N 10s` ends a stalled connection instead of waiting
  // forever, so a stall shows as failed requests.
  CommandResult h2load(std::vector<std::string> args) {
    std::vector<std::string> argv = {"h2load", "-N", "10s"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(std::string("http://") + kCartVip + "/");
    return cluster_->runInPod("frontend", argv, seconds(180));
  }

  static void expectAllSucceeded(const CommandResult& r, int n) {
    const std::string want = "requests: " + std::to_string(n) + " total, " + std::to_string(n) +
                             " started, " + std::to_string(n) + " done, " + std::to_string(n) +
                             " succeeded, 0 failed";
    EXPECT_NE(r.out.find(want), std::string::npos) << r.describe();
    EXPECT_NE(r.out.find("status codes: " + std::to_string(n) + " 2xx"), std::string::npos)
        << r.describe();
  }

  nlohmann::json stats() {
    auto r = cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15000/stats"});
    return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  }

  // Once idle, every byte the waypoint's HBONE connections (and its HTTP/2 codecs) delivered
  // has been given back.
  void expectAllGivenBack() {
    nlohmann::json s;
    const bool zero = waitFor(
        [&] {
          s = stats();
          return s.contains("flow") && s["flow"]["hbone_unconsumed_bytes"] == 0 &&
                 s["flow"]["http2_unconsumed_bytes"] == 0;
        },
        seconds(5));
    EXPECT_TRUE(zero) << s.dump();
  }

  // A second after the traffic, the HBONE connections still open have given back their large
  // ciphertext buffers (HboneConns::onTimer trims the drained ones over 16 KiB): at most the
  // three retained ones (TLS input and output, the send buffer) each.
  void expectBuffersReleased() {
    nlohmann::json s;
    const bool released = waitFor(
        [&] {
          s = stats();
          if (!s.contains("hbone") || !s["hbone"].contains("buffer_bytes")) return false;
          const uint64_t open = s["hbone"]["open"];
          const uint64_t bytes = s["hbone"]["buffer_bytes"];
          return open > 0 && bytes <= open * 3 * 16 * 1024;
        },
        seconds(5));
    EXPECT_TRUE(released) << s.dump();
  }
};

TEST_F(WaypointFlowTest, Http1KeepAliveResponsesBeyondTheConnectionWindow) {
  startLoadgenServer(1024);
  // 40,000 responses of 1 KiB (about 43 MiB with their heads) from cart-v1, over 8 kept-alive
  // client connections, so over the waypoint's kept-alive upstream streams to cart-v1.
  constexpr int kRequests = 40000;
  auto r = h2load({"--h1", "-n", std::to_string(kRequests), "-c", "8"});
  expectAllSucceeded(r, kRequests);
  expectAllGivenBack();
}

// The same with a new upstream stream per request (no idle upstream kept: what the waypoint does
// when its idle pool is full, and what the benchmark first ran into).
TEST_F(WaypointFlowTest, Http1ResponsesBeyondTheConnectionWindowWithoutUpstreamReuse) {
  startWaypoint({"--upstream-max-idle", "0"});
  ASSERT_TRUE(waypoint_->waitForOutput("waypoint: config in force", seconds(10)));
  startLoadgenServer(1024);
  constexpr int kRequests = 20000;  // about 22 MiB
  auto r = h2load({"--h1", "-n", std::to_string(kRequests), "-c", "8"});
  expectAllSucceeded(r, kRequests);
  expectAllGivenBack();
}

// Also a check that the waypoint does not reset upstream streams whose both sides ended: one
// RST_STREAM per request made nm-loadgen's nghttp2 end each upstream connection after 1,000 of
// them (its reset-flood limit), failing 2-3% of the requests with 503.
TEST_F(WaypointFlowTest, Http2ResponsesBeyondTheConnectionWindow) {
  startLoadgenServer(2048);
  // 20,000 responses of 2 KiB (about 40 MiB) over 4 connections of 16 streams each, to one
  // multiplexed HTTP/2 upstream over one HBONE stream.
  constexpr int kRequests = 20000;
  auto r = h2load({"-n", std::to_string(kRequests), "-c", "4", "-m", "16"});
  expectAllSucceeded(r, kRequests);
  expectAllGivenBack();
}

// Many short streams on the client agent's one HBONE connection to the waypoint, each ending
// while the agent still holds bytes for its app: after about 24 connections this used to stall
// (every new stream got 0 bytes) because the agent's StreamBridge never gave the window of those
// bytes back once the stream had closed.
TEST_F(WaypointFlowTest, PassthroughBeyondTheConnectionWindow) {
  // nm-testapp's stream is not HTTP: passed through as TCP, to either of cart's endpoints (no
  // routes for TCP). 80 connections, 1 MiB back on each (some 40 MiB from each endpoint), 4 at
  // a time.
  for (const char* pod : {"cart-v1", "cart-v2"}) {
    cluster_->startInPod(
        pod, {testappPath(), "serve", "--port", "8080", "--count", "0", "--parallel", "8"});
  }
  auto r = cluster_->runInPod(
      "frontend",
      {testappPath(), "connect-many", "--to", kCartVip, "--count", "80", "--send", "4K", "--expect",
       "1M", "--concurrency", "4", "--timeout-ms", "20000"},
      seconds(180));
  EXPECT_EQ(r.exit_code, 0) << r.describe() << waypoint_->output();
  expectAllGivenBack();
  expectBuffersReleased();
}

// Bytes the waypoint received and nobody reads: a client that resets in the middle of an
// 8 MiB response (up to a stream window waits in the waypoint), an endpoint that sends bytes
// after its response, and a response that arrives after the waypoint answered 504 itself. Each
// repeated past 16 MiB; then whole responses must still arrive.
TEST_F(WaypointFlowTest, UnreadBytesAreGivenBack) {
  Process& server = cluster_->startInPod("cart-v1", {"/usr/bin/python3", "-c", kShapesServer});
  ASSERT_TRUE(server.waitForOutput("listening", seconds(10))) << server.output();
  waitUntilServed("/");

  auto resets = cluster_->runInPod("frontend", {"/usr/bin/python3", "-c", kResettingClient, "8"},
                                   seconds(120));
  EXPECT_EQ(resets.exit_code, 0) << resets.describe() << waypoint_->output();

  for (int i = 0; i < 80; ++i) {  // 80 x 256 KiB = 20 MiB nobody asked for
    auto r = cluster_->runInPod("frontend",
                                {"curl", "-sS", "--fail", "--max-time", "10", "-o", "/dev/null",
                                 std::string("http://") + kCartVip + "/extra"},
                                seconds(15));
    ASSERT_EQ(r.exit_code, 0) << i << ": " << r.describe() << waypoint_->output();
  }

  for (int i = 0; i < 10; ++i) {  // 10 x 2 MiB after the waypoint's own 504
    auto r = cluster_->runInPod("frontend",
                                {"curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w",
                                 "%{http_code}", std::string("http://") + kCartVip + "/late"},
                                seconds(15));
    ASSERT_EQ(r.out, "504") << i << ": " << r.describe() << waypoint_->output();
  }
  std::this_thread::sleep_for(seconds(1));  // the last /late answers arrive

  // 4 x 8 MiB: only if the upstream connection's window is whole again.
  for (int i = 0; i < 4; ++i) {
    auto r =
        cluster_->runInPod("frontend",
                           {"curl", "-sS", "--fail", "--max-time", "20", "-o", "/dev/null", "-w",
                            "%{size_download}", std::string("http://") + kCartVip + "/big/8388608"},
                           seconds(30));
    ASSERT_EQ(r.out, "8388608") << i << ": " << r.describe() << waypoint_->output();
  }
  expectAllGivenBack();
}

}  // namespace
}  // namespace nodemesh::sim
