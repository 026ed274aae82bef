// WaypointJwt: which RequestAuthentications apply to a Service, where the token is read, what a
// valid token changes in the request (header removed, claims copied), and the 401 answer of an
// invalid one, with tokens signed by keys made in the test and the clock as a parameter.

#include "waypoint/proxy/jwt_auth.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "auth/jwks.h"
#include "tests/support/jwt_signer.h"

namespace nodemesh::waypoint {
namespace {

using nlohmann::json;
using testing::TestJwtKey;

constexpr char kIssuer[] = "https://issuer.example";
const std::chrono::system_clock::time_point kNow{std::chrono::seconds(1767225600)};

int64_t at(std::chrono::seconds offset) {
  return std::chrono::duration_cast<std::chrono::seconds>(kNow.time_since_epoch() + offset).count();
}

model::Service service(const std::string& ns, const std::string& name) {
  model::Service s;
  s.name = name;
  s.namespace_name = ns;
  s.hostname = name + "." + ns + ".svc.cluster.local";
  return s;
}

class WaypointJwtTest : public ::testing::Test {
 protected:
  WaypointJwtTest() : key_(TestJwtKey::rsa("k1")) {}

  model::JwtRule rule() const {
    model::JwtRule r;
    r.issuer = kIssuer;
    auto jwks = auth::Jwks::parse(testing::jwksOf({&key_}));
    EXPECT_TRUE(jwks.ok());
    r.jwks = *jwks;
    r.from_headers = {{"authorization", "Bearer "}};
    return r;
  }

  void use(std::vector<model::RequestAuthentication> ras) {
    jwt_.setSnapshot(model::Snapshot::create({}, {}, {}, {}, {}, {}, {}, std::move(ras)));
  }

  model::RequestAuthentication policy(std::vector<std::string> targets = {}) const {
    model::RequestAuthentication ra;
    ra.metadata.name = "jwt";
    ra.metadata.namespace_name = "shop";
    ra.target_services = std::move(targets);
    ra.jwt_rules = {rule()};
    return ra;
  }

  std::string token(json extra = json::object()) const {
    json claims = {{"iss", kIssuer}, {"sub", "alice"}, {"exp", at(std::chrono::hours(1))}};
    for (const auto& [k, v] : extra.items()) claims[k] = v;
    return key_.sign(claims);
  }

  static RequestHead head(const std::string& authorization = "") {
    RequestHead h;
    h.method = "GET";
    h.authority = "cart.shop:80";
    h.path = "/items?id=1";
    h.headers = {{"accept", "*/*"}};
    if (!authorization.empty()) h.headers.push_back({"authorization", authorization});
    return h;
  }

