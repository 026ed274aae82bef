// parseLocalConfig on `rateLimitPolicies` (HTTPLocalRateLimitPolicy objects): a full policy read
// into the model, then a table of malformed ones, one problem each with its line and reason, and
// the warning for a target the file does not define.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "config/local/local_config.h"
#include "tests/unit/config/local_config_test_util.h"

namespace nodemesh::config::local_config_test {
namespace {

using ::testing::HasSubstr;

// A service and a route to target (lines 1-13).
#define RL_TARGETS                                                           \
  "services:\n"                                                              \
  "- {name: cart, namespace: shop, hostname: cart.shop.svc.cluster.local,\n" \
  "   vips: [\"/10.96.0.20\"], ports: {80: 8080}}\n"                         \
  "httpRoutes:\n"                                                            \
  "- apiVersion: gateway.networking.k8s.io/v1\n"                             \
  "  kind: HTTPRoute\n"                                                      \
  "  metadata: {name: cart-api, namespace: shop}\n"                          \
  "  spec:\n"                                                                \
  "    parentRefs: [{group: \"\", kind: Service, name: cart}]\n"             \
  "    rules:\n"                                                             \
  "    - backendRefs: [{name: cart, port: 80}]\n"                            \
  "# -\n"                                                                    \
  "# -\n"

// A policy up to its spec (lines 14-18); cases add spec fields from line 19.
#define RL_HEAD                                    \
  RL_TARGETS                                       \
  "rateLimitPolicies:\n"                           \
  "- apiVersion: policy.linkerd.io/v1alpha1\n"     \
  "  kind: HTTPLocalRateLimitPolicy\n"             \
  "  metadata: {name: cart-rl, namespace: shop}\n" \
  "  spec:\n"

// Lines 19-20: a valid target; cases add limits from line 21.
#define RL_TARGETED RL_HEAD "    targetRef: {group: \"\", kind: Service, name: cart}\n    # -\n"

TEST(RateLimitConfigTest, ReadsEveryField) {
  LoadResult r = parseLocalConfig(RL_HEAD
                                  "    targetRefs:\n"
                                  "    - {group: \"\", kind: Service, name: cart}\n"
                                  "    - {group: gateway.networking.k8s.io, kind: HTTPRoute, "
                                  "name: cart-api}\n"
                                  "    total: {requestsPerSecond: 100}\n"
                                  "    identity: {requestsPerSecond: 20}\n"
                                  "    overrides:\n"
                                  "    - requestsPerSecond: 50\n"
                                  "      clientRefs:\n"
                                  "      - {kind: ServiceAccount, name: bot}\n"
                                  "      - {kind: ServiceAccount, namespace: ops, name: admin}\n"
                                  "    header: {name: X-Tenant, requestsPerSecond: 5}\n",
                                  "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  EXPECT_TRUE(r.warnings.empty());
  ASSERT_EQ(r.snapshot->rateLimitPolicies().size(), 1u);
  const model::RateLimitPolicy& p = r.snapshot->rateLimitPolicies()[0];
  EXPECT_EQ(p.key(), "shop/cart-rl");
  ASSERT_EQ(p.target_refs.size(), 2u);
  EXPECT_EQ(p.target_refs[0].kind, model::RateLimitTargetRef::Kind::kService);
  EXPECT_EQ(p.target_refs[1].kind, model::RateLimitTargetRef::Kind::kHttpRoute);
  EXPECT_EQ(p.target_refs[1].name, "cart-api");
  EXPECT_EQ(p.total_rps, 100u);
  EXPECT_EQ(p.identity_rps, 20u);
  ASSERT_EQ(p.overrides.size(), 1u);
  EXPECT_EQ(p.overrides[0].requests_per_second, 50u);
  ASSERT_EQ(p.overrides[0].client_refs.size(), 2u);
  EXPECT_EQ(p.overrides[0].client_refs[0], (model::RateLimitClientRef{"shop", "bot"}));
  EXPECT_EQ(p.overrides[0].client_refs[1], (model::RateLimitClientRef{"ops", "admin"}));
  ASSERT_TRUE(p.header);
  EXPECT_EQ(p.header->name, "x-tenant");
  EXPECT_EQ(p.header->requests_per_second, 5u);
  EXPECT_THAT(r.snapshot->summary(), HasSubstr("1 rate limit policy"));
}

TEST(RateLimitConfigTest, LinkerdsSingularTargetRefAndDefaults) {
  LoadResult r = parseLocalConfig(RL_TARGETED "    total: {requestsPerSecond: 7}\n", "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  const model::RateLimitPolicy& p = r.snapshot->rateLimitPolicies()[0];
  ASSERT_EQ(p.target_refs.size(), 1u);
  EXPECT_EQ(p.total_rps, 7u);
  EXPECT_FALSE(p.identity_rps);
  EXPECT_FALSE(p.header);
}

TEST(RateLimitConfigTest, AnUnknownTargetIsAWarning) {
  LoadResult r = parseLocalConfig(RL_HEAD
                                  "    targetRef: {group: \"\", kind: Service, name: kart}\n"
                                  "    total: {requestsPerSecond: 7}\n",
                                  "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].line, 19);
  EXPECT_THAT(r.warnings[0].reason,
              HasSubstr("targets Service shop/kart, which this file does not define"));
}

struct BadCase {
  std::string_view name;
  std::string_view yaml;
  int line;
  std::string_view reason;
};

const BadCase kCases[] = {
    {"WrongApiVersion",
     RL_TARGETS "rateLimitPolicies:\n- apiVersion: policy.linkerd.io/v1beta1\n"
                "  kind: HTTPLocalRateLimitPolicy\n  metadata: {name: x}\n"
                "  spec: {targetRef: {kind: Service, name: cart}, total: {requestsPerSecond: 1}}\n",
     15, "unsupported apiVersion 'policy.linkerd.io/v1beta1'"},
    {"WrongKind",
     RL_TARGETS "rateLimitPolicies:\n- apiVersion: policy.linkerd.io/v1alpha1\n"
                "  kind: RateLimitPolicy\n  metadata: {name: x}\n"
                "  spec: {targetRef: {kind: Service, name: cart}, total: {requestsPerSecond: 1}}\n",
     16, "expected HTTPLocalRateLimitPolicy"},
    {"NoTarget", RL_HEAD "    total: {requestsPerSecond: 1}\n", 19,
     "needs targetRef or targetRefs"},
    {"BothTargetForms",
     RL_TARGETED
     "    targetRefs: [{kind: Service, name: cart}]\n    total: {requestsPerSecond: 1}\n",
     21, "not both"},
    {"LinkerdServerTarget",
     RL_HEAD "    targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}\n"
             "    total: {requestsPerSecond: 1}\n",
     19, "kind Server is Linkerd's"},
    {"UnsupportedTargetKind",
     RL_HEAD "    targetRef: {group: apps, kind: Deployment, name: cart}\n"
             "    total: {requestsPerSecond: 1}\n",
     19, "unsupported target group 'apps' kind 'Deployment'"},
    {"RouteWithoutGroup",
     RL_HEAD
     "    targetRef: {kind: HTTPRoute, name: cart-api}\n    total: {requestsPerSecond: 1}\n",
     19, "unsupported target group '' kind 'HTTPRoute'"},
    {"EmptyTargetRefs", RL_HEAD "    targetRefs: []\n    total: {requestsPerSecond: 1}\n", 19,
     "targetRefs must not be empty"},
    {"NoLimit", RL_TARGETED, 19, "needs at least one of total, identity, overrides, header"},
    {"ZeroRate", RL_TARGETED "    total: {requestsPerSecond: 0}\n", 21,
     "0 out of range (1-1000000)"},
    {"RateTooHigh", RL_TARGETED "    identity: {requestsPerSecond: 2000000}\n", 21,
     "out of range (1-1000000)"},
    {"RateNotANumber", RL_TARGETED "    total: {requestsPerSecond: lots}\n", 21, ""},
    {"UnknownSpecField",
     RL_TARGETED "    total: {requestsPerSecond: 1}\n    totl: {requestsPerSecond: 1}\n", 22,
     "totl"},
    {"UnknownLimitField", RL_TARGETED "    total: {requestsPerSecond: 1, burst: 5}\n", 21, "burst"},
    {"IdentityAboveTotal",
     RL_TARGETED "    total: {requestsPerSecond: 10}\n    identity: {requestsPerSecond: 20}\n", 22,
     "identity.requestsPerSecond (20) is above total.requestsPerSecond (10)"},
    {"OverrideAboveTotal",
     RL_TARGETED "    total: {requestsPerSecond: 10}\n    overrides:\n"
                 "    - {requestsPerSecond: 11, clientRefs: [{kind: ServiceAccount, name: bot}]}\n",
     23, "override requestsPerSecond (11) is above total.requestsPerSecond (10)"},
    {"OverrideWithoutClients",
     RL_TARGETED "    overrides:\n    - {requestsPerSecond: 1, clientRefs: []}\n", 22,
     "clientRefs must not be empty"},
    {"OverrideClientNotAServiceAccount",
     RL_TARGETED "    overrides:\n"
                 "    - {requestsPerSecond: 1, clientRefs: [{kind: Namespace, name: shop}]}\n",
     22, "unsupported clientRef kind 'Namespace'"},
    {"ClientInTwoOverrides",
     RL_TARGETED "    overrides:\n"
                 "    - {requestsPerSecond: 1, clientRefs: [{kind: ServiceAccount, name: bot}]}\n"
                 "    - {requestsPerSecond: 2, clientRefs: [{kind: ServiceAccount, name: bot}]}\n",
     23, "ServiceAccount shop/bot is already in an override (line 22)"},
    {"BadHeaderName", RL_TARGETED "    header: {name: \"x tenant\", requestsPerSecond: 1}\n", 21,
     "invalid header name"},
    {"HeaderWithoutRate", RL_TARGETED "    header: {name: x-tenant}\n", 21, "requestsPerSecond"},
    {"DuplicatePolicy",
     RL_TARGETED "    total: {requestsPerSecond: 1}\n"
                 "- apiVersion: policy.linkerd.io/v1alpha1\n"
                 "  kind: HTTPLocalRateLimitPolicy\n"
                 "  metadata: {name: cart-rl, namespace: shop}\n"
                 "  spec: {targetRef: {kind: HTTPRoute, group: gateway.networking.k8s.io, "
                 "name: cart-api}, total: {requestsPerSecond: 1}}\n",
     24, "duplicate HTTPLocalRateLimitPolicy 'shop/cart-rl' (first defined at line 17)"},
    {"TwoPoliciesOneTarget",
     RL_TARGETED "    total: {requestsPerSecond: 1}\n"
                 "- apiVersion: policy.linkerd.io/v1alpha1\n"
                 "  kind: HTTPLocalRateLimitPolicy\n"
                 "  metadata: {name: other, namespace: shop}\n"
                 "  spec:\n"
                 "    targetRef: {kind: Service, name: cart}\n"
                 "    total: {requestsPerSecond: 1}\n",
     26, "Service shop/cart is already the target of rate limit policy 'shop/cart-rl' (line 19)"},
    {"NotAList", RL_TARGETS "rateLimitPolicies: {name: x}\n", 14, ""},
};

class BadRateLimitTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadRateLimitTest, IsRejectedWithLineAndReason) {
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

INSTANTIATE_TEST_SUITE_P(Cases, BadRateLimitTest, ::testing::ValuesIn(kCases), caseName);

}  // namespace
}  // namespace nodemesh::config::local_config_test
