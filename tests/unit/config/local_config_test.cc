// parseLocalConfig / loadLocalConfigFile: files, examples, every field, problems and warnings.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "config/local/local_config.h"
#include "tests/unit/config/local_config_test_util.h"

namespace nodemesh::config::local_config_test {
namespace {

using ::testing::HasSubstr;

const std::string kTestdata = std::string(NODEMESH_TESTDATA_DIR) + "/config";
const std::string kExamples = NODEMESH_EXAMPLES_DIR;

IpAddress ip(std::string_view text) {
  return IpAddress::parse(text).value();
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
  ASSERT_EQ(svc->cidr_vips.size(), 2u);
  EXPECT_EQ(svc->cidr_vips[0].network, "net1");
  EXPECT_EQ(svc->cidr_vips[0].cidr, Cidr::parse("10.96.128.0/20").value());
  EXPECT_EQ(svc->cidr_vips[1].toString(), "/fd00:97::/64");
  ASSERT_EQ(svc->weighted_waypoints.size(), 2u);
  EXPECT_EQ(svc->weighted_waypoints[0].destination.toString(), "/10.96.0.99:15008");
  EXPECT_EQ(svc->weighted_waypoints[0].weight, 90u);
  EXPECT_EQ(svc->weighted_waypoints[1].destination.toString(),
            "shop/canary-waypoint.shop.svc.cluster.local:15018");
  EXPECT_EQ(svc->weighted_waypoints[1].weight, 10u);
  EXPECT_TRUE(svc->canonical);
  EXPECT_EQ(svc->visibility, model::Visibility::Namespace);
  EXPECT_TRUE(svc->ingress_use_waypoint);
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

// Found by fuzzing (docs/fuzzing.md): a stray ',' at the start of a line made yaml-cpp 0.7's
// LoadAll() append empty documents until the process ran out of memory. Broken, this test never
// ends (ctest's timeout fails it).
TEST(LocalConfigTest, AStrayCommaIsASyntaxErrorNotAHang) {
  std::string path = kTestdata + "/stalled_document.yaml";
  LoadResult r = loadLocalConfigFile(path);
  EXPECT_EQ(r.snapshot, nullptr);
  ASSERT_EQ(r.problems.size(), 1u) << allProblems(r);
  EXPECT_EQ(r.problems[0].line, 5);
  EXPECT_EQ(r.problems[0].reason, "YAML syntax error: a node cannot start with ',' (column 1)");
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

// The shared checks (model::validate) that only warn: an address two workloads claim, a VIP two
// services claim. Host-network workloads share the node's address without a warning.
TEST(LocalConfigTest, WarnsAboutSharedAddressesAndVips) {
  LoadResult r = parseLocalConfig(
      "workloads:\n"
      "- {uid: a, namespace: shop, workloadIps: [10.0.0.1]}\n"
      "- {uid: b, namespace: shop, workloadIps: [10.0.0.2, 10.0.0.1]}\n"
      "- {uid: c, namespace: shop, network: other, workloadIps: [10.0.0.1]}\n"
      "- {uid: h1, namespace: shop, networkMode: HostNetwork, workloadIps: [10.0.0.9]}\n"
      "- {uid: h2, namespace: shop, networkMode: HostNetwork, workloadIps: [10.0.0.9]}\n"
      "services:\n"
      "- {name: a, namespace: shop, hostname: a.shop, vips: [/10.96.0.1], ports: {}}\n"
      "- {name: b, namespace: shop, hostname: b.shop, vips: [/10.96.0.1], ports: {}}\n",
      "shared.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_EQ(r.warnings[0].line, 3);
  EXPECT_THAT(r.warnings[0].reason,
              HasSubstr("address 10.0.0.1 also belongs to workload 'a'; lookups by address prefer "
                        "a pod, then an HBONE workload (defined at line 2)"));
  EXPECT_EQ(r.warnings[1].line, 9);
  EXPECT_THAT(r.warnings[1].reason,
              HasSubstr("VIP /10.96.0.1 also belongs to service 'shop/a.shop'"));
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

// The values of the HTTP attributes are kept, in Istio's string form, for the waypoint.
TEST(LocalConfigTest, HttpMatchValuesAndWhenConditions) {
  LoadResult r = parseLocalConfig(
      "policies:\n"
      "- name: l7\n"
      "  namespace: shop\n"
      "  scope: Namespace\n"
      "  action: Allow\n"
      "  rules:\n"
      "  - - - methods: [GET, '*']\n"
      "        paths: [/api/*, '*.css', /exact]\n"
      "        notHosts: [Admin.Example.com:8080]\n"
      "        requestPrincipals: [https://iss/*]\n"
      "        when:\n"
      "        - {key: 'request.headers[X-User]', values: [alice]}\n"
      "        - {key: 'request.auth.claims[realm][role]', notValues: [guest]}\n"
      "        - {key: source.ip, values: [10.0.0.0/8]}\n"
      "        - {key: destination.port, values: [8080]}\n",
      "l7.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  const model::Authorization* p = r.snapshot->policy("shop/l7");
  ASSERT_NE(p, nullptr);
  const model::Match& m = p->rules[0][0][0];
  using model::StringMatch;
  EXPECT_EQ(m.methods,
            (std::vector<StringMatch>{StringMatch::exact("GET"), StringMatch::presence()}));
  EXPECT_EQ(m.paths,
            (std::vector<StringMatch>{StringMatch::prefix("/api/"), StringMatch::suffix(".css"),
                                      StringMatch::exact("/exact")}));
  EXPECT_EQ(m.not_hosts, std::vector<StringMatch>{StringMatch::exact("admin.example.com:8080")});
  EXPECT_EQ(m.request_principals, std::vector<StringMatch>{StringMatch::prefix("https://iss/")});
  ASSERT_EQ(m.when.size(), 4u);
  EXPECT_EQ(m.when[0].key, model::Condition::Key::kRequestHeader);
  EXPECT_EQ(m.when[0].header, "x-user");
  EXPECT_EQ(m.when[1].key, model::Condition::Key::kAuthClaim);
  EXPECT_EQ(m.when[1].claim_path, (std::vector<std::string>{"realm", "role"}));
  EXPECT_EQ(m.when[1].not_values, std::vector<StringMatch>{StringMatch::exact("guest")});
  EXPECT_EQ(m.when[2].ips.size(), 1u);
  EXPECT_EQ(m.when[3].ports, std::vector<uint16_t>{8080});
  EXPECT_EQ(m.l7_fields, (std::vector<std::string>{"notHosts", "methods", "paths",
                                                   "requestPrincipals", "when"}));
  EXPECT_FALSE(m.l4Empty());  // source.ip and destination.port are L4 conditions
}

}  // namespace
}  // namespace nodemesh::config::local_config_test
