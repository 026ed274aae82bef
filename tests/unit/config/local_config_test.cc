#include "config/local/local_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace nodemesh::config {
namespace {

using ::testing::HasSubstr;

const std::string kTestdata = std::string(NODEMESH_TESTDATA_DIR) + "/config";
const std::string kExamples = NODEMESH_EXAMPLES_DIR;

IpAddress ip(std::string_view text) {
  return IpAddress::parse(text).value();
}

std::string allProblems(const LoadResult& r) {
  return r.problemsText();
}

TEST(LocalConfigTest, ExampleTwoNodesLoads) {
  LoadResult r = loadLocalConfigFile(kExamples + "/two-nodes.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  ASSERT_NE(r.snapshot, nullptr);
  const model::Snapshot& s = *r.snapshot;
  EXPECT_EQ(s.summary(), "4 workloads, 1 service, 2 policies");
  EXPECT_TRUE(r.warnings.empty());

  const model::Workload* frontend = s.workloadByUid("cluster1//v1/Pod/shop/frontend-7d9f");
  ASSERT_NE(frontend, nullptr);
  EXPECT_EQ(frontend->name, "frontend-7d9f");
  EXPECT_EQ(frontend->namespace_name, "shop");
  EXPECT_EQ(frontend->service_account, "frontend");
  EXPECT_EQ(frontend->protocol, model::Protocol::Hbone);
  EXPECT_EQ(frontend->node, "node1");
  EXPECT_EQ(frontend->canonical_name, "frontend");
  EXPECT_EQ(frontend->canonical_revision, "v1");
  EXPECT_EQ(frontend->trust_domain, "cluster.local");
  EXPECT_EQ(frontend->identity(), "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_TRUE(frontend->services.empty());

  const model::Workload* cart_v1 = s.workloadByIp(ip("10.244.2.20"));
  ASSERT_NE(cart_v1, nullptr);
  EXPECT_EQ(cart_v1->uid, "cluster1//v1/Pod/shop/cart-v1-5c2a");
  EXPECT_EQ(cart_v1->authorization_policies, std::vector<std::string>{"shop/cart-allow-frontend"});
  ASSERT_EQ(cart_v1->services.count("shop/cart.shop.svc.cluster.local"), 1u);
  EXPECT_EQ(cart_v1->services.at("shop/cart.shop.svc.cluster.local"), (model::PortMap{{80, 8080}}));

  const model::Workload* batch = s.workloadByIp(ip("10.244.2.30"));
  ASSERT_NE(batch, nullptr);
  EXPECT_EQ(batch->protocol, model::Protocol::Tcp);
  EXPECT_EQ(s.workloadsOnNode("node1").size(), 2u);
  EXPECT_EQ(s.workloadsOnNode("node2").size(), 2u);

  const model::Service* cart = s.serviceByVip(ip("10.96.0.20"));
  ASSERT_NE(cart, nullptr);
  EXPECT_EQ(cart->name, "cart");
  EXPECT_EQ(cart->hostname, "cart.shop.svc.cluster.local");
  ASSERT_EQ(cart->vips.size(), 1u);
  EXPECT_EQ(cart->vips[0].network, "");
  EXPECT_EQ(cart->ports, (model::PortMap{{80, 8080}}));
  EXPECT_EQ(cart->subject_alt_names,
            std::vector<std::string>{"spiffe://cluster.local/ns/shop/sa/cart"});
  EXPECT_EQ(s.endpoints(*cart).size(), 2u);

  const model::Authorization* allow = s.policy("shop/cart-allow-frontend");
  ASSERT_NE(allow, nullptr);
  EXPECT_EQ(allow->scope, model::PolicyScope::WorkloadSelector);
  EXPECT_EQ(allow->action, model::PolicyAction::Allow);
  EXPECT_FALSE(allow->dry_run);
  ASSERT_EQ(allow->rules.size(), 1u);
  ASSERT_EQ(allow->rules[0].size(), 2u);  // two clauses, AND'd
  ASSERT_EQ(allow->rules[0][0].size(), 1u);
  EXPECT_EQ(allow->rules[0][0][0].principals,
            std::vector<model::StringMatch>{
                model::StringMatch::exact("cluster.local/ns/shop/sa/frontend")});
  EXPECT_EQ(allow->rules[0][1][0].destination_ports, std::vector<uint16_t>{8080});

  const model::Authorization* deny = s.policy("shop/deny-debug-port");
  ASSERT_NE(deny, nullptr);
  EXPECT_EQ(deny->scope, model::PolicyScope::Namespace);
  EXPECT_EQ(deny->action, model::PolicyAction::Deny);
  EXPECT_EQ(deny->rules[0][0][0].destination_ports, std::vector<uint16_t>{9999});
}

TEST(LocalConfigTest, ZtunnelExampleShapeLoads) {
  LoadResult r = loadLocalConfigFile(kTestdata + "/ztunnel_localhost.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  EXPECT_EQ(r.snapshot->summary(), "2 workloads, 2 services, 1 policy");
  const model::Service* remote = r.snapshot->serviceByVip(ip("127.10.0.2"));
  ASSERT_NE(remote, nullptr);
  EXPECT_EQ(remote->vips[0].network, "remote");
  EXPECT_EQ(r.snapshot->endpoints(*r.snapshot->serviceByKey("default/example.com")).size(), 2u);
  const model::Authorization* p = r.snapshot->policy("default/allow-but-9999");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->rules[0][0][0].not_destination_ports, std::vector<uint16_t>{9999});
}

TEST(LocalConfigTest, EveryFieldLoads) {
  LoadResult r = loadLocalConfigFile(kTestdata + "/full.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  const model::Snapshot& s = *r.snapshot;
  EXPECT_EQ(s.summary(), "2 workloads, 1 service, 2 policies");

  const model::Workload* w = s.workloadByUid("cluster1//v1/Pod/shop/cart-v1-5c2a");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->service_account, "cart");
  EXPECT_EQ(w->trust_domain, "example.org");
  EXPECT_EQ(w->identity(), "spiffe://example.org/ns/shop/sa/cart");
  ASSERT_EQ(w->workload_ips.size(), 2u);
  EXPECT_EQ(w->workload_ips[1], ip("fd00::20"));
  EXPECT_EQ(w->hostname, "cart-v1.shop.example");
  EXPECT_EQ(w->network, "net1");
  EXPECT_EQ(w->cluster_id, "cluster1");
  EXPECT_EQ(w->network_mode, model::NetworkMode::Standard);
  ASSERT_TRUE(w->waypoint.has_value());
  EXPECT_EQ(std::get<model::NamespacedHostname>(w->waypoint->destination).toString(),
            "shop/waypoint.shop.svc.cluster.local");
  EXPECT_EQ(w->waypoint->hbone_mtls_port, 15008);
  ASSERT_TRUE(w->network_gateway.has_value());
  EXPECT_EQ(w->network_gateway->toString(), "net1/192.0.2.1:15009");
  EXPECT_TRUE(w->native_tunnel);
  ASSERT_TRUE(w->application_tunnel.has_value());
  EXPECT_EQ(w->application_tunnel->protocol, model::ApplicationTunnel::Protocol::Proxy);
  EXPECT_EQ(w->application_tunnel->port, std::optional<uint16_t>(15088));
  EXPECT_EQ(w->workload_name, "cart-v1");
  EXPECT_EQ(w->workload_type, "deployment");
  EXPECT_EQ(w->locality, (model::Locality{"eu-west1", "eu-west1-b", "rack7"}));
  EXPECT_EQ(w->status, model::HealthStatus::Unhealthy);
  EXPECT_EQ(w->capacity, 3u);
  EXPECT_EQ(w->services.at("shop/cart.shop.svc.cluster.local"),
            (model::PortMap{{80, 8080}, {443, 8443}}));

  const model::Workload* host = s.workloadByUid("cluster1//v1/Pod/kube-system/node-agent");
  ASSERT_NE(host, nullptr);
  EXPECT_EQ(host->network_mode, model::NetworkMode::HostNetwork);
  EXPECT_EQ(host->capacity, 1u);
  EXPECT_EQ(host->service_account, "default");

  const model::Service* svc = s.serviceByVip(ip("fd00:96::20"));
  ASSERT_NE(svc, nullptr);
  EXPECT_EQ(svc->vips[1].network, "net1");
  EXPECT_EQ(svc->ports, (model::PortMap{{80, 8080}, {443, 0}}));
  ASSERT_TRUE(svc->waypoint.has_value());
  EXPECT_EQ(svc->waypoint->toString(), "/10.96.0.99:15008");
  ASSERT_TRUE(svc->load_balancing.has_value());
  EXPECT_EQ(svc->load_balancing->routing_preference,
            (std::vector<model::LoadBalancingScope>{model::LoadBalancingScope::Network,
                                                    model::LoadBalancingScope::Region,
                                                    model::LoadBalancingScope::Zone}));
  EXPECT_EQ(svc->load_balancing->mode, model::LoadBalancingMode::Failover);
  EXPECT_EQ(svc->load_balancing->health_policy, model::LoadBalancingHealthPolicy::AllowAll);
  EXPECT_EQ(svc->ip_families, model::IpFamilies::Dual);
  ASSERT_EQ(svc->endpoints.size(), 1u);
  EXPECT_EQ(svc->endpoints[0].workload_uid, "cluster1//v1/Pod/shop/cart-v0");
  EXPECT_EQ(svc->endpoints[0].ports, (model::PortMap{{80, 9090}}));
  EXPECT_EQ(s.endpoints(*svc).size(), 2u);

  const model::Authorization* p = s.policy("shop/cart-allow");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->dry_run);
  ASSERT_EQ(p->rules.size(), 1u);
  ASSERT_EQ(p->rules[0].size(), 2u);
  ASSERT_EQ(p->rules[0][0].size(), 2u);  // two matches in the first clause, OR'd
  const model::Match& m = p->rules[0][0][0];
  EXPECT_EQ(m.namespaces, std::vector<model::StringMatch>{model::StringMatch::exact("shop")});
  EXPECT_EQ(m.not_namespaces, std::vector<model::StringMatch>{model::StringMatch::prefix("kube-")});
  EXPECT_EQ(m.service_accounts, (std::vector<model::ServiceAccountMatch>{{"shop", "frontend"}}));
  EXPECT_EQ(m.not_service_accounts, (std::vector<model::ServiceAccountMatch>{{"shop", "batch"}}));
  EXPECT_EQ(m.principals,
            (std::vector<model::StringMatch>{model::StringMatch::suffix("/sa/frontend"),
                                             model::StringMatch::presence()}));
  EXPECT_EQ(m.not_principals, std::vector<model::StringMatch>{
                                  model::StringMatch::exact("cluster.local/ns/shop/sa/evil")});
  ASSERT_EQ(m.source_ips.size(), 2u);
  EXPECT_TRUE(m.source_ips[0].contains(ip("10.244.3.4")));
  EXPECT_TRUE(m.source_ips[1].contains(ip("fd00::1")));
  ASSERT_EQ(m.not_source_ips.size(), 1u);
  EXPECT_EQ(m.not_source_ips[0].toString(), "10.244.9.9/32");
  const model::Match& m2 = p->rules[0][0][1];
  EXPECT_TRUE(m2.destination_ips[0].contains(ip("10.244.2.7")));
  EXPECT_FALSE(m2.not_destination_ips[0].contains(ip("10.244.2.7")));
  EXPECT_EQ(p->rules[0][1][0].destination_ports, (std::vector<uint16_t>{8080, 8443}));
  EXPECT_EQ(p->rules[0][1][0].not_destination_ports, std::vector<uint16_t>{9090});

  const model::Authorization* global = s.policy("istio-system/global-deny");
  ASSERT_NE(global, nullptr);
  EXPECT_EQ(global->scope, model::PolicyScope::Global);
  EXPECT_EQ(global->action, model::PolicyAction::Deny);
  EXPECT_TRUE(global->rules.empty());
}

TEST(LocalConfigTest, EmptyInputsGiveEmptySnapshot) {
  for (std::string_view text :
       {"", "\n", "# just a comment\n", "---\n", "workloads:\nservices:\npolicies:\n",
        "workloads: []\nservices: []\npolicies: []\n"}) {
    SCOPED_TRACE(text);
    LoadResult r = parseLocalConfig(text, "empty.yaml");
    ASSERT_TRUE(r.ok()) << allProblems(r);
    ASSERT_NE(r.snapshot, nullptr);
    EXPECT_TRUE(r.snapshot->empty());
  }
}

TEST(LocalConfigTest, MissingFileIsLineZero) {
  std::string path = kTestdata + "/does-not-exist.yaml";
  LoadResult r = loadLocalConfigFile(path);
  EXPECT_EQ(r.snapshot, nullptr);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].file, path);
  EXPECT_EQ(r.problems[0].line, 0);
  EXPECT_THAT(r.problems[0].reason, HasSubstr("cannot open config file"));
  EXPECT_THAT(r.problems[0].reason, HasSubstr("No such file or directory"));
  EXPECT_EQ(r.problems[0].toString(), path + ":0: " + r.problems[0].reason);
}

