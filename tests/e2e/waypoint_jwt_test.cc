// End-to-end tests of RequestAuthentication at the waypoint: curl in frontend sends JWTs
// (signed in the test by keys it generates; the JWKS is written inline into the mesh config)
// through the node agents and the waypoint to a Python HTTP/1.1 server in cart-v1 and cart-v2.
// An AuthorizationPolicy ALLOWs /secure only to the request principal
// https://issuer.example/alice: a valid RS256 or ES256 token gets 200 and the access log names
// the policy and rule; an expired one gets Envoy's 401; no token gets 403 from the policy.
//
// The test mesh's global allow-all is narrowed to the waypoint's own identity (the destination's
// node agent sees the waypoint, so it must still let the waypoint in), and the example's
// cart-allow-frontend no longer names frontend: otherwise they would allow every request of
// frontend at the waypoint and the request principal would decide nothing.

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/e2e/waypoint_fixture.h"
#include "tests/support/jwt_signer.h"

namespace nodemesh::sim {
namespace {

using nodemesh::testing::TestJwtKey;

constexpr const char* kIssuer = "https://issuer.example";

// Answers every request 200 with "pod=<pod> path=<path> authorization=<...> x-jwt-sub=<...>";
// prints "listening" once it does.
Process& echoServer(SimCluster& cluster, const std::string& pod) {
  const std::string script = R"(import http.server, sys
POD = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    disable_nagle_algorithm = True
    def do_GET(self):
        auth = 'present' if self.headers.get('authorization') else 'absent'
        sub = self.headers.get('x-jwt-sub') or '-'
        body = f'pod={POD} path={self.path} authorization={auth} x-jwt-sub={sub}\n'.encode()
        self.send_response(200)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
server = http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H)
print('listening', flush=True)
server.serve_forever()
)";
  return cluster.startInPod(pod, {"/usr/bin/python3", "-c", script, pod});
}

int64_t unixTime(std::chrono::system_clock::duration offset) {
  return std::chrono::duration_cast<std::chrono::seconds>(
             (std::chrono::system_clock::now() + offset).time_since_epoch())
      .count();
}

class WaypointJwtTest : public WaypointTest {
 protected:
  WaypointJwtTest() : rsa_(TestJwtKey::rsa("rsa-1")), ec_(TestJwtKey::ec("ec-1")) {}

  std::string meshConfig() override {
    std::string text = withWaypoint(testConfig());
    const std::string allow_all = "  rules:\n  - []\n";
    text.replace(text.rfind(allow_all), allow_all.size(),
                 "  rules:\n  - - - principals: [{Exact: cluster.local/ns/shop/sa/waypoint}]\n");
    const std::string frontend = "principals: [{Exact: cluster.local/ns/shop/sa/frontend}]";
    text.replace(text.find(frontend), frontend.size(),
                 "principals: [{Exact: cluster.local/ns/shop/sa/nobody}]");
    text +=
        "- name: require-alice\n"
        "  namespace: shop\n"
        "  scope: Namespace\n"
        "  action: Allow\n"
        "  rules:\n"
        "  - - - requestPrincipals: ['" +
        std::string(kIssuer) +
        "/alice']\n"
        "    - - paths: ['/secure*']\n"
        "  - - - paths: ['/public*']\n";
    text +=
        "requestAuthentications:\n"
        "- apiVersion: security.istio.io/v1\n"
        "  kind: RequestAuthentication\n"
        "  metadata: {name: cart-jwt, namespace: shop}\n"
        "  spec:\n"
        "    targetRefs: [{kind: Service, group: \"\", name: cart}]\n"
        "    jwtRules:\n"
        "    - issuer: " +
        std::string(kIssuer) +
        "\n"
        "      jwks: '" +
        testing::jwksOf({&rsa_, &ec_}) +
        "'\n"
        "      outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]\n";
    return text;
  }

  void SetUp() override {
    WaypointTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    for (const char* pod : {"cart-v1", "cart-v2"}) {
      // Both endpoints listen before the first request: the load balancer may pick either.
      // With http2_, prior-knowledge HTTP/2 to the endpoints as well (answers "<pod>\n").
      Process& p = http2_ ? cluster_->startInPod(pod, {"/usr/bin/python3",
                                                       e2eScript("h2_server.py"), pod, "8080", "0"})
                          : echoServer(*cluster_, pod);
      ASSERT_TRUE(p.waitForOutput("listening", seconds(10))) << p.output();
    }
    ASSERT_TRUE(waitFor([&] { return get("/public", "", false, http2_).substr(0, 3) == "200"; },
                        seconds(15)))
        << waypoint_->output();
  }

