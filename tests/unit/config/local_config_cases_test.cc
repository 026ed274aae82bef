// parseLocalConfig: a table of malformed inputs (one problem each) and of inputs ztunnel accepts.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "config/local/local_config.h"
#include "tests/unit/config/local_config_test_util.h"

namespace nodemesh::config::local_config_test {
namespace {

using ::testing::HasSubstr;

// One malformed input, the single problem it must produce: its line and part of its reason.
struct BadCase {
  std::string_view name;
  std::string_view yaml;
  int line;
  std::string_view reason;
};

#define SVC "services:\n- name: a\n  namespace: shop\n  hostname: a.shop\n  vips: []\n  ports: {}\n"

const BadCase kBadCases[] = {
    // YAML syntax.
    {"UnclosedFlowList", WORKLOAD_HEAD "  workloadIps: [\"10.0.0.1\"\n", 5, "YAML syntax error"},
    {"UnclosedFlowMap", "services: [{name: a\n", 2, "YAML syntax error"},
    {"BadIndentation", WORKLOAD_HEAD "  workloadIps: []\n   node: n1\n", 5, "YAML syntax error"},
    {"UnterminatedQuoteAtEnd", WORKLOAD_HEAD "  workloadIps: []\n  node: \"node1\n", 5,
     "unterminated quoted string"},
    // yaml-cpp 0.7 would load empty documents here for ever (jbeder/yaml-cpp#1319).
    {"LeadingComma", ",\n", 1, "YAML syntax error: a node cannot start with ',' (column 1)"},
    {"CommaAfterComments", "# a mesh\n# two nodes\n, three pods\nworkloads: []\n", 3,
     "YAML syntax error: a node cannot start with ','"},
    {"TwoDocuments", "workloads: []\n---\npolicies: []\n", 3, "more than one YAML document"},
    {"TopLevelList", "- uid: a\n", 1, "got a list"},
    {"TopLevelScalar", "hello\n", 1, "expected the top level (a map), got 'hello'"},
    // Unknown keys.
    {"UnknownTopLevelKey", "workloads: []\nworkload: []\n", 2,
     "unknown field 'workload' in the top level (did you mean 'workloads'?); allowed: "
     "workloads, services, policies"},
    {"UnknownWorkloadKey", WORKLOAD_HEAD "  workloadIps: []\n  serviceAcount: cart\n", 5,
     "unknown field 'serviceAcount' in workload (did you mean 'serviceAccount'?)"},
    {"OldSingularWorkloadIp", WORKLOAD_HEAD "  workloadIps: []\n  workloadIp: 10.0.0.1\n", 5,
     "unknown field 'workloadIp' in workload (did you mean 'workloadIps'?)"},
    {"UnknownServiceKey",
     "services:\n- name: a\n  namespace: shop\n  hostname: a.shop\n  vips: []\n  ports: {}\n"
     "  selector: {app: a}\n",
     7, "unknown field 'selector' in service"},
    {"UnknownPolicyKey", POLICY_HEAD "  - - - destinationPorts: [80]\n  priority: 1\n", 8,
     "unknown field 'priority' in policy"},
    {"UnknownMatchKey", POLICY_HEAD "  - - - notDestinationPort: [80]\n", 7,
     "unknown field 'notDestinationPort' in policy match (did you mean 'notDestinationPorts'?)"},
    {"UnknownGatewayKey",
     WORKLOAD_HEAD "  workloadIps: []\n  waypoint:\n    destination: /10.0.0.9\n"
                   "    hboneMtlsPort: 15008\n    port: 1\n",
     8, "unknown field 'port' in gateway address"},
    {"DuplicateKey", WORKLOAD_HEAD "  workloadIps: []\n  namespace: other\n", 5,
     "duplicate key 'namespace' (first at line 3)"},
    // Wrong types.
    {"WorkloadsIsAMap", "workloads:\n  uid: a\n", 2, "workloads: expected a list, got a map"},
    {"WorkloadIsAString", "workloads:\n- w1\n", 2, "expected workload (a map), got 'w1'"},
    {"IpsIsAString", WORKLOAD_HEAD "  workloadIps: 10.0.0.1\n", 4,
     "workloads[0].workloadIps: expected a list, got '10.0.0.1'"},
    {"PortIsAString",
     "services:\n- name: a\n  namespace: shop\n  hostname: a.shop\n  vips: []\n"
     "  ports: {80: \"8080\"}\n",
     6, "expected a port number, got the string \"8080\""},
    {"PortIsAWord", POLICY_HEAD "  - - - destinationPorts: [http]\n", 7,
     "expected a port number, got 'http'"},
    {"NameIsAList", WORKLOAD_HEAD "  workloadIps: []\n  name: [a, b]\n", 5,
     "workloads[0].name: expected a string, got a list"},
    {"BoolIsAWord", POLICY_HEAD "  - - - destinationPorts: [80]\n  dryRun: yes\n", 8,
     "expected true or false, got 'yes'"},
    {"RulesNotNested", POLICY_HEAD "  - destinationPorts: [80]\n", 7,
     "policies[0].rules[0]: expected a list, got a map"},
    {"StringMatchIsAPlainString", POLICY_HEAD "  - - - principals: [cluster.local/ns/a/sa/b]\n", 7,
     "expected a string match such as {Exact: value}"},
    {"StringMatchUnknownKind", POLICY_HEAD "  - - - namespaces: [{Regex: \"a.*\"}]\n", 7,
     "unknown string match 'Regex'"},
    {"StringMatchTwoKinds", POLICY_HEAD "  - - - namespaces: [{Exact: a, Prefix: b}]\n", 7,
     "a string match has exactly one key"},
    {"PresenceWithValue", POLICY_HEAD "  - - - principals: [{Presence: yes}]\n", 7,
     "Presence takes no value"},
    // Bad addresses.
    {"BadWorkloadIp", WORKLOAD_HEAD "  workloadIps: [\"10.0.0.1\", \"10.0.0.256\"]\n", 4,
     "workloads[0].workloadIps[1]: invalid IP address '10.0.0.256'"},
    {"VipWithoutNetwork",
     "services:\n- name: a\n  namespace: shop\n  hostname: a.shop\n  vips: [10.96.0.1]\n"
     "  ports: {}\n",
     5, "is not of the form network/IP (the network may be empty: '/10.96.0.1')"},
    {"VipBadIp",
     "services:\n- name: a\n  namespace: shop\n  hostname: a.shop\n  vips: [/10.96.0]\n"
     "  ports: {}\n",
     5, "invalid VIP"},
    {"BadCidrPrefix", POLICY_HEAD "  - - - sourceIps: [\"10.0.0.0/40\"]\n", 7,
     "invalid CIDR '10.0.0.0/40'"},
    {"BadCidrAddress", POLICY_HEAD "  - - - notDestinationIps: [\"10.0.0/8\"]\n", 7,
     "invalid CIDR '10.0.0/8'"},
    {"BadWaypointDestination",
     WORKLOAD_HEAD "  workloadIps: []\n  waypoint: {destination: waypoint, hboneMtlsPort: 15008}\n",
     5, "is neither network/IP nor namespace/hostname"},
    {"ServiceKeyWithoutNamespace",
     WORKLOAD_HEAD "  workloadIps: []\n  services: {cart.shop.svc.cluster.local: {80: 8080}}\n", 5,
     "is not of the form namespace/hostname"},
    // Ports out of range.
    {"PolicyPortZero", POLICY_HEAD "  - - - destinationPorts: [0]\n", 7,
     "port 0 out of range (1-65535)"},
    {"PolicyPortTooBig", POLICY_HEAD "  - - - notDestinationPorts: [65536]\n", 7,
     "port 65536 out of range (1-65535)"},
    {"PolicyPortNegative", POLICY_HEAD "  - - - destinationPorts: [-1]\n", 7,
     "port -1 out of range"},
    {"ServicePortZero",
     "services:\n- name: a\n  namespace: shop\n  hostname: a.shop\n  vips: []\n"
     "  ports: {0: 80}\n",
     6, "port 0 out of range (1-65535)"},
    {"TargetPortTooBig", WORKLOAD_HEAD "  workloadIps: []\n  services: {shop/a: {80: 99999}}\n", 5,
     "port 99999 out of range (1-65535)"},
    {"WaypointPortZero",
     WORKLOAD_HEAD "  workloadIps: []\n  waypoint: {destination: /10.0.0.9, hboneMtlsPort: 0}\n", 5,
     "port 0 out of range"},
    // Duplicates and references.
    {"DuplicateUid",
     WORKLOAD_HEAD "  workloadIps: []\n- uid: w1\n  namespace: other\n  workloadIps: []\n", 5,
     "duplicate workload uid 'w1' (first defined at line 2)"},
    {"DuplicateService",
     "services:\n"
     "- {name: a, namespace: shop, hostname: a.shop, vips: [], ports: {}}\n"
     "- {name: b, namespace: shop, hostname: a.shop, vips: [], ports: {}}\n",
     3, "duplicate service 'shop/a.shop' (first defined at line 2)"},
    {"DuplicatePolicy",
     "policies:\n"
     "- {name: p, namespace: shop, scope: Namespace, action: Deny, rules: []}\n"
     "- {name: p, namespace: shop, scope: Global, action: Allow, rules: []}\n",
     3, "duplicate policy 'shop/p' (first defined at line 2)"},
    {"PolicyReferencingNothing",
     WORKLOAD_HEAD "  workloadIps: []\n  authorizationPolicies:\n  - shop/nope\n", 6,
     "workloads[0].authorizationPolicies[0]: workload references policy 'shop/nope', which is "
     "not defined"},
    {"PolicyReferenceNeedsNamespace",
     "policies:\n- {name: p, namespace: shop, scope: WorkloadSelector, action: Allow, rules: "
     "[]}\n" WORKLOAD_HEAD "  workloadIps: []\n  authorizationPolicies: [p]\n",
     7, "references policy 'p'"},
    // ztunnel's newer Service fields.
    {"CidrVipWithoutPrefix", SVC "  cidrVips: [{network: \"\", cidr: 10.96.0.0}]\n", 7,
     "services[0].cidrVips[0].cidr: '10.96.0.0' has no prefix length (write ip/len)"},
    {"CidrVipBadPrefix", SVC "  cidrVips: [{network: \"\", cidr: 10.96.0.0/33}]\n", 7,
     "invalid prefix length in CIDR '10.96.0.0/33'"},
    {"CidrVipWithoutNetwork", SVC "  cidrVips: [{cidr: 10.96.0.0/16}]\n", 7,
     "missing required field 'network' in CIDR VIP"},
    {"CidrVipUnknownKey", SVC "  cidrVips: [{network: \"\", cidr: 10.96.0.0/16, len: 16}]\n", 7,
     "unknown field 'len' in CIDR VIP"},
    {"CidrVipsIsAString", SVC "  cidrVips: 10.96.0.0/16\n", 7, "expected a list"},
    {"WeightedWaypointWithoutWeight",
     SVC "  weightedWaypoints:\n  - destination: {destination: /10.0.0.9, hboneMtlsPort: 15008}\n",
     8, "missing required field 'weight' in weighted waypoint"},
    {"WeightedWaypointNullDestination",
     SVC "  weightedWaypoints:\n  - {destination: null, weight: 3}\n", 8,
     "destination is required"},
    {"WeightedWaypointNegativeWeight",
     SVC "  weightedWaypoints:\n  - destination: {destination: /10.0.0.9, hboneMtlsPort: 15008}\n"
         "    weight: -1\n",
     9, "weightedWaypoints[0].weight"},
    {"WeightedWaypointBadDestination",
     SVC "  weightedWaypoints:\n  - destination: {destination: nowhere, hboneMtlsPort: 15008}\n"
         "    weight: 1\n",
     8, "is neither network/IP nor namespace/hostname"},
    {"VisibilityUnknown", SVC "  visibility: Private\n", 7, "visibility"},
    {"CanonicalNotABool", SVC "  canonical: maybe\n", 7, "expected true or false, got 'maybe'"},
    {"IngressUseWaypointNotABool", SVC "  ingressUseWaypoint: 1\n", 7, "expected true or false"},
    {"ServiceExtensionsAreXdsOnly", SVC "  extensions: []\n", 7,
     "unknown field 'extensions' in service"},
    // Duplicates inside one item (model::validate).
    {"WorkloadAddressTwice", WORKLOAD_HEAD "  workloadIps: [10.0.0.1, 10.0.0.2, 10.0.0.1]\n", 4,
     "workloads[0].workloadIps[2]: address 10.0.0.1 is listed twice"},
    {"VipTwice",
     "services:\n- name: a\n  namespace: shop\n  hostname: a.shop\n  vips:\n  - /10.96.0.1\n"
     "  - net1/10.96.0.1\n  - /10.96.0.1\n  ports: {}\n",
     8, "services[0].vips[2]: VIP /10.96.0.1 is listed twice"},
    // Missing or empty required fields.
    {"NoUid", "workloads:\n- namespace: shop\n  workloadIps: []\n", 2, "workload has no uid"},
    {"EmptyUid", "workloads:\n- uid: \"\"\n  namespace: shop\n  workloadIps: []\n", 2,
     "workload has an empty uid"},
    {"NoNamespace", "workloads:\n- uid: w1\n  workloadIps: []\n", 2,
     "workloads[0]: missing required field 'namespace' in workload"},
    {"NoWorkloadIps", WORKLOAD_HEAD, 2, "missing required field 'workloadIps' in workload"},
    {"ServiceWithoutVips",
     "services:\n- name: a\n  namespace: shop\n  hostname: a.shop\n  ports: {80: 80}\n", 2,
     "missing required field 'vips' in service"},
    {"ServiceWithoutHostname", "services:\n- {name: a, namespace: shop, vips: [], ports: {}}\n", 2,
     "missing required field 'hostname' in service"},
    {"PolicyWithoutRules",
     "policies:\n- name: p\n  namespace: shop\n  scope: Namespace\n  action: Deny\n", 2,
     "missing required field 'rules' in policy"},
    {"PolicyWithoutScope", "policies:\n- {name: p, namespace: shop, action: Deny, rules: []}\n", 2,
     "missing required field 'scope' in policy"},
    {"GatewayWithoutPort", WORKLOAD_HEAD "  workloadIps: []\n  waypoint: {destination: /1.2.3.4}\n",
     5, "missing required field 'hboneMtlsPort' in gateway address"},
    {"ServiceAccountMatchWithoutAccount",
     POLICY_HEAD "  - - - serviceAccounts: [{namespace: shop}]\n", 7,
     "missing required field 'serviceAccount' in service account match"},
    // HTTP attributes: lists of strings, names spelled as in Istio's AuthorizationPolicy.
    {"HttpFieldNotAList", POLICY_HEAD "  - - - methods: GET\n", 7, "expected a list, got 'GET'"},
    {"HttpFieldValueNotAString", POLICY_HEAD "  - - - paths: [[/a]]\n", 7,
     "expected a string, got a list"},
    {"HttpFieldMisspelled", POLICY_HEAD "  - - - method: [GET]\n", 7,
     "unknown field 'method' in policy match (did you mean 'methods'?)"},
    // Enums.
    {"LowercaseProtocol", WORKLOAD_HEAD "  workloadIps: []\n  protocol: hbone\n", 5,
     "invalid protocol 'hbone'; expected one of: TCP, HBONE"},
    {"ProtoStyleScope",
     "policies:\n- {name: p, namespace: s, scope: WORKLOAD_SELECTOR, "
     "action: Allow, rules: []}\n",
     2, "invalid scope 'WORKLOAD_SELECTOR'; expected one of: Global, Namespace, WorkloadSelector"},
    {"UppercaseAction",
     "policies:\n- {name: p, namespace: s, scope: Global, action: ALLOW, rules: []}\n", 2,
     "invalid action 'ALLOW'; expected one of: Allow, Deny"},
    {"BadStatus", WORKLOAD_HEAD "  workloadIps: []\n  status: Ready\n", 5,
     "invalid status 'Ready'; expected one of: Healthy, Unhealthy"},
    {"BadLoadBalancerMode",
     "services:\n- name: a\n  namespace: shop\n  hostname: a.shop\n  vips: []\n  ports: {}\n"
     "  loadBalancer: {routingPreferences: [], mode: STRICT}\n",
     7, "invalid load balancing mode 'STRICT'; expected one of: Standard, Strict, Failover"},
    {"BadRoutingPreference",
     "services:\n- name: a\n  namespace: shop\n  hostname: a.shop\n  vips: []\n  ports: {}\n"
     "  loadBalancer:\n    routingPreferences: [Rack]\n    mode: Strict\n",
     8, "invalid routing preference 'Rack'"},
// HTTP attributes and `when` conditions.
#define L7_POLICY \
  "policies:\n- name: p\n  namespace: shop\n  scope: Namespace\n  action: Allow\n  rules:\n"
    {"WhenUnknownKey", L7_POLICY "  - - - when: [{key: request.time, values: [x]}]\n", 7,
     "when key 'request.time': unknown or unsupported key"},
    {"WhenBadHeaderKey", L7_POLICY "  - - - when: [{key: 'request.headers[]', values: [x]}]\n", 7,
     "expected request.headers[<name>]"},
    {"WhenUnclosedClaim",
     L7_POLICY "  - - - when: [{key: 'request.auth.claims[groups', values: [x]}]\n", 7,
     "expected request.auth.claims[<name>]"},
    {"WhenNoValues", L7_POLICY "  - - - when: [{key: source.namespace}]\n", 7,
     "needs values or notValues"},
    {"WhenBadIp", L7_POLICY "  - - - when: [{key: source.ip, values: [10.0.0.300]}]\n", 7, ""},
    {"WhenUnknownField",
     L7_POLICY "  - - - when: [{key: source.ip, values: [10.0.0.1], value: x}]\n", 7,
     "unknown field 'value'"},
    {"EmptyMethod", L7_POLICY "  - - - methods: ['']\n", 7, "an empty methods value"},
    {"MethodsNotAList", L7_POLICY "  - - - methods: GET\n", 7, ""},
#undef L7_POLICY
};

class BadConfigTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfigTest, ReportsOneProblemAtTheRightLine) {
  const BadCase& c = GetParam();
  LoadResult r = parseLocalConfig(c.yaml, "bad.yaml");
  EXPECT_EQ(r.snapshot, nullptr);
  ASSERT_EQ(r.problems.size(), 1u) << c.yaml << "\n--- got:\n" << allProblems(r);
  EXPECT_EQ(r.problems[0].file, "bad.yaml");
  EXPECT_EQ(r.problems[0].line, c.line) << r.problems[0].toString();
  EXPECT_THAT(r.problems[0].reason, HasSubstr(std::string(c.reason)));
}

template <typename Case>
std::string caseName(const ::testing::TestParamInfo<Case>& param_info) {
  return std::string(param_info.param.name);
}

INSTANTIATE_TEST_SUITE_P(Cases, BadConfigTest, ::testing::ValuesIn(kBadCases), caseName<BadCase>);

// Inputs ztunnel accepts (serde_yaml's reading of its structs) that must load here too.
struct GoodCase {
  std::string_view name;
  std::string_view yaml;
  // What must have been read (null: loading is all this case checks).
  void (*check)(const model::Snapshot& snapshot) = nullptr;
};

// The first match of the first policy's first rule (POLICY_HEAD cases).
const model::Match& firstMatch(const model::Snapshot& s) {
  return s.policies().at(0).rules.at(0).at(0).at(0);
}

const GoodCase kGoodCases[] = {
    {"FlowStyleEverything",
     "{workloads: [{uid: w, namespace: s, workloadIps: ['10.0.0.1']}], services: [], "
     "policies: []}",
     [](const model::Snapshot& s) {
       ASSERT_EQ(s.workloads().size(), 1u);
       EXPECT_EQ(s.workloads()[0].uid, "w");
       EXPECT_EQ(s.workloads()[0].workload_ips,
                 std::vector<IpAddress>{*IpAddress::parse("10.0.0.1")});
     }},
    {"NullOptionalFields",
     WORKLOAD_HEAD "  workloadIps: []\n  waypoint: null\n  applicationTunnel: ~\n  locality:\n"},
    {"PartialLocality", WORKLOAD_HEAD "  workloadIps: []\n  locality: {region: r1}\n"},
    {"ApplicationTunnelWithoutPort",
     WORKLOAD_HEAD "  workloadIps: []\n  applicationTunnel: {protocol: NONE}\n"},
    {"Ipv6AndMappedAddresses",
     WORKLOAD_HEAD "  workloadIps: ['fd00::1', '::ffff:10.0.0.1', '2001:db8::1']\n"},
    {"HexAndOctalPorts", POLICY_HEAD "  - - - destinationPorts: [0x50, 0o120, +80]\n",
     [](const model::Snapshot& s) {
       EXPECT_EQ(firstMatch(s).destination_ports, (std::vector<uint16_t>{80, 80, 80}));
     }},
    {"QuotedStringsAnywhere",
     "workloads:\n- uid: 'w1'\n  namespace: \"shop\"\n  workloadIps: []\n  protocol: 'HBONE'\n",
     [](const model::Snapshot& s) {
       ASSERT_EQ(s.workloads().size(), 1u);
       EXPECT_EQ(s.workloads()[0].uid, "w1");
       EXPECT_EQ(s.workloads()[0].namespace_name, "shop");
       EXPECT_EQ(s.workloads()[0].protocol, model::Protocol::Hbone);
     }},
    {"NumbersAsStrings", "workloads:\n- uid: 12345\n  namespace: 2024\n  workloadIps: []\n",
     [](const model::Snapshot& s) {
       ASSERT_EQ(s.workloads().size(), 1u);
       EXPECT_EQ(s.workloads()[0].uid, "12345");
       EXPECT_EQ(s.workloads()[0].namespace_name, "2024");
     }},
    {"TagFormStringMatch", POLICY_HEAD "  - - - namespaces: [!Prefix kube-, !Exact shop]\n",
     [](const model::Snapshot& s) {
       EXPECT_EQ(firstMatch(s).namespaces,
                 (std::vector<model::StringMatch>{model::StringMatch::prefix("kube-"),
                                                  model::StringMatch::exact("shop")}));
     }},
    {"PresenceAsNull", POLICY_HEAD "  - - - principals: [{Presence: }]\n"},
    {"EmptyMatchAndClause", POLICY_HEAD "  - - - {}\n  - []\n"},
    {"AnchorsAndAliases",
     "policies:\n- name: a\n  namespace: s\n  scope: Namespace\n  action: Deny\n"
     "  rules: &r [[[destinationPorts: [22]]]]\n"
     "- {name: b, namespace: s, scope: Namespace, action: Deny, rules: *r}\n"},
    {"DocumentStartMarker", "---\nworkloads: []\n"},
    {"ServiceBackedButNotDefined", WORKLOAD_HEAD "  workloadIps: []\n  services: {shop/x: {}}\n"},
    {"WindowsLineEndings", "workloads:\r\n- uid: w\r\n  namespace: s\r\n  workloadIps: []\r\n",
     [](const model::Snapshot& s) {
       ASSERT_EQ(s.workloads().size(), 1u);
       EXPECT_EQ(s.workloads()[0].uid, "w");  // no '\r' left in the value
       EXPECT_EQ(s.workloads()[0].namespace_name, "s");
     }},
    {"EveryHttpField",
     POLICY_HEAD "  - - - {hosts: [a.example], notHosts: [b.example], methods: [GET], notMethods: "
                 "[POST], paths: [/a], notPaths: ['/b*'], requestPrincipals: ['*'], "
                 "notRequestPrincipals: [x/y], remoteIpBlocks: [192.0.2.0/24], "
                 "notRemoteIpBlocks: [192.0.2.1]}\n"},
    {"TargetPortZeroInService",
     "services:\n- {name: a, namespace: s, hostname: a.s, vips: ['/10.96.0.1'], ports: {80: 0}}\n"},
};

class GoodConfigTest : public ::testing::TestWithParam<GoodCase> {};

TEST_P(GoodConfigTest, Loads) {
  LoadResult r = parseLocalConfig(GetParam().yaml, "good.yaml");
  EXPECT_TRUE(r.ok()) << allProblems(r);
  ASSERT_NE(r.snapshot, nullptr);
  if (GetParam().check != nullptr) GetParam().check(*r.snapshot);
}

INSTANTIATE_TEST_SUITE_P(Cases, GoodConfigTest, ::testing::ValuesIn(kGoodCases),
                         caseName<GoodCase>);

}  // namespace
}  // namespace nodemesh::config::local_config_test
