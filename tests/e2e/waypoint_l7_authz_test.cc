// End-to-end tests of L7 authorization at the waypoint: curl in frontend, through the node
// agents and the waypoint, to a Python HTTP/1.1 server in cart-v1 and cart-v2. The waypoint
// checks the policies' HTTP attributes (methods, paths) per request, answers 403 to a denied
// one, and names the deciding policy and rule in its access log line.
//
// The DENY policies name frontend's principal beside their HTTP attributes: the destination's
// node agent sees the waypoint's identity, not frontend's, so at L4 (where the HTTP attributes
// count as matched, docs/policy.md) they do not deny the waypoint's own connections to cart.

#include <string>
#include <vector>

#include "tests/e2e/waypoint_fixture.h"

namespace nodemesh::sim {
namespace {

constexpr const char* kL7Policies =
    "- name: deny-post-api\n"
    "  namespace: shop\n"
    "  scope: Namespace\n"
    "  action: Deny\n"
    "  rules:\n"
    "  - - - principals: [{Exact: cluster.local/ns/shop/sa/frontend}]\n"
    "        methods: [POST]\n"
    "        paths: ['/api/*']\n"
    "- name: deny-admin\n"
    "  namespace: shop\n"
    "  scope: Namespace\n"
    "  action: Deny\n"
    "  rules:\n"
    "  - - - principals: [{Exact: cluster.local/ns/shop/sa/nobody}]\n"
    "  - - - principals: [{Exact: cluster.local/ns/shop/sa/frontend}]\n"
    "        paths: ['/admin*']\n";

// Answers every request 200 with "pod=<pod> method=<method> path=<path>".
Process& echoServer(SimCluster& cluster, const std::string& pod) {
  const std::string script = R"(import http.server, sys
POD = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    disable_nagle_algorithm = True
    def answer(self):
        n = int(self.headers.get('content-length') or 0)
        if n: self.rfile.read(n)
        body = f'pod={POD} method={self.command} path={self.path}\n'.encode()
        self.send_response(200)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = answer
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()
)";
  return cluster.startInPod(pod, {"/usr/bin/python3", "-c", script, pod});
}

class WaypointL7AuthzTest : public WaypointTest {
 protected:
  // testConfig() ends with its policies (a global allow-all last), so ours append to them.
  std::string meshConfig() override { return withWaypoint(testConfig()) + kL7Policies; }

  void SetUp() override {
    WaypointTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    echoServer(*cluster_, "cart-v1");
    echoServer(*cluster_, "cart-v2");
    ASSERT_TRUE(waitFor([&] { return status("/", "GET") == "200"; }, seconds(15)))
        << waypoint_->output();
  }

  // curl from frontend to the cart VIP; the status code it got ("000" when it got none).
  std::string status(const std::string& path, const std::string& method) {
    auto r = cluster_->runInPod(
        "frontend",
        {"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-X", method,
         "-d", method == "POST" ? "x=1" : "", "http://10.96.0.20:80" + path},
        seconds(20));
    return r.out;
  }

  // The waypoint's access line for `method path`, waiting for the writer's flush.
  std::string accessLine(const std::string& method, const std::string& path) {
    const std::string needle = "method=" + method + " path=" + path + " ";
    std::string found;
    waitFor(
        [&] {
          auto lines = accessLines(waypoint_->output(), needle);
          if (lines.empty()) return false;
          found = lines.back();
          return true;
        },
        seconds(5));
    return found;
  }
};

TEST_F(WaypointL7AuthzTest, GetAllowedPostDeniedOnTheSamePath) {
  EXPECT_EQ(status("/api/items", "GET"), "200");
  EXPECT_EQ(status("/api/items", "POST"), "403");
  EXPECT_EQ(status("/other", "POST"), "200");  // the path is not under /api/

  const std::string denied = accessLine("POST", "/api/items");
  EXPECT_NE(denied.find("response_code=403"), std::string::npos) << denied;
  EXPECT_NE(denied.find("authz=deny authz_policy=shop/deny-post-api authz_rule=0"),
            std::string::npos)
      << denied;
  // Allowed: no DENY matched, and the global allow-all (rule 0) allowed it.
  const std::string allowed = accessLine("GET", "/api/items");
  EXPECT_NE(allowed.find("response_code=200"), std::string::npos) << allowed;
  EXPECT_NE(allowed.find("authz=allow authz_policy=istio-system/allow-all-for-tests authz_rule=0"),
            std::string::npos)
      << allowed;
}

TEST_F(WaypointL7AuthzTest, PathPrefixDenied) {
  EXPECT_EQ(status("/admin", "GET"), "403");
  EXPECT_EQ(status("/admin/users?x=1", "GET"), "403");  // the query is not part of the path
  EXPECT_EQ(status("/public/admin", "GET"), "200");
  // The log quotes a value with '=' in it.
  const std::string denied = accessLine("GET", "\"/admin/users?x=1\"");
  EXPECT_NE(denied.find("authz=deny authz_policy=shop/deny-admin authz_rule=1"), std::string::npos)
      << denied;
}

}  // namespace
}  // namespace nodemesh::sim
