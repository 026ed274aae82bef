// parseLocalConfig on `destinationRules` (Istio DestinationRule objects): a full rule read into
// the model with Istio's defaults filled in, short host names resolved in the rule's namespace,
// then a table of malformed or unsupported ones, one problem each with its line and reason, and
// the warning for a host the file does not define.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "config/local/local_config.h"
#include "tests/unit/config/local_config_test_util.h"

namespace nodemesh::config::local_config_test {
namespace {

using ::testing::HasSubstr;

// A service (lines 1-3) and a rule up to its spec (lines 4-8); cases add spec fields from line 9.
#define DR_HEAD                                                              \
  "services:\n"                                                              \
  "- {name: cart, namespace: shop, hostname: cart.shop.svc.cluster.local,\n" \
  "   vips: [\"/10.96.0.20\"], ports: {80: 8080}}\n"                         \
  "destinationRules:\n"                                                      \
  "- apiVersion: networking.istio.io/v1\n"                                   \
  "  kind: DestinationRule\n"                                                \
  "  metadata: {name: cart-dr, namespace: shop}\n"                           \
  "  spec:\n"

// Lines 9-10: the host and trafficPolicy; cases add policy fields from line 11.
#define DR_POLICY DR_HEAD "    host: cart\n    trafficPolicy:\n"

TEST(DestinationRuleConfigTest, ReadsEveryField) {
  LoadResult r =
      parseLocalConfig(DR_POLICY
                       "      connectionPool:\n"
                       "        tcp: {maxConnections: 4}\n"
                       "        http: {http1MaxPendingRequests: 2, http2MaxRequests: 8,\n"
                       "               maxRequestsPerConnection: 100}\n"
                       "      outlierDetection:\n"
                       "        consecutive5xxErrors: 3\n"
                       "        consecutiveGatewayErrors: 2\n"
                       "        interval: 1s\n"
                       "        baseEjectionTime: 1m30s\n"
                       "        maxEjectionPercent: 50\n"
                       "        minHealthPercent: 25\n",
                       "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  EXPECT_TRUE(r.warnings.empty());
  ASSERT_EQ(r.snapshot->destinationRules().size(), 1u);
  const model::DestinationRule& d = r.snapshot->destinationRules()[0];
  EXPECT_EQ(d.key(), "shop/cart-dr");
  EXPECT_EQ(d.host, "cart");
  EXPECT_EQ(d.service_host, "cart.shop.svc.cluster.local");
  ASSERT_TRUE(d.connection_pool);
  EXPECT_EQ(d.connection_pool->max_connections, 4u);
  EXPECT_EQ(d.connection_pool->http1_max_pending_requests, 2u);
  EXPECT_EQ(d.connection_pool->http2_max_requests, 8u);
  EXPECT_EQ(d.connection_pool->max_requests_per_connection, 100u);
  ASSERT_TRUE(d.outlier_detection);
  EXPECT_EQ(d.outlier_detection->consecutive_5xx_errors, 3u);
  EXPECT_EQ(d.outlier_detection->consecutive_gateway_errors, 2u);
  EXPECT_EQ(d.outlier_detection->interval, std::chrono::seconds(1));
  EXPECT_EQ(d.outlier_detection->base_ejection_time, std::chrono::seconds(90));
  EXPECT_EQ(d.outlier_detection->max_ejection_percent, 50u);
  EXPECT_EQ(d.outlier_detection->min_health_percent, 25u);
  const model::Service* cart = r.snapshot->serviceByName("shop/cart");
  ASSERT_NE(cart, nullptr);
  EXPECT_EQ(r.snapshot->destinationRuleFor(*cart), &d);
  EXPECT_THAT(r.snapshot->summary(), HasSubstr("1 destination rule"));
}

TEST(DestinationRuleConfigTest, IstiosDefaults) {
  LoadResult r = parseLocalConfig(DR_POLICY
                                  "      outlierDetection: {}\n"
                                  "      connectionPool: {tcp: {maxConnections: 0}}\n",
                                  "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  const model::DestinationRule& d = r.snapshot->destinationRules()[0];
  ASSERT_TRUE(d.outlier_detection);
  EXPECT_EQ(*d.outlier_detection, model::OutlierDetection{});
  EXPECT_EQ(d.outlier_detection->consecutive_5xx_errors, 5u);
  EXPECT_EQ(d.outlier_detection->consecutive_gateway_errors, 0u);
  EXPECT_EQ(d.outlier_detection->interval, std::chrono::seconds(10));
  EXPECT_EQ(d.outlier_detection->base_ejection_time, std::chrono::seconds(30));
  EXPECT_EQ(d.outlier_detection->max_ejection_percent, 10u);
  EXPECT_EQ(d.outlier_detection->min_health_percent, 0u);
  ASSERT_TRUE(d.connection_pool);
  EXPECT_FALSE(d.connection_pool->max_connections);  // 0 is Istio's "unset": unlimited
}

TEST(DestinationRuleConfigTest, AnFqdnHostIsKeptAndAnUnknownOneWarns) {
  LoadResult r = parseLocalConfig(DR_HEAD "    host: kart.shop.svc.cluster.local\n", "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  EXPECT_EQ(r.snapshot->destinationRules()[0].service_host, "kart.shop.svc.cluster.local");
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].line, 9);
  EXPECT_THAT(r.warnings[0].reason, HasSubstr("names no service in this file"));
}

struct BadCase {
  std::string_view name;
  std::string_view yaml;
  int line;
  std::string_view reason;
};

const BadCase kCases[] = {
    {"WrongApiVersion",
     "destinationRules:\n- apiVersion: networking.istio.io/v2\n  kind: DestinationRule\n"
     "  metadata: {name: x}\n  spec: {host: cart}\n",
     2, "unsupported apiVersion 'networking.istio.io/v2'"},
    {"WrongKind",
     "destinationRules:\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n"
     "  metadata: {name: x}\n  spec: {host: cart}\n",
     3, "expected DestinationRule"},
    {"NoHost", DR_HEAD "    trafficPolicy: {}\n", 9, "host"},
    {"WildcardHost", DR_HEAD "    host: \"*.shop.svc.cluster.local\"\n", 9, "wildcard host"},
    {"Subsets", DR_HEAD "    host: cart\n    subsets: [{name: v1, labels: {version: v1}}]\n", 10,
     "subsets is not supported"},
    {"PortLevelSettings", DR_POLICY "      portLevelSettings: []\n", 11,
     "portLevelSettings is not supported"},
    {"LoadBalancer", DR_POLICY "      loadBalancer: {simple: ROUND_ROBIN}\n", 11,
     "loadBalancer is not supported"},
    {"UnknownPolicyField", DR_POLICY "      outlierDetecton: {}\n", 11, "outlierDetecton"},
    {"UnknownOutlierField", DR_POLICY "      outlierDetection: {ejectAfter: 3}\n", 11,
     "ejectAfter"},
    {"LocalOriginSplit",
     DR_POLICY "      outlierDetection: {splitExternalLocalOriginErrors: true}\n", 11,
     "splitExternalLocalOriginErrors is not supported"},
    {"NegativeErrors", DR_POLICY "      outlierDetection: {consecutive5xxErrors: -1}\n", 11, ""},
    {"EjectionPercentOver100", DR_POLICY "      outlierDetection: {maxEjectionPercent: 101}\n", 11,
     "101 out of range (0-100)"},
    {"MinHealthOver100", DR_POLICY "      outlierDetection: {minHealthPercent: 200}\n", 11,
     "200 out of range (0-100)"},
    {"BadInterval", DR_POLICY "      outlierDetection: {interval: soon}\n", 11, "invalid duration"},
    {"ZeroBaseEjection", DR_POLICY "      outlierDetection: {baseEjectionTime: 0s}\n", 11,
     "baseEjectionTime must be at least 1ms"},
    {"NegativeMaxConnections", DR_POLICY "      connectionPool: {tcp: {maxConnections: -1}}\n", 11,
     ""},
    {"UnsupportedTcpField", DR_POLICY "      connectionPool: {tcp: {connectTimeout: 1s}}\n", 11,
     "connectTimeout is not supported"},
    {"UnsupportedHttpField", DR_POLICY "      connectionPool: {http: {maxRetries: 3}}\n", 11,
     "maxRetries is not supported"},
    {"DuplicateRule",
     DR_HEAD "    host: cart\n"
             "- apiVersion: networking.istio.io/v1\n  kind: DestinationRule\n"
             "  metadata: {name: cart-dr, namespace: shop}\n  spec: {host: other}\n",
     12, "duplicate DestinationRule 'shop/cart-dr' (first defined at line 7)"},
    {"TwoRulesOneHost",
     DR_HEAD "    host: cart\n"
             "- apiVersion: networking.istio.io/v1\n  kind: DestinationRule\n"
             "  metadata: {name: other, namespace: shop}\n"
             "  spec: {host: cart.shop.svc.cluster.local}\n",
     13, "already has DestinationRule 'shop/cart-dr'"},
};

class BadDestinationRuleTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadDestinationRuleTest, IsRejectedWithLineAndReason) {
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

INSTANTIATE_TEST_SUITE_P(Cases, BadDestinationRuleTest, ::testing::ValuesIn(kCases), caseName);

}  // namespace
}  // namespace nodemesh::config::local_config_test
