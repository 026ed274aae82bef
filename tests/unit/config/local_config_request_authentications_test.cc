// parseLocalConfig on `requestAuthentications` (Istio RequestAuthentication objects): a full
// object read into the model with its JWKS parsed, Istio's default token location, a JWKS from a
// file:// jwksUri, then a table of malformed or unsupported ones, one problem each with its
// line and reason.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "auth/jwks.h"
#include "config/local/local_config.h"
#include "tests/support/jwt_signer.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/config/local_config_test_util.h"

namespace nodemesh::config::local_config_test {
namespace {

using ::testing::HasSubstr;

// A service (lines 1-3) and an object up to its jwtRules (lines 4-10); cases add rule fields
// from line 11.
#define RA_HEAD                                                              \
  "services:\n"                                                              \
  "- {name: cart, namespace: shop, hostname: cart.shop.svc.cluster.local,\n" \
  "   vips: [\"/10.96.0.20\"], ports: {80: 8080}}\n"                         \
  "requestAuthentications:\n"                                                \
  "- apiVersion: security.istio.io/v1\n"                                     \
  "  kind: RequestAuthentication\n"                                          \
  "  metadata: {name: jwt, namespace: shop}\n"                               \
  "  spec:\n"                                                                \
  "    jwtRules:\n"                                                          \
  "    - issuer: https://issuer.example\n"

const std::string& jwks() {
  static const std::string kText = [] {
    testing::TestJwtKey key = testing::TestJwtKey::ec("k1");
    return testing::jwksOf({&key});
  }();
  return kText;
}

std::string inlineJwks() {
  return "      jwks: '" + jwks() + "'\n";
}

TEST(RequestAuthenticationConfigTest, ReadsEveryField) {
  LoadResult r =
      parseLocalConfig(std::string(RA_HEAD) + inlineJwks() +
                           "      audiences: [shop, billing]\n"
                           "      fromHeaders: [{name: X-Jwt, prefix: \"Token \"}]\n"
                           "      forwardOriginalToken: true\n"
                           "      outputClaimToHeaders:\n"
                           "      - {header: X-Sub, claim: sub}\n"
                           "    targetRefs: [{kind: Service, group: \"\", name: cart}]\n",
                       "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  EXPECT_TRUE(r.warnings.empty());
  ASSERT_EQ(r.snapshot->requestAuthentications().size(), 1u);
  const model::RequestAuthentication& ra = r.snapshot->requestAuthentications()[0];
  EXPECT_EQ(ra.key(), "shop/jwt");
  EXPECT_EQ(ra.target_services, std::vector<std::string>{"cart"});
  EXPECT_TRUE(ra.appliesTo("shop", "cart"));
  EXPECT_FALSE(ra.appliesTo("shop", "orders"));
  EXPECT_FALSE(ra.appliesTo("other", "cart"));
  ASSERT_EQ(ra.jwt_rules.size(), 1u);
  const model::JwtRule& rule = ra.jwt_rules[0];
  EXPECT_EQ(rule.issuer, "https://issuer.example");
  EXPECT_EQ(rule.audiences, (std::vector<std::string>{"shop", "billing"}));
  ASSERT_NE(rule.jwks, nullptr);
  ASSERT_EQ(rule.jwks->keys().size(), 1u);
  EXPECT_EQ(rule.jwks->keys()[0].kid, "k1");
  EXPECT_EQ(rule.from_headers, (std::vector<model::JwtHeaderLocation>{{"x-jwt", "Token "}}));
  EXPECT_TRUE(rule.forward_original_token);
  EXPECT_EQ(rule.output_claim_to_headers, (std::vector<model::ClaimToHeader>{{"x-sub", "sub"}}));
  EXPECT_THAT(r.snapshot->summary(), HasSubstr("1 request authentication"));
}

TEST(RequestAuthenticationConfigTest, IstiosDefaultsAndNamespaceWide) {
  LoadResult r = parseLocalConfig(std::string(RA_HEAD) + inlineJwks(), "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  const model::RequestAuthentication& ra = r.snapshot->requestAuthentications()[0];
  EXPECT_TRUE(ra.target_services.empty());
  EXPECT_TRUE(ra.appliesTo("shop", "anything"));
  const model::JwtRule& rule = ra.jwt_rules[0];
  EXPECT_EQ(rule.from_headers,
            (std::vector<model::JwtHeaderLocation>{{"authorization", "Bearer "}}));
  EXPECT_FALSE(rule.forward_original_token);
  EXPECT_TRUE(rule.audiences.empty());
}

TEST(RequestAuthenticationConfigTest, ReadsTheJwksOfAFileUri) {
  nodemesh::testing::TempDir dir;
  const std::string path = dir.path() + "/jwks.json";
  std::ofstream(path) << jwks();
  LoadResult r =
      parseLocalConfig(std::string(RA_HEAD) + "      jwksUri: file://" + path + "\n", "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  const model::JwtRule& rule = r.snapshot->requestAuthentications()[0].jwt_rules[0];
  EXPECT_EQ(rule.jwks_uri, "file://" + path);
  ASSERT_NE(rule.jwks, nullptr);
  EXPECT_EQ(rule.jwks->keys().size(), 1u);

  r = parseLocalConfig(std::string(RA_HEAD) + "      jwksUri: file://" + dir.path() + "/none\n",
                       "mesh.yaml");
  ASSERT_EQ(r.problems.size(), 1u) << allProblems(r);
  EXPECT_EQ(r.problems[0].line, 11);
  EXPECT_THAT(r.problems[0].reason, HasSubstr("jwksUri: cannot read"));
}

TEST(RequestAuthenticationConfigTest, AnUnknownTargetWarns) {
  LoadResult r = parseLocalConfig(
      std::string(RA_HEAD) + inlineJwks() + "    targetRefs: [{kind: Service, name: kart}]\n",
      "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].line, 12);
  EXPECT_THAT(r.warnings[0].reason, HasSubstr("shop/kart is not defined in this file"));
}

struct BadCase {
  std::string_view name;
  std::string yaml;
  int line;
  std::string_view reason;
};

std::vector<BadCase> badCases() {
  const std::string head = RA_HEAD;
  const std::string good = head + inlineJwks();
  return {
      {"WrongApiVersion",
       "requestAuthentications:\n- apiVersion: security.istio.io/v2\n"
       "  kind: RequestAuthentication\n  metadata: {name: x}\n  spec: {}\n",
       2, "unsupported apiVersion 'security.istio.io/v2'"},
      {"WrongKind",
       "requestAuthentications:\n- apiVersion: security.istio.io/v1\n"
       "  kind: AuthorizationPolicy\n  metadata: {name: x}\n  spec: {}\n",
       3, "expected RequestAuthentication"},
      {"UnknownSpecField", good + "    jwtRule: []\n", 12, "jwtRule"},
      {"Selector", good + "    selector: {matchLabels: {app: cart}}\n", 12,
       "selector is not supported"},
      {"TargetRefSingular", good + "    targetRef: {kind: Service, name: cart}\n", 12,
       "use targetRefs"},
      {"GatewayTarget",
       good + "    targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: w}]\n", 12,
       "gateway.networking.k8s.io/Gateway is not supported"},
      {"OtherNamespaceTarget",
       good + "    targetRefs: [{kind: Service, name: cart, namespace: web}]\n", 12,
       "targets Services of its own namespace"},
      {"NoIssuer",
       head.substr(0, head.rfind("    - issuer")) + "    - audiences: [a]\n" + inlineJwks(), 10,
       "issuer"},
      {"NoJwks", head + "      audiences: [a]\n", 10, "needs jwks (inline) or jwksUri"},
      {"BothJwks", good + "      jwksUri: file:///etc/jwks.json\n", 12, "not both"},
      {"HttpsJwksUri", head + "      jwksUri: https://issuer.example/.well-known/jwks.json\n", 11,
       "fetches nothing over the network"},
      {"RelativeFileUri", head + "      jwksUri: file://jwks.json\n", 11, "file:///absolute/path"},
      {"BadJwksJson", head + "      jwks: '{\"keys\": ['\n", 11, "JWKS is not valid JSON"},
      {"JwksWithSymmetricKey", head + "      jwks: '{\"keys\": [{\"kty\": \"oct\"}]}'\n", 11,
       "JWKS keys[0]: kty 'oct' is not supported"},
      {"FromParams", good + "      fromParams: [token]\n", 12, "fromParams is not supported"},
      {"FromCookies", good + "      fromCookies: [session]\n", 12, "fromCookies is not supported"},
      {"OutputPayload", good + "      outputPayloadToHeader: x-payload\n", 12,
       "outputPayloadToHeader is not supported"},
      {"UnknownRuleField", good + "      issuers: [a]\n", 12, "issuers"},
      {"BadHeaderName", good + "      fromHeaders: [{name: \"x jwt\"}]\n", 12,
       "invalid header name"},
      {"BadForward", good + "      forwardOriginalToken: maybe\n", 12, ""},
      {"ClaimWithoutHeader", good + "      outputClaimToHeaders: [{claim: sub}]\n", 12, "header"},
      {"TwoRulesOneIssuer", good + "    - issuer: https://issuer.example\n" + inlineJwks(), 7,
       "two jwtRules for issuer https://issuer.example"},
      {"Duplicate",
       good + "- apiVersion: security.istio.io/v1\n  kind: RequestAuthentication\n"
              "  metadata: {name: jwt, namespace: shop}\n  spec: {}\n",
       14, "duplicate RequestAuthentication 'shop/jwt' (first defined at line 7)"},
  };
}

class BadRequestAuthenticationTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadRequestAuthenticationTest, IsRejectedWithLineAndReason) {
  const BadCase& c = GetParam();
  LoadResult r = parseLocalConfig(c.yaml, "mesh.yaml");
  ASSERT_FALSE(r.ok()) << c.yaml;
  EXPECT_EQ(r.snapshot, nullptr);
  ASSERT_EQ(r.problems.size(), 1u) << allProblems(r);
  EXPECT_EQ(r.problems[0].file, "mesh.yaml");
  EXPECT_EQ(r.problems[0].line, c.line) << allProblems(r);
  EXPECT_THAT(r.problems[0].reason, HasSubstr(std::string(c.reason))) << allProblems(r);
}

std::string caseName(const ::testing::TestParamInfo<BadCase>& info) {
  return std::string(info.param.name);
}

INSTANTIATE_TEST_SUITE_P(Cases, BadRequestAuthenticationTest, ::testing::ValuesIn(badCases()),
                         caseName);

}  // namespace
}  // namespace nodemesh::config::local_config_test