TEST(LocalConfigTest, DirectoryIsNotAConfigFile) {
  LoadResult r = loadLocalConfigFile(kTestdata);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].line, 0);
  EXPECT_THAT(r.problems[0].reason, HasSubstr("not a regular file"));
}

TEST(LocalConfigTest, ProblemToString) {
  ConfigProblem p{"/etc/nodemesh/config.yaml", 12, "workloads[0]: invalid IP address 'x'"};
  EXPECT_EQ(p.toString(), "/etc/nodemesh/config.yaml:12: workloads[0]: invalid IP address 'x'");
}

TEST(LocalConfigTest, TruncatedFileIsASyntaxError) {
  std::string path = kTestdata + "/truncated.yaml";
  LoadResult r = loadLocalConfigFile(path);
  EXPECT_EQ(r.snapshot, nullptr);
  ASSERT_EQ(r.problems.size(), 1u) << allProblems(r);
  EXPECT_EQ(r.problems[0].file, path);
  EXPECT_EQ(r.problems[0].line, 5);
  EXPECT_THAT(r.problems[0].reason, HasSubstr("YAML syntax error"));
}

TEST(LocalConfigTest, ReportsEveryProblemInFileOrder) {
  std::string path = kTestdata + "/many_problems.yaml";
  LoadResult r = loadLocalConfigFile(path);
  EXPECT_EQ(r.snapshot, nullptr);
  struct Expected {
    int line;
    std::string_view reason;
  };
  const Expected expected[] = {
      {4, "workloads[0].workloadIps[0]: invalid IP address '10.0.0.300'"},
      {5, "workloads[0].protocol: invalid protocol 'hbone'; expected one of: TCP, HBONE"},
      {6, "duplicate workload uid 'cluster1//v1/Pod/shop/a' (first defined at line 2)"},
      {9, "unknown field 'colour' in workload"},
      {10, "references policy 'shop/missing', which is not defined"},
      {11, "workload has no uid"},
      {18, "services[0].vips[0]: invalid VIP"},
      {19, "services[0].ports[80]: port 70000 out of range"},
      {26, "unknown field 'destinationPort' in policy match (did you mean 'destinationPorts'?)"},
      {27, "invalid CIDR '10.0.0.0/33'"},
  };
  ASSERT_EQ(r.problems.size(), std::size(expected)) << allProblems(r);
  for (size_t i = 0; i < std::size(expected); ++i) {
    SCOPED_TRACE(r.problems[i].toString());
    EXPECT_EQ(r.problems[i].file, path);
    EXPECT_EQ(r.problems[i].line, expected[i].line);
    EXPECT_THAT(r.problems[i].reason, HasSubstr(std::string(expected[i].reason)));
  }
}