  TestJwtKey key_;
  WaypointJwt jwt_;
};

TEST_F(WaypointJwtTest, ValidTokenAuthenticatesAndIsRemoved) {
  use({policy()});
  RequestHead h = head("Bearer " + token());
  JwtCheck c = jwt_.check(service("shop", "cart"), h, kNow);
  ASSERT_EQ(c.result, JwtCheck::Result::kAuthenticated) << c.summary();
  EXPECT_EQ(c.auth.principal, "https://issuer.example/alice");
  EXPECT_EQ(c.summary(), "https://issuer.example/alice");
  EXPECT_FALSE(headerValue(h.headers, "authorization"));  // forwardOriginalToken: false
  EXPECT_EQ(headerValue(h.headers, "accept"), "*/*");
  EXPECT_EQ(jwt_.stats().authenticated, 1u);
}

TEST_F(WaypointJwtTest, SchemeIsCaseInsensitiveAndForwardKeepsTheHeader) {
  model::RequestAuthentication ra = policy();
  ra.jwt_rules[0].forward_original_token = true;
  use({ra});
  RequestHead h = head("bearer " + token());
  EXPECT_EQ(jwt_.check(service("shop", "cart"), h, kNow).result, JwtCheck::Result::kAuthenticated);
  EXPECT_TRUE(headerValue(h.headers, "authorization"));
}

TEST_F(WaypointJwtTest, ClaimsAreCopiedToHeadersButNeverHeaderBreaks) {
  model::RequestAuthentication ra = policy();
  ra.jwt_rules[0].output_claim_to_headers = {{"x-sub", "sub"},
                                             {"x-team", "org.team"},
                                             {"x-groups", "groups"},
                                             {"x-evil", "evil"},
                                             {"x-none", "absent"}};
  use({ra});
  RequestHead h = head("Bearer " + token({{"org", {{"team", "payments"}}},
                                          {"groups", {"a", "b"}},
                                          {"evil", "x\r\nset-cookie: y"}}));
  h.headers.push_back({"x-sub", "spoofed"});
  ASSERT_EQ(jwt_.check(service("shop", "cart"), h, kNow).result, JwtCheck::Result::kAuthenticated);
  EXPECT_EQ(headerValue(h.headers, "x-sub"), "alice");  // replaced, not added
  EXPECT_EQ(headerValue(h.headers, "x-team"), "payments");
  EXPECT_EQ(headerValue(h.headers, "x-groups"), "a,b");
  EXPECT_FALSE(headerValue(h.headers, "x-evil"));
  EXPECT_FALSE(headerValue(h.headers, "x-none"));
}

TEST_F(WaypointJwtTest, MissingTokenPassesUnauthenticated) {
  use({policy()});
  RequestHead h = head();
  EXPECT_EQ(jwt_.check(service("shop", "cart"), h, kNow).result, JwtCheck::Result::kNoToken);
  // Another scheme in the header is not a token for this rule either.
  h = head("Basic YWxpY2U6c2VjcmV0");
  EXPECT_EQ(jwt_.check(service("shop", "cart"), h, kNow).result, JwtCheck::Result::kNoToken);
  EXPECT_EQ(headerValue(h.headers, "authorization"), "Basic YWxpY2U6c2VjcmV0");
}

TEST_F(WaypointJwtTest, ExpiredTokenIsRejectedWithEnvoysAnswer) {
  use({policy()});
  RequestHead h = head("Bearer " + token({{"exp", at(-std::chrono::minutes(5))}}));
  JwtCheck c = jwt_.check(service("shop", "cart"), h, kNow);
  ASSERT_EQ(c.result, JwtCheck::Result::kRejected);
  EXPECT_EQ(c.failure->message(), "Jwt is expired");
  EXPECT_EQ(c.www_authenticate,
            "Bearer realm=\"http://cart.shop:80/items\", error=\"invalid_token\"");
  EXPECT_EQ(c.summary(), "expired");
  EXPECT_EQ(jwt_.stats().failures[static_cast<size_t>(auth::JwtFailureReason::kExpired)], 1u);
  // The same token an hour earlier.
  h = head("Bearer " + token({{"exp", at(-std::chrono::minutes(5))}}));
  EXPECT_EQ(jwt_.check(service("shop", "cart"), h, kNow - std::chrono::hours(1)).result,
            JwtCheck::Result::kAuthenticated);
}

TEST_F(WaypointJwtTest, UnknownIssuerAndGarbageAreRejected) {
  use({policy()});
  RequestHead h = head("Bearer " + token({{"iss", "https://evil.example"}}));
  JwtCheck c = jwt_.check(service("shop", "cart"), h, kNow);
  ASSERT_EQ(c.result, JwtCheck::Result::kRejected);
  EXPECT_EQ(c.failure->message(), "Jwt issuer is not configured");
  h = head("Bearer not-a-jwt");
  EXPECT_EQ(jwt_.check(service("shop", "cart"), h, kNow).result, JwtCheck::Result::kRejected);
  // A realm never carries a quote the client put into the path.
  h = head("Bearer x.y.z");
  h.path = "/a\"b";
  EXPECT_EQ(jwt_.check(service("shop", "cart"), h, kNow).www_authenticate,
            "Bearer realm=\"http://cart.shop:80/ab\", error=\"invalid_token\"");
}

TEST_F(WaypointJwtTest, OnlyPoliciesOfTheServiceApply) {
  use({policy({"orders"})});
  RequestHead h = head("Bearer garbage");
  EXPECT_EQ(jwt_.check(service("shop", "cart"), h, kNow).result, JwtCheck::Result::kNotApplicable);
  EXPECT_EQ(jwt_.check(service("web", "orders"), h, kNow).result, JwtCheck::Result::kNotApplicable);
  EXPECT_EQ(jwt_.check(service("shop", "orders"), h, kNow).result, JwtCheck::Result::kRejected);
  use({policy()});  // namespace-wide
  EXPECT_EQ(jwt_.check(service("shop", "cart"), h, kNow).result, JwtCheck::Result::kRejected);
}

TEST_F(WaypointJwtTest, TokenInAnotherHeaderIsCheckedByTheRuleReadingIt) {
  model::RequestAuthentication ra = policy();
  ra.jwt_rules[0].from_headers = {{"x-jwt", ""}};
  use({ra});
  RequestHead h = head("Bearer " + token());  // not where this rule looks
  EXPECT_EQ(jwt_.check(service("shop", "cart"), h, kNow).result, JwtCheck::Result::kNoToken);
  h.headers.push_back({"x-jwt", token()});
  EXPECT_EQ(jwt_.check(service("shop", "cart"), h, kNow).result, JwtCheck::Result::kAuthenticated);
  EXPECT_FALSE(headerValue(h.headers, "x-jwt"));
  EXPECT_TRUE(headerValue(h.headers, "authorization"));
}

}  // namespace
}  // namespace nodemesh::waypoint