  std::string token(const TestJwtKey& key, std::chrono::seconds exp_in,
                    const std::string& sub = "alice") const {
    return key.sign({{"iss", kIssuer}, {"sub", sub}, {"exp", unixTime(exp_in)}});
  }

  // curl from frontend to the cart VIP: "<status> <body>" ("000" when it got no answer), with
  // the response headers before the body when `headers`, over HTTP/2 (prior knowledge) when
  // `http2`.
  std::string get(const std::string& path, const std::string& token = "", bool headers = false,
                  bool http2 = false) {
    std::vector<std::string> argv = {"curl", "-sS",         "-w",         "%{http_code} ",
                                     "-o",   "/dev/stderr", "--max-time", "10"};
    if (http2) argv.emplace_back("--http2-prior-knowledge");
    if (headers) {
      argv.emplace_back("-D");
      argv.emplace_back("/dev/stderr");
    }
    if (!token.empty()) {
      argv.emplace_back("-H");
      argv.emplace_back("Authorization: Bearer " + token);
    }
    argv.emplace_back("http://10.96.0.20:80" + path);
    auto r = cluster_->runInPod("frontend", argv, seconds(20));
    return r.out + r.err;
  }

  // The waypoint's access line for GET `path`, waiting for the writer's flush.
  std::string accessLine(const std::string& path) {
    const std::string needle = "method=GET path=" + path + " ";
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

  TestJwtKey rsa_;
  TestJwtKey ec_;
  bool http2_ = false;  // clients and endpoints speak HTTP/2 (prior knowledge)
};

class WaypointJwtH2Test : public WaypointJwtTest {
 protected:
  WaypointJwtH2Test() { http2_ = true; }
};

TEST_F(WaypointJwtTest, ValidRs256TokenIsAllowedByItsRequestPrincipal) {
  const std::string answer = get("/secure/rs256", token(rsa_, std::chrono::hours(1)));
  EXPECT_EQ(answer.substr(0, 4), "200 ") << answer << waypoint_->output();
  // The token is not forwarded (forwardOriginalToken: false); its sub claim is.
  EXPECT_NE(answer.find("authorization=absent x-jwt-sub=alice"), std::string::npos) << answer;
  const std::string line = accessLine("/secure/rs256");
  EXPECT_NE(line.find("response_code=200"), std::string::npos) << line;
  EXPECT_NE(line.find("authz=allow authz_policy=shop/require-alice authz_rule=0 "
                      "jwt=https://issuer.example/alice "),
            std::string::npos)
      << line;
}

TEST_F(WaypointJwtTest, ValidEs256TokenIsAllowedToo) {
  const std::string answer = get("/secure/es256", token(ec_, std::chrono::hours(1)));
  EXPECT_EQ(answer.substr(0, 4), "200 ") << answer << waypoint_->output();
}

// nodemeshctl waypoint explain runs the same checks: alice's token verified and the policy rule
// that allows her, an expired token's 401, and the 403 for a request without one (exit 1).
TEST_F(WaypointJwtTest, ExplainShowsTheTokenAndThePolicyDecision) {
  auto explain = [&](const std::string& path, const std::string& token) {
    std::vector<std::string> argv = {binDir() + "/nodemeshctl",
                                     "waypoint",
                                     "explain",
                                     "--service",
                                     "shop/cart",
                                     "--port",
                                     "80",
                                     "--path",
                                     path,
                                     "--source-principal",
                                     kFrontendIdentity};
    if (!token.empty()) argv.insert(argv.end(), {"-H", "authorization: Bearer " + token});
    return cluster_->runInPod("waypoint", argv, seconds(20));
  };
  auto ok = explain("/secure/x", token(rsa_, std::chrono::hours(1)));
  EXPECT_EQ(ok.exit_code, 0) << ok.describe() << ok.out << ok.err;
  EXPECT_NE(ok.out.find("authentication: token verified: request principal " +
                        std::string(kIssuer) + "/alice"),
            std::string::npos)
      << ok.out;
  EXPECT_NE(ok.out.find("authorization for shop/cart-v1-5c2a: allowed by ALLOW policy "
                        "shop/require-alice rule 0"),
            std::string::npos)
      << ok.out;
  auto expired = explain("/secure/x", token(rsa_, -std::chrono::hours(1)));
  EXPECT_EQ(expired.exit_code, 1) << expired.describe();
  EXPECT_NE(expired.out.find("token refused: 401 Jwt is expired"), std::string::npos)
      << expired.out;
  auto missing = explain("/secure/x", "");
  EXPECT_EQ(missing.exit_code, 1) << missing.describe();
  EXPECT_NE(missing.out.find("authorization for shop/cart-v1-5c2a: 403, "), std::string::npos)
      << missing.out;
}

TEST_F(WaypointJwtTest, ExpiredTokenIsAnswered401) {
  const std::string expired = token(rsa_, -std::chrono::hours(1));
  EXPECT_EQ(get("/secure/expired", expired), "401 Jwt is expired\n") << waypoint_->output();
  // Envoy's challenge (RFC 6750 section 3).
  const std::string answer = get("/secure/expired", expired, /*headers=*/true);
  EXPECT_NE(answer.find("www-authenticate: Bearer realm=\"http://10.96.0.20/secure/expired\", "
                        "error=\"invalid_token\""),
            std::string::npos)
      << answer;
  const std::string line = accessLine("/secure/expired");
  EXPECT_NE(line.find("response_code=401"), std::string::npos) << line;
  EXPECT_NE(line.find(" jwt=expired "), std::string::npos) << line;
  // Counted by reason (the waypoint publishes its counters once a second).
  const std::string want = "nodemesh_waypoint_jwt_failures_total{reason=\"expired\"} 2\n";
  std::string metrics;
  EXPECT_TRUE(waitFor(
      [&] {
        metrics =
            cluster_->runInPod("waypoint", {"curl", "-s", "http://127.0.0.1:15020/metrics"}).out;
        return metrics.find(want) != std::string::npos;
      },
      seconds(5)))
      << metrics;
}

TEST_F(WaypointJwtTest, MissingTokenIsDeniedByThePolicy) {
  EXPECT_EQ(get("/secure/none"), "403 RBAC: access denied\n");
  const std::string line = accessLine("/secure/none");
  EXPECT_NE(
      line.find("authz=deny authz_policy=istio-system/allow-all-for-tests,shop/require-alice"),
      std::string::npos)
      << line;
  EXPECT_NE(line.find(" jwt=missing "), std::string::npos) << line;
  // Another principal's valid token is no better than none.
  EXPECT_EQ(get("/secure/bob", token(rsa_, std::chrono::hours(1), "bob")),
            "403 RBAC: access denied\n");
}

// HTTP/2 requests take the same path through the waypoint (routeToEndpoint).
TEST_F(WaypointJwtH2Test, Http2RequestsAreAuthenticatedToo) {
  const std::string ok = get("/secure/h2", token(ec_, std::chrono::hours(1)), false, true);
  EXPECT_TRUE(ok == "200 cart-v1\n" || ok == "200 cart-v2\n") << ok << waypoint_->output();
  const std::string line = accessLine("/secure/h2");
  EXPECT_NE(line.find("protocol=HTTP/2"), std::string::npos) << line;
  EXPECT_NE(line.find("authz=allow authz_policy=shop/require-alice authz_rule=0 "
                      "jwt=https://issuer.example/alice "),
            std::string::npos)
      << line;
  EXPECT_EQ(get("/secure/h2-expired", token(rsa_, -std::chrono::hours(1)), false, true),
            "401 Jwt is expired\n");
  EXPECT_EQ(get("/secure/h2-none", "", false, true), "403 RBAC: access denied\n");
}

TEST_F(WaypointJwtTest, ForgedAndAlgNoneTokensAreAnswered401) {
  const std::string good = token(rsa_, std::chrono::hours(1));
  TestJwtKey stranger = TestJwtKey::rsa("rsa-1");  // the same kid, another key
  EXPECT_EQ(get("/secure/forged", token(stranger, std::chrono::hours(1))),
            "401 Jwt verification fails\n");
  const std::string none = auth::base64UrlEncode(R"({"alg":"none"})") +
                           good.substr(good.find('.'), good.rfind('.') - good.find('.')) + ".";
  EXPECT_EQ(get("/secure/none-alg", none), "401 Jwt header [alg] field value is invalid\n");
}

}  // namespace
}  // namespace nodemesh::sim