// One malformed input, the single problem it must produce: its line and part of its reason.
struct BadCase {
  std::string_view name;
  std::string_view yaml;
  int line;
  std::string_view reason;
};

// A valid workload to build cases from (lines 1-4).
#define WORKLOAD_HEAD \
  "workloads:\n"      \
  "- uid: w1\n"       \
  "  namespace: shop\n"

#define POLICY_HEAD             \
  "policies:\n"                 \
  "- name: p\n"                 \
  "  namespace: shop\n"         \
  "  scope: WorkloadSelector\n" \
  "  action: Allow\n"           \
  "  rules:\n"

const BadCase kBadCases[] = {
    // YAML syntax.
    {"UnclosedFlowList", WORKLOAD_HEAD "  workloadIps: [\"10.0.0.1\"\n", 5, "YAML syntax error"},
    {"UnclosedFlowMap", "services: [{name: a\n", 2, "YAML syntax error"},
    {"BadIndentation", WORKLOAD_HEAD "  workloadIps: []\n   node: n1\n", 5, "YAML syntax error"},
    {"UnterminatedQuoteAtEnd", WORKLOAD_HEAD "  workloadIps: []\n  node: \"node1\n", 5,
     "unterminated quoted string"},
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
};

const GoodCase kGoodCases[] = {
    {"FlowStyleEverything",
     "{workloads: [{uid: w, namespace: s, workloadIps: ['10.0.0.1']}], services: [], "
     "policies: []}"},
    {"NullOptionalFields",
     WORKLOAD_HEAD "  workloadIps: []\n  waypoint: null\n  applicationTunnel: ~\n  locality:\n"},
    {"PartialLocality", WORKLOAD_HEAD "  workloadIps: []\n  locality: {region: r1}\n"},
    {"ApplicationTunnelWithoutPort",
     WORKLOAD_HEAD "  workloadIps: []\n  applicationTunnel: {protocol: NONE}\n"},
    {"Ipv6AndMappedAddresses",
     WORKLOAD_HEAD "  workloadIps: ['fd00::1', '::ffff:10.0.0.1', '2001:db8::1']\n"},
    {"HexAndOctalPorts", POLICY_HEAD "  - - - destinationPorts: [0x50, 0o120, +80]\n"},
    {"QuotedStringsAnywhere",
     "workloads:\n- uid: 'w1'\n  namespace: \"shop\"\n  workloadIps: []\n  protocol: 'HBONE'\n"},
    {"NumbersAsStrings", "workloads:\n- uid: 12345\n  namespace: 2024\n  workloadIps: []\n"},
    {"TagFormStringMatch", POLICY_HEAD "  - - - namespaces: [!Prefix kube-, !Exact shop]\n"},
    {"PresenceAsNull", POLICY_HEAD "  - - - principals: [{Presence: }]\n"},
    {"EmptyMatchAndClause", POLICY_HEAD "  - - - {}\n  - []\n"},
    {"AnchorsAndAliases",
     "policies:\n- name: a\n  namespace: s\n  scope: Namespace\n  action: Deny\n"
     "  rules: &r [[[destinationPorts: [22]]]]\n"
     "- {name: b, namespace: s, scope: Namespace, action: Deny, rules: *r}\n"},
    {"DocumentStartMarker", "---\nworkloads: []\n"},
    {"ServiceBackedButNotDefined", WORKLOAD_HEAD "  workloadIps: []\n  services: {shop/x: {}}\n"},
    {"WindowsLineEndings", "workloads:\r\n- uid: w\r\n  namespace: s\r\n  workloadIps: []\r\n"},
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
  EXPECT_NE(r.snapshot, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Cases, GoodConfigTest, ::testing::ValuesIn(kGoodCases),
                         caseName<GoodCase>);

TEST(LocalConfigTest, RefusesAliasesThatExpandWithoutBound) {
  // A few kilobytes that alias their way to millions of policy matches ("billion laughs").
  std::string yaml =
      "policies:\n- {name: p, namespace: s, scope: Global, action: Deny, rules: [\n"
      "  &c [&m [&x {destinationPorts: &p [80";
  for (int i = 0; i < 99; ++i) yaml += ", 80";
  yaml += "]}";
  for (int i = 0; i < 9; ++i) yaml += ", *x";
  yaml += "]";
  for (int i = 0; i < 9; ++i) yaml += ", *m";
  yaml += "]";
  for (int i = 0; i < 200; ++i) yaml += ", *c";
  yaml += "]}\n";
  LoadResult r = parseLocalConfig(yaml, "laughs.yaml");
  EXPECT_EQ(r.snapshot, nullptr);
  ASSERT_EQ(r.problems.size(), 1u) << allProblems(r);
  EXPECT_THAT(r.problems[0].reason, HasSubstr("elements after expanding aliases"));
}

TEST(LocalConfigTest, WarnsAboutLikelyMistakesWithoutRejecting) {
  LoadResult r =
      parseLocalConfig(POLICY_HEAD
                       "  - - - principals: [{Exact: spiffe://cluster.local/ns/a/sa/b}]\n"
                       "workloads:\n- uid: w\n  namespace: shop\n  workloadIps: []\n"
                       "  services: {shop/ghost.shop.svc.cluster.local: {80: 80}}\n",
                       "warn.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_EQ(r.warnings[0].line, 7);
  EXPECT_THAT(r.warnings[0].reason, HasSubstr("includes the spiffe:// scheme"));
  EXPECT_EQ(r.warnings[1].line, 12);
  EXPECT_THAT(r.warnings[1].reason, HasSubstr("'shop/ghost.shop.svc.cluster.local'"));
}

// Istio's HTTP attributes load as the names of the fields a match uses (their values are not
// kept: an L4 data plane cannot check them), and each policy using them gets one warning that
// says what they do at L4.
TEST(LocalConfigTest, HttpMatchFieldsAreRecordedWithAWarning) {
  LoadResult r = parseLocalConfig(
      "policies:\n"
      "- name: allow-get\n"                        // 2
      "  namespace: shop\n"                        // 3
      "  scope: Namespace\n"                       // 4
      "  action: Allow\n"                          // 5
      "  rules:\n"                                 // 6
      "  - - - namespaces: [{Exact: shop}]\n"      // 7
      "  - - - namespaces: [{Exact: dev}]\n"       // 8
      "        paths: [/api]\n"                    // 9
      "        methods: [GET, HEAD]\n"             // 10
      "        notHosts: []\n"                     // 11
      "      - methods: [POST]\n"                  // 12
      "- name: deny-no-jwt\n"                      // 13
      "  namespace: shop\n"                        // 14
      "  scope: Namespace\n"                       // 15
      "  action: Deny\n"                           // 16
      "  rules:\n"                                 // 17
      "  - - - notRequestPrincipals: ['*']\n"      // 18
      "        notRemoteIpBlocks: [10.0.0.0/8]\n"  // 19
      "        destinationPorts: [8080]\n",        // 20
      "l7.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  const model::Authorization* allow = r.snapshot->policy("shop/allow-get");
  ASSERT_NE(allow, nullptr);
  ASSERT_EQ(allow->rules.size(), 2u);
  EXPECT_THAT(allow->rules[0][0][0].l7_fields, ::testing::IsEmpty());
  // In the order Istio's docs list them; an empty list names nothing.
  EXPECT_EQ(allow->rules[1][0][0].l7_fields, (std::vector<std::string>{"methods", "paths"}));
  EXPECT_EQ(allow->rules[1][0][0].namespaces,
            std::vector<model::StringMatch>{model::StringMatch::exact("dev")});
  EXPECT_EQ(allow->rules[1][0][1].l7_fields, std::vector<std::string>{"methods"});
  EXPECT_FALSE(allow->rules[1][0][1].empty());
  EXPECT_TRUE(allow->rules[1][0][1].l4Empty());

  const model::Authorization* deny = r.snapshot->policy("shop/deny-no-jwt");
  ASSERT_NE(deny, nullptr);
  EXPECT_EQ(deny->rules[0][0][0].l7_fields,
            (std::vector<std::string>{"notRequestPrincipals", "notRemoteIpBlocks"}));
  EXPECT_EQ(deny->rules[0][0][0].destination_ports, std::vector<uint16_t>{8080});

  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_EQ(r.warnings[0].line, 8);  // the first match that names one
  EXPECT_THAT(r.warnings[0].reason,
              HasSubstr("policy 'shop/allow-get' names HTTP attributes (methods, paths)"));
  EXPECT_THAT(r.warnings[0].reason, HasSubstr("in an ALLOW policy a rule naming them never "
                                              "matches"));
  EXPECT_EQ(r.warnings[1].line, 18);
  EXPECT_THAT(r.warnings[1].reason, HasSubstr("(notRemoteIpBlocks, notRequestPrincipals)"));
  EXPECT_THAT(r.warnings[1].reason, HasSubstr("in a DENY policy they count as matched"));
}

}  // namespace
}  // namespace nodemesh::config
