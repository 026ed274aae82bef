#include "policy/authorizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace nodemesh::policy {
namespace {

using model::Authorization;
using model::Match;
using model::PolicyAction;
using model::PolicyScope;
using model::Rule;
using model::ServiceAccountMatch;
using model::StringMatch;
using model::Workload;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr PolicyAction kAllow = PolicyAction::Allow;
constexpr PolicyAction kDeny = PolicyAction::Deny;

IpAddress ip(std::string_view text) {
  return IpAddress::parse(text).value();
}

Cidr cidr(std::string_view text) {
  return Cidr::parse(text).value();
}

// ---- match builders: one per field, merge() to combine ---------------------------------------

using Strings = std::vector<StringMatch>;
using Accounts = std::vector<ServiceAccountMatch>;
using Cidrs = std::vector<std::string_view>;
using Ports = std::vector<uint16_t>;

std::vector<Cidr> cidrs(const Cidrs& texts) {
  std::vector<Cidr> out;
  out.reserve(texts.size());
  for (std::string_view t : texts) out.push_back(cidr(t));
  return out;
}

StringMatch exact(std::string v) {
  return StringMatch::exact(std::move(v));
}

Match namespaces(Strings v) {
  Match m;
  m.namespaces = std::move(v);
  return m;
}
Match notNamespaces(Strings v) {
  Match m;
  m.not_namespaces = std::move(v);
  return m;
}
Match serviceAccounts(Accounts v) {
  Match m;
  m.service_accounts = std::move(v);
  return m;
}
Match notServiceAccounts(Accounts v) {
  Match m;
  m.not_service_accounts = std::move(v);
  return m;
}
Match principals(Strings v) {
  Match m;
  m.principals = std::move(v);
  return m;
}
Match notPrincipals(Strings v) {
  Match m;
  m.not_principals = std::move(v);
  return m;
}
Match sourceIps(const Cidrs& v) {
  Match m;
  m.source_ips = cidrs(v);
  return m;
}
Match notSourceIps(const Cidrs& v) {
  Match m;
  m.not_source_ips = cidrs(v);
  return m;
}
Match destinationIps(const Cidrs& v) {
  Match m;
  m.destination_ips = cidrs(v);
  return m;
}
Match notDestinationIps(const Cidrs& v) {
  Match m;
  m.not_destination_ips = cidrs(v);
  return m;
}
Match destinationPorts(Ports v) {
  Match m;
  m.destination_ports = std::move(v);
  return m;
}
Match notDestinationPorts(Ports v) {
  Match m;
  m.not_destination_ports = std::move(v);
  return m;
}
// A match naming L7 attributes (config keys such as "methods"), on top of `m`'s L4 fields.
Match l7(std::vector<std::string> fields, Match m = {}) {
  m.l7_fields = std::move(fields);
  return m;
}

// One match with the fields of all of `parts` (each field set in one part only).
Match merge(std::initializer_list<Match> parts) {
  Match m;
  auto take = [](auto& into, const auto& from) {
    if (!from.empty()) into = from;
  };
  for (const Match& p : parts) {
    take(m.namespaces, p.namespaces);
    take(m.not_namespaces, p.not_namespaces);
    take(m.service_accounts, p.service_accounts);
    take(m.not_service_accounts, p.not_service_accounts);
    take(m.principals, p.principals);
    take(m.not_principals, p.not_principals);
    take(m.source_ips, p.source_ips);
    take(m.not_source_ips, p.not_source_ips);
    take(m.destination_ips, p.destination_ips);
    take(m.not_destination_ips, p.not_destination_ips);
    take(m.destination_ports, p.destination_ports);
    take(m.not_destination_ports, p.not_destination_ports);
    take(m.l7_fields, p.l7_fields);
  }
  return m;
}

// ---- connections ----------------------------------------------------------------------------

constexpr std::string_view kFrontendId = "spiffe://cluster.local/ns/shop/sa/frontend";
constexpr std::string_view kBatchId = "spiffe://td-alt/ns/other/sa/batch";
constexpr std::string_view kDevId = "spiffe://cluster.local/ns/dev/sa/tester";

ConnectionAttributes conn(std::string_view src, std::string_view dst, uint16_t port,
                          std::optional<std::string_view> identity) {
  return ConnectionAttributes{ip(src), ip(dst), port, identity};
}

// The three connections of ztunnel's rbac tests: plaintext, mTLS, and mTLS from another peer
// to another address and port.
const ConnectionAttributes kPlaintext = conn("10.0.0.1", "10.0.0.2", 8080, std::nullopt);
const ConnectionAttributes kTls = conn("10.0.0.1", "10.0.0.2", 8080, kFrontendId);
const ConnectionAttributes kTlsAlt = conn("10.1.0.3", "10.0.0.4", 9090, kBatchId);

// ---- snapshots ------------------------------------------------------------------------------

// The destinations every scenario can use: two workloads in "shop" (cart lists its own
// policies), one in "other", one in the root namespace.
Workload workload(std::string uid, std::string ns, std::string_view address,
                  std::vector<std::string> policies = {}) {
  Workload w;
  w.uid = uid;
  w.name = std::move(uid);
  w.namespace_name = std::move(ns);
  w.workload_ips = {ip(address)};
  w.authorization_policies = std::move(policies);
  return w;
}

std::vector<Workload> workloads() {
  return {
      workload("cart", "shop", "10.0.0.2", {"shop/cart-only", "istio-system/root-selector"}),
      workload("frontend", "shop", "10.0.0.3"),
      workload("db", "other", "10.0.0.4"),
      workload("gateway", "istio-system", "10.0.0.5"),
  };
}

Authorization policy(const std::string& ns_and_name, PolicyScope scope, PolicyAction action,
                     std::vector<Rule> rules, bool dry_run = false) {
  auto slash = ns_and_name.find('/');
  Authorization p;
  p.name = ns_and_name.substr(slash + 1);
  p.namespace_name = ns_and_name.substr(0, slash);
  p.scope = scope;
  p.action = action;
  p.dry_run = dry_run;
  p.rules = std::move(rules);
  return p;
}

Authorization nsPolicy(const std::string& key, PolicyAction action, std::vector<Rule> rules,
                       bool dry_run = false) {
  return policy(key, PolicyScope::Namespace, action, std::move(rules), dry_run);
}

// One rule of one clause of one match.
Rule only(Match m) {
  return Rule{{std::move(m)}};
}

std::unique_ptr<Authorizer> authorizer(std::vector<Authorization> policies) {
  return std::make_unique<Authorizer>(
      model::Snapshot::create(workloads(), {}, std::move(policies)));
}

const Workload& destination(const Authorizer& a, std::string_view uid) {
  const Workload* w = a.snapshot()->workloadByUid(uid);
  EXPECT_NE(w, nullptr) << uid;
  return *w;
}

template <typename Case>
std::string caseName(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.name);
}

// Failure messages name the case instead of dumping its bytes.
template <typename Case>
void printName(const Case& c, std::ostream* os) {
  *os << c.name;
}

// ---- every match field and its `not` form ---------------------------------------------------

// One match in an ALLOW policy on the destination's namespace: the connection is allowed iff
// the match matches. Expectations follow ztunnel's rbac tests (src/rbac.rs): a plaintext peer
// has namespace "" and no principal or service account, so positive identity fields never
// match it and their `not` forms always do.
struct FieldCase {
  std::string_view name;
  Match match;
  bool plaintext;
  bool tls;
  bool tls_alt;
};

void PrintTo(const FieldCase& c, std::ostream* os) {
  printName(c, os);
}

const FieldCase kFieldCases[] = {
    {"Namespaces", namespaces({exact("shop")}), false, true, false},
    {"NotNamespaces", notNamespaces({exact("shop")}), true, false, true},
    {"NamespacesPrefix", namespaces({StringMatch::prefix("sh")}), false, true, false},
    {"NamespacesSuffix", namespaces({StringMatch::suffix("her")}), false, false, true},
    {"NamespacesPresence", namespaces({StringMatch::presence()}), false, true, true},
    {"NotNamespacesPresence", notNamespaces({StringMatch::presence()}), true, false, false},
    {"NamespacesAnyValue", namespaces({exact("x"), exact("other")}), false, false, true},
    {"ServiceAccounts", serviceAccounts({ServiceAccountMatch{"shop", "frontend"}}), false, true,
     false},
    {"NotServiceAccounts", notServiceAccounts({ServiceAccountMatch{"shop", "frontend"}}), true,
     false, true},
    {"ServiceAccountsNeedTheNamespace", serviceAccounts({ServiceAccountMatch{"other", "frontend"}}),
     false, false, false},
    {"ServiceAccountsAnyValue",
     serviceAccounts({ServiceAccountMatch{"shop", "cart"}, ServiceAccountMatch{"other", "batch"}}),
     false, false, true},
    {"Principals", principals({exact("cluster.local/ns/shop/sa/frontend")}), false, true, false},
    {"NotPrincipals", notPrincipals({exact("cluster.local/ns/shop/sa/frontend")}), true, false,
     true},
    // Istio writes principals without the scheme; one written with it never matches.
    {"PrincipalWithSchemeNeverMatches",
     principals({exact("spiffe://cluster.local/ns/shop/sa/frontend")}), false, false, false},
    {"PrincipalsPrefix", principals({StringMatch::prefix("cluster.local/")}), false, true, false},
    {"PrincipalsSuffix", principals({StringMatch::suffix("/sa/batch")}), false, false, true},
    // "*" in Istio: any authenticated peer.
    {"PrincipalsPresence", principals({StringMatch::presence()}), false, true, true},
    // istiod's STRICT mTLS policy is a DENY on this: only plaintext matches it.
    {"NotPrincipalsPresence", notPrincipals({StringMatch::presence()}), true, false, false},
    {"SourceIps", sourceIps({"10.0.0.0/24"}), true, true, false},
    {"NotSourceIps", notSourceIps({"10.0.0.1/32"}), false, false, true},
    {"SourceIpsBareAddress", sourceIps({"10.1.0.3"}), false, false, true},
    {"DestinationIps", destinationIps({"10.0.0.2/32"}), true, true, false},
    {"NotDestinationIps", notDestinationIps({"10.0.0.2"}), false, false, true},
    {"DestinationIpsRange", destinationIps({"10.0.0.0/16"}), true, true, true},
    {"DestinationPorts", destinationPorts({8080}), true, true, false},
    {"NotDestinationPorts", notDestinationPorts({8080}), false, false, true},
    {"DestinationPortsAnyValue", destinationPorts({80, 9090}), false, false, true},
    // Within a match, different fields are AND'd; a field and its `not` form too.
    {"FieldsAnded", merge({namespaces({exact("other")}), destinationPorts({9090})}), false, false,
     true},
    {"FieldsAndedOneFails", merge({namespaces({exact("shop")}), destinationPorts({9090})}), false,
     false, false},
    {"PositiveAndNotOfOneField",
     merge({namespaces({StringMatch::presence()}), notNamespaces({exact("other")})}), false, true,
     false},
    {"IdentityAndAddress",
     merge({principals({StringMatch::presence()}), sourceIps({"10.0.0.0/8"}),
            notDestinationPorts({22})}),
     false, true, true},
};

class FieldTest : public ::testing::TestWithParam<FieldCase> {};

TEST_P(FieldTest, AllowsExactlyTheMatchingConnections) {
  const FieldCase& c = GetParam();
  for (const char* dest : {"cart", "db"}) {
    SCOPED_TRACE(dest);
    // A Global policy, so that both destinations (in different namespaces) are covered.
    auto a = authorizer({policy("istio-system/p", PolicyScope::Global, kAllow, {only(c.match)})});
    const Workload& w = destination(*a, dest);
    EXPECT_EQ(a->check(w, kPlaintext).allowed, c.plaintext) << "plaintext";
    EXPECT_EQ(a->check(w, kTls).allowed, c.tls) << "tls";
    EXPECT_EQ(a->check(w, kTlsAlt).allowed, c.tls_alt) << "tls_alt";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, FieldTest, ::testing::ValuesIn(kFieldCases), caseName<FieldCase>);

// The same match in a DENY policy denies exactly what the ALLOW policy allowed.
TEST_P(FieldTest, DenyDeniesExactlyTheMatchingConnections) {
  const FieldCase& c = GetParam();
  auto a = authorizer({nsPolicy("shop/p", kDeny, {only(c.match)})});
  const Workload& w = destination(*a, "cart");
  EXPECT_EQ(a->check(w, kPlaintext).allowed, !c.plaintext) << "plaintext";
  EXPECT_EQ(a->check(w, kTls).allowed, !c.tls) << "tls";
  EXPECT_EQ(a->check(w, kTlsAlt).allowed, !c.tls_alt) << "tls_alt";
}

// ---- IPv6 and IPv4 addresses ----------------------------------------------------------------

struct AddressCase {
  std::string_view name;
  Match match;
  bool v4;
  bool v6;
};

void PrintTo(const AddressCase& c, std::ostream* os) {
  printName(c, os);
}

const ConnectionAttributes kV4 = conn("10.0.0.1", "10.0.0.2", 8080, kFrontendId);
const ConnectionAttributes kV6 = conn("fd00::5", "fd00:1::10", 8080, kFrontendId);

const AddressCase kAddressCases[] = {
    {"SourceIpsV6", sourceIps({"fd00::/64"}), false, true},
    {"NotSourceIpsV6", notSourceIps({"fd00::5/128"}), true, false},
    {"SourceIpsV6Bare", sourceIps({"fd00::5"}), false, true},
    {"DestinationIpsV6", destinationIps({"fd00:1::/32"}), false, true},
    {"NotDestinationIpsV6", notDestinationIps({"fd00::/8"}), true, false},
    // A CIDR covers its own family only, as ipnet's IpNet::contains in ztunnel: 0.0.0.0/0 is
    // no IPv6 address and ::/0 no IPv4 one (though IPv4 is held v4-mapped).
    {"V4AnyDoesNotCoverV6", sourceIps({"0.0.0.0/0"}), true, false},
    {"V6AnyDoesNotCoverV4", sourceIps({"::/0"}), false, true},
    {"EitherFamily", sourceIps({"10.0.0.0/8", "fd00::/8"}), true, true},
};

class AddressTest : public ::testing::TestWithParam<AddressCase> {};

TEST_P(AddressTest, MatchesTheRightFamily) {
  const AddressCase& c = GetParam();
  auto a = authorizer({nsPolicy("shop/p", kAllow, {only(c.match)})});
  const Workload& w = destination(*a, "cart");
  EXPECT_EQ(a->check(w, kV4).allowed, c.v4) << "v4";
  EXPECT_EQ(a->check(w, kV6).allowed, c.v6) << "v6";
}

INSTANTIATE_TEST_SUITE_P(Cases, AddressTest, ::testing::ValuesIn(kAddressCases),
                         caseName<AddressCase>);

// ---- scenarios: structure, scopes, actions, edge cases --------------------------------------

Match ns(std::string name) {
  return namespaces({exact(std::move(name))});
}
Match port(uint16_t p) {
  return destinationPorts({p});
}

// A full check: policies, destination, connection, and the verdict with its reason (which
// names the deciding policy and rule).
struct Scenario {
  std::string_view name;
  std::vector<Authorization> policies;
  std::string_view destination;
  ConnectionAttributes conn;
  bool allowed;
  Outcome outcome;
  std::string_view reason;
};

void PrintTo(const Scenario& c, std::ostream* os) {
  printName(c, os);
}

const ConnectionAttributes kFromShop = conn("10.0.0.3", "10.0.0.2", 8080, kFrontendId);
const ConnectionAttributes kFromShopPort80 = conn("10.0.0.3", "10.0.0.2", 80, kFrontendId);
const ConnectionAttributes kFromDev = conn("10.9.0.1", "10.0.0.2", 8080, kDevId);
const ConnectionAttributes kFromDevPort80 = conn("10.9.0.1", "10.0.0.2", 80, kDevId);
const ConnectionAttributes kPlainPort80 = conn("192.0.2.1", "10.0.0.2", 80, std::nullopt);

std::vector<Scenario> scenarios() {
  const Rule allow_all_rule{};  // a rule with no clauses: Istio's `rules: [{}]`
  return {
      // --- no policy
      {"NoPolicyAllows", {}, "cart", kFromDev, true, Outcome::NoPolicy, "no policy applies"},

      // --- AND/OR structure: rules OR'd, clauses AND'd, matches OR'd
      {"RulesOrSecondMatches",
       {nsPolicy("shop/p", kAllow, {only(ns("dev")), only(ns("shop"))})},
       "cart",
       kFromShop,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/p rule 1"},
      {"RulesOrNoneMatches",
       {nsPolicy("shop/p", kAllow, {only(ns("a")), only(ns("b"))})},
       "cart",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/p)"},
      {"ClausesAndedBothMatch",
       {nsPolicy("shop/p", kAllow, {Rule{{ns("shop")}, {port(80)}}})},
       "cart",
       kFromShopPort80,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/p rule 0"},
      {"ClausesAndedOneFails",
       {nsPolicy("shop/p", kAllow, {Rule{{ns("shop")}, {port(80)}}})},
       "cart",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/p)"},
      {"ClausesAndedOtherFails",
       {nsPolicy("shop/p", kAllow, {Rule{{ns("shop")}, {port(80)}}})},
       "cart",
       kFromDevPort80,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/p)"},
      {"MatchesOrFirst",
       {nsPolicy("shop/p", kAllow, {Rule{{ns("shop"), port(80)}}})},
       "cart",
       kFromShop,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/p rule 0"},
      {"MatchesOrSecond",
       {nsPolicy("shop/p", kAllow, {Rule{{ns("shop"), port(80)}}})},
       "cart",
       kFromDevPort80,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/p rule 0"},
      {"MatchesOrNeither",
       {nsPolicy("shop/p", kAllow, {Rule{{ns("shop"), port(80)}}})},
       "cart",
       kFromDev,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/p)"},
      // ztunnel skips a match with no fields: it never matches, even in an ALLOW policy...
      {"EmptyMatchNeverMatches",
       {nsPolicy("shop/p", kAllow, {only(Match{})})},
       "cart",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/p)"},
      // ...but the clause's other matches still count.
      {"EmptyMatchBesideARealOne",
       {nsPolicy("shop/p", kAllow, {Rule{{Match{}, ns("shop")}}})},
       "cart",
       kFromShop,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/p rule 0"},
      // A clause with no matches matches (ztunnel's rbac_empty_policy).
      {"EmptyClauseMatches",
       {nsPolicy("shop/p", kAllow, {Rule{{}}})},
       "cart",
       kPlainPort80,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/p rule 0"},

      // --- scopes
      {"GlobalAppliesEverywhere",
       {policy("istio-system/nothing", PolicyScope::Global, kAllow, {})},
       "db",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (istio-system/nothing)"},
      {"GlobalAppliesInTheRootNamespaceToo",
       {policy("istio-system/nothing", PolicyScope::Global, kAllow, {})},
       "gateway",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (istio-system/nothing)"},
      // The scope decides, not the namespace: a Namespace policy in the root namespace covers
      // the root namespace only (istiod marks root-namespace policies Global itself).
      {"NamespacePolicyInRootNamespaceIsNotGlobal",
       {nsPolicy("istio-system/nothing", kAllow, {})},
       "db",
       kFromShop,
       true,
       Outcome::NoPolicy,
       "no policy applies"},
      {"NamespaceAppliesInItsNamespace",
       {nsPolicy("shop/nothing", kAllow, {})},
       "frontend",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/nothing)"},
      {"NamespaceSkipsOtherNamespaces",
       {nsPolicy("shop/nothing", kAllow, {})},
       "db",
       kFromShop,
       true,
       Outcome::NoPolicy,
       "no policy applies"},
      {"WorkloadSelectorAppliesToListingWorkload",
       {policy("shop/cart-only", PolicyScope::WorkloadSelector, kAllow, {})},
       "cart",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/cart-only)"},
      {"WorkloadSelectorSkipsSameNamespaceWorkloads",
       {policy("shop/cart-only", PolicyScope::WorkloadSelector, kAllow, {})},
       "frontend",
       kFromShop,
       true,
       Outcome::NoPolicy,
       "no policy applies"},
      {"WorkloadSelectorNotListedAppliesNowhere",
       {policy("shop/unlisted", PolicyScope::WorkloadSelector, kDeny, {Rule{}})},
       "cart",
       kFromShop,
       true,
       Outcome::NoPolicy,
       "no policy applies"},
      // A root-namespace policy with a selector: istiod lists it on the selected workloads of
      // every namespace.
      {"WorkloadSelectorFromRootNamespace",
       {policy("istio-system/root-selector", PolicyScope::WorkloadSelector, kDeny,
               {only(ns("dev"))})},
       "cart",
       kFromDev,
       false,
       Outcome::Denied,
       "denied by DENY policy istio-system/root-selector rule 0"},
      {"AllScopesCombine",
       {policy("istio-system/global", PolicyScope::Global, kAllow, {only(port(1))}),
        nsPolicy("shop/ns", kAllow, {only(port(2))}),
        policy("shop/cart-only", PolicyScope::WorkloadSelector, kAllow, {only(port(3))})},
       "cart",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (istio-system/global, shop/ns, shop/cart-only)"},

      // --- actions
      {"DenyMatchDenies",
       {nsPolicy("shop/deny-dev", kDeny, {only(ns("dev"))})},
       "cart",
       kFromDev,
       false,
       Outcome::Denied,
       "denied by DENY policy shop/deny-dev rule 0"},
      {"DenyWithoutMatchAllows",
       {nsPolicy("shop/deny-dev", kDeny, {only(ns("dev"))})},
       "cart",
       kFromShop,
       true,
       Outcome::NoDenyMatched,
       "no DENY policy matched and no ALLOW policy applies"},
      // DENY is evaluated first and wins over a matching ALLOW, whatever the config order.
      {"DenyWinsOverAllow",
       {nsPolicy("shop/allow-all", kAllow, {allow_all_rule}),
        nsPolicy("shop/deny-80", kDeny, {Rule{}, only(port(80))})},
       "cart",
       kFromShopPort80,
       false,
       Outcome::Denied,
       "denied by DENY policy shop/deny-80 rule 0"},
      {"DenyNamesTheMatchingRule",
       {nsPolicy("shop/deny", kDeny, {only(port(1)), only(port(2)), only(port(80))})},
       "cart",
       kFromShopPort80,
       false,
       Outcome::Denied,
       "denied by DENY policy shop/deny rule 2"},
      {"AllowAfterUnmatchedDeny",
       {nsPolicy("shop/deny-dev", kDeny, {only(ns("dev"))}),
        nsPolicy("shop/allow-shop", kAllow, {only(ns("shop"))})},
       "cart",
       kFromShop,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/allow-shop rule 0"},
      {"AnyAllowPolicySuffices",
       {nsPolicy("shop/allow-a", kAllow, {only(ns("a"))}),
        nsPolicy("shop/allow-dev", kAllow, {only(ns("dev"))})},
       "cart",
       kFromDev,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/allow-dev rule 0"},
      {"NoAllowMatchedListsThemAll",
       {nsPolicy("shop/allow-a", kAllow, {only(ns("a"))}),
        nsPolicy("shop/allow-b", kAllow, {only(ns("b"))})},
       "cart",
       kFromDev,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/allow-a, shop/allow-b)"},

      // --- Istio's documented edge cases
      // allow-nothing: ALLOW with no rules ("spec: {}") matches nothing and denies everything.
      {"AllowNothing",
       {nsPolicy("shop/allow-nothing", kAllow, {})},
       "cart",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/allow-nothing)"},
      // allow-all: ALLOW with one empty rule ("rules: [{}]") matches everything, plaintext too.
      {"AllowAll",
       {nsPolicy("shop/allow-all", kAllow, {allow_all_rule})},
       "cart",
       kPlainPort80,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/allow-all rule 0"},
      {"AllowAllBesideAllowNothing",
       {nsPolicy("shop/allow-nothing", kAllow, {}),
        nsPolicy("shop/allow-all", kAllow, {allow_all_rule})},
       "cart",
       kFromDev,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/allow-all rule 0"},
      // deny-all: DENY with one empty rule.
      {"DenyAll",
       {nsPolicy("shop/deny-all", kDeny, {allow_all_rule})},
       "cart",
       kFromShop,
       false,
       Outcome::Denied,
       "denied by DENY policy shop/deny-all rule 0"},
      {"DenyAllBeatsAllowAll",
       {nsPolicy("shop/allow-all", kAllow, {allow_all_rule}),
        nsPolicy("shop/deny-all", kDeny, {allow_all_rule})},
       "cart",
       kPlainPort80,
       false,
       Outcome::Denied,
       "denied by DENY policy shop/deny-all rule 0"},
      // DENY with no rules never matches: it denies nothing.
      {"DenyWithNoRules",
       {nsPolicy("shop/deny-none", kDeny, {})},
       "cart",
       kFromDev,
       true,
       Outcome::NoDenyMatched,
       "no DENY policy matched and no ALLOW policy applies"},
      // STRICT mTLS as istiod expresses it: DENY notPrincipals: [*].
      {"StrictMtlsDeniesPlaintext",
       {policy("istio-system/strict", PolicyScope::Global, kDeny,
               {only(notPrincipals({StringMatch::presence()}))})},
       "cart",
       kPlainPort80,
       false,
       Outcome::Denied,
       "denied by DENY policy istio-system/strict rule 0"},
      {"StrictMtlsAllowsMesh",
       {policy("istio-system/strict", PolicyScope::Global, kDeny,
               {only(notPrincipals({StringMatch::presence()}))})},
       "cart",
       kFromShopPort80,
       true,
       Outcome::NoDenyMatched,
       "no DENY policy matched and no ALLOW policy applies"},

      // --- dry-run: evaluated, never decides
      {"DryRunDenyDoesNotDeny",
       {nsPolicy("shop/deny-all", kDeny, {allow_all_rule}, /*dry_run=*/true)},
       "cart",
       kFromShop,
       true,
       Outcome::NoPolicy,
       "no policy applies"},
      // A dry-run ALLOW is not an ALLOW policy "for the workload": it cannot deny.
      {"DryRunAllowNothingDoesNotDeny",
       {nsPolicy("shop/allow-nothing", kAllow, {}, /*dry_run=*/true)},
       "cart",
       kFromShop,
       true,
       Outcome::NoPolicy,
       "no policy applies"},
      {"DryRunAllowDoesNotAllow",
       {nsPolicy("shop/allow-dev", kAllow, {only(ns("dev"))}),
        nsPolicy("shop/allow-all", kAllow, {allow_all_rule}, /*dry_run=*/true)},
       "cart",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/allow-dev)"},

      // --- L7 attributes (Istio's ambient conversion, authorization.go handleRule)
      // ALLOW: a rule naming an HTTP attribute is omitted, so an ALLOW policy with only such
      // rules allows nothing (fail closed)...
      {"L7OnlyAllowFailsClosed",
       {nsPolicy("shop/allow-get", kAllow, {only(l7({"methods"}))})},
       "cart",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/allow-get)"},
      // ...even when the rule's L4 fields match: the whole rule goes, not just the attribute.
      {"L7AllowRuleDroppedWithItsL4Fields",
       {nsPolicy("shop/allow-get", kAllow, {only(l7({"methods", "paths"}, ns("shop")))})},
       "cart",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/allow-get)"},
      {"L7AllowRuleDroppedFromAnotherClause",
       {nsPolicy("shop/allow-get", kAllow, {Rule{{ns("shop")}, {l7({"hosts"})}}})},
       "cart",
       kFromShop,
       false,
       Outcome::NoAllowMatched,
       "no ALLOW policy matched (shop/allow-get)"},
      // The other rules stay, with their original indexes.
      {"L7AllowOtherRulesStay",
       {nsPolicy("shop/mixed", kAllow, {only(l7({"methods"}, ns("shop"))), only(ns("shop"))})},
       "cart",
       kFromShop,
       true,
       Outcome::Allowed,
       "allowed by ALLOW policy shop/mixed rule 1"},
      // DENY: the attribute counts as matched (Istio's documented TCP behaviour: "For a DENY
      // rule, missing attributes are treated as matches"), so an L7-only DENY denies all...
      {"L7OnlyDenyDeniesAll",
       {nsPolicy("shop/deny-post", kDeny, {only(l7({"methods"}))})},
       "cart",
       kFromShop,
       false,
       Outcome::Denied,
       "denied by DENY policy shop/deny-post rule 0"},
      {"L7OnlyDenyDeniesPlaintext",
       {nsPolicy("shop/deny-jwt", kDeny, {only(l7({"notRequestPrincipals"}))})},
       "cart",
       kPlainPort80,
       false,
       Outcome::Denied,
       "denied by DENY policy shop/deny-jwt rule 0"},
      // ...and a DENY with L4 fields too denies what the L4 fields match (methods + port 8080:
      // all TCP to 8080).
      {"L7DenyKeepsItsL4FieldsMatch",
       {nsPolicy("shop/deny-post-8080", kDeny, {only(l7({"methods"}, port(8080)))})},
       "cart",
       kFromShop,
       false,
       Outcome::Denied,
       "denied by DENY policy shop/deny-post-8080 rule 0"},
      {"L7DenyKeepsItsL4FieldsNoMatch",
       {nsPolicy("shop/deny-post-8080", kDeny, {only(l7({"methods"}, port(8080)))})},
       "cart",
       kFromShopPort80,
       true,
       Outcome::NoDenyMatched,
       "no DENY policy matched and no ALLOW policy applies"},
      // from: dev, to: POST -> all traffic from dev.
      {"L7DenyFromDevDeniesDev",
       {nsPolicy("shop/deny-dev-post", kDeny, {Rule{{ns("dev")}, {l7({"methods"})}}})},
       "cart",
       kFromDev,
       false,
       Outcome::Denied,
       "denied by DENY policy shop/deny-dev-post rule 0"},
      {"L7DenyFromDevAllowsOthers",
       {nsPolicy("shop/deny-dev-post", kDeny, {Rule{{ns("dev")}, {l7({"methods"})}}})},
       "cart",
       kFromShop,
       true,
       Outcome::NoDenyMatched,
       "no DENY policy matched and no ALLOW policy applies"},
  };
}

class ScenarioTest : public ::testing::TestWithParam<Scenario> {};

TEST_P(ScenarioTest, Verdict) {
  const Scenario& s = GetParam();
  auto a = authorizer(s.policies);
  Verdict v = a->check(destination(*a, s.destination), s.conn);
  EXPECT_EQ(v.allowed, s.allowed);
  EXPECT_EQ(toString(v.outcome), toString(s.outcome));
  EXPECT_EQ(v.reason(), s.reason);
  bool decided = s.outcome == Outcome::Denied || s.outcome == Outcome::Allowed;
  EXPECT_EQ(v.rule.has_value(), decided);
  EXPECT_EQ(v.policy.empty(), !decided);
}

INSTANTIATE_TEST_SUITE_P(Cases, ScenarioTest, ::testing::ValuesIn(scenarios()), caseName<Scenario>);

// ---- verdict fields -------------------------------------------------------------------------

TEST(AuthorizerTest, VerdictNamesPolicyAndRule) {
  auto a = authorizer({nsPolicy("shop/deny", kDeny, {only(port(1)), only(ns("dev"))})});
  Verdict v = a->check(destination(*a, "cart"), kFromDev);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.outcome, Outcome::Denied);
  EXPECT_EQ(v.policy, "shop/deny");
  EXPECT_EQ(v.rule, std::optional<size_t>(1));
  EXPECT_THAT(v.unmatched_allow, IsEmpty());
  EXPECT_THAT(v.dry_run, IsEmpty());
  EXPECT_FALSE(v.dry_run_allowed);
}

TEST(AuthorizerTest, NoAllowMatchedListsThePoliciesAndNoRule) {
  auto a = authorizer({nsPolicy("shop/a", kAllow, {}), nsPolicy("shop/b", kAllow, {})});
  Verdict v = a->check(destination(*a, "cart"), kFromShop);
  EXPECT_FALSE(v.allowed);
  EXPECT_TRUE(v.policy.empty());
  EXPECT_FALSE(v.rule.has_value());
  EXPECT_THAT(v.unmatched_allow, ElementsAre("shop/a", "shop/b"));
}

// ---- dry-run --------------------------------------------------------------------------------

TEST(AuthorizerDryRunTest, MatchingDryRunDenyIsReportedNotEnforced) {
  auto a = authorizer({nsPolicy("shop/deny-dev", kDeny, {only(port(1)), only(ns("dev"))}, true)});
  Verdict v = a->check(destination(*a, "cart"), kFromDev);
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.outcome, Outcome::NoPolicy);
  EXPECT_THAT(v.dry_run, ElementsAre(RuleMatch{"shop/deny-dev", 1, kDeny}));
  EXPECT_FALSE(v.dry_run_allowed);

  Verdict other = a->check(destination(*a, "cart"), kFromShop);
  EXPECT_TRUE(other.allowed);
  EXPECT_THAT(other.dry_run, IsEmpty());
  EXPECT_TRUE(other.dry_run_allowed);
}

// ztunnel (istio/ztunnel#1745) logs "dry-run no allow policies match" when only dry-run ALLOW
// policies apply and none matches: enforcing them would deny.
TEST(AuthorizerDryRunTest, UnmatchedDryRunAllowWouldDeny) {
  auto a = authorizer({nsPolicy("shop/allow-dev", kAllow, {only(ns("dev"))}, true)});
  Verdict from_shop = a->check(destination(*a, "cart"), kFromShop);
  EXPECT_TRUE(from_shop.allowed);
  EXPECT_THAT(from_shop.dry_run, IsEmpty());
  EXPECT_FALSE(from_shop.dry_run_allowed);

  Verdict from_dev = a->check(destination(*a, "cart"), kFromDev);
  EXPECT_TRUE(from_dev.allowed);
  EXPECT_THAT(from_dev.dry_run, ElementsAre(RuleMatch{"shop/allow-dev", 0, kAllow}));
  EXPECT_TRUE(from_dev.dry_run_allowed);
}

// With dry-run policies enforced, the ALLOW policies would be the union of both kinds.
TEST(AuthorizerDryRunTest, DryRunAllowWouldAllowWhatEnforcedAllowsDeny) {
  auto a = authorizer({nsPolicy("shop/allow-shop", kAllow, {only(ns("shop"))}),
                       nsPolicy("shop/allow-dev", kAllow, {only(ns("dev"))}, true)});
  Verdict v = a->check(destination(*a, "cart"), kFromDev);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.reason(), "no ALLOW policy matched (shop/allow-shop)");
  EXPECT_THAT(v.dry_run, ElementsAre(RuleMatch{"shop/allow-dev", 0, kAllow}));
  EXPECT_TRUE(v.dry_run_allowed);
}

TEST(AuthorizerDryRunTest, EveryMatchingDryRunPolicyIsReportedDenyFirst) {
  auto a = authorizer({nsPolicy("shop/allow-all", kAllow, {Rule{}}, true),
                       nsPolicy("shop/deny-80", kDeny, {only(port(80))}, true),
                       nsPolicy("shop/deny-dev", kDeny, {only(ns("dev"))}, true),
                       nsPolicy("shop/enforced", kAllow, {only(ns("dev"))})});
  Verdict v = a->check(destination(*a, "cart"), kFromDevPort80);
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.reason(), "allowed by ALLOW policy shop/enforced rule 0");
  EXPECT_THAT(v.dry_run,
              ElementsAre(RuleMatch{"shop/deny-80", 0, kDeny}, RuleMatch{"shop/deny-dev", 0, kDeny},
                          RuleMatch{"shop/allow-all", 0, kAllow}));
  EXPECT_FALSE(v.dry_run_allowed);
}

TEST(AuthorizerDryRunTest, ReportedEvenWhenAnEnforcedDenyDecides) {
  auto a = authorizer({nsPolicy("shop/deny-all", kDeny, {Rule{}}),
                       nsPolicy("shop/dry-deny", kDeny, {only(ns("dev"))}, true)});
  Verdict v = a->check(destination(*a, "cart"), kFromDev);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.policy, "shop/deny-all");
  EXPECT_THAT(v.dry_run, ElementsAre(RuleMatch{"shop/dry-deny", 0, kDeny}));
}

TEST(AuthorizerDryRunTest, L7RulesFollowTheSameRules) {
  auto a = authorizer({nsPolicy("shop/dry-allow-get", kAllow, {only(l7({"methods"}))}, true),
                       nsPolicy("shop/dry-deny-post", kDeny, {only(l7({"methods"}))}, true)});
  Verdict v = a->check(destination(*a, "cart"), kFromShop);
  EXPECT_TRUE(v.allowed);
  EXPECT_THAT(v.dry_run, ElementsAre(RuleMatch{"shop/dry-deny-post", 0, kDeny}));
  EXPECT_FALSE(v.dry_run_allowed);
}

// ---- peer identities ------------------------------------------------------------------------

struct IdentityCase {
  std::string_view name;
  std::optional<std::string_view> identity;
  Match match;
  bool matches;
};

void PrintTo(const IdentityCase& c, std::ostream* os) {
  printName(c, os);
}

const IdentityCase kIdentityCases[] = {
    // Without the scheme the principal cannot match (ztunnel strips "spiffe://" or fails).
    {"NoSchemePrincipal", "cluster.local/ns/shop/sa/frontend",
     principals({StringMatch::presence()}), false},
    {"NoSchemeNotPrincipal", "cluster.local/ns/shop/sa/frontend",
     notPrincipals({StringMatch::presence()}), true},
    // An identity of another shape still has a principal, but no namespace or account.
    {"OtherShapePrincipal", "spiffe://cluster.local/workload/x",
     principals({StringMatch::prefix("cluster.local/")}), true},
    {"OtherShapeNamespace", "spiffe://cluster.local/workload/x",
     namespaces({StringMatch::presence()}), false},
    {"ExtraSegmentNamespace", "spiffe://cluster.local/ns/shop/sa/frontend/x",
     namespaces({exact("shop")}), false},
    {"TrustDomainIgnoredForServiceAccount", "spiffe://other.td/ns/shop/sa/frontend",
     serviceAccounts({ServiceAccountMatch{"shop", "frontend"}}), true},
    {"TrustDomainInPrincipal", "spiffe://other.td/ns/shop/sa/frontend",
     principals({exact("cluster.local/ns/shop/sa/frontend")}), false},
    {"PlaintextNotServiceAccount", std::nullopt,
     notServiceAccounts({ServiceAccountMatch{"shop", "frontend"}}), true},
    // A plaintext peer's namespace is "": only a match that "" satisfies can match it.
    {"PlaintextEmptyPrefixNamespace", std::nullopt, namespaces({StringMatch::prefix("")}), true},
};

class IdentityTest : public ::testing::TestWithParam<IdentityCase> {};

TEST_P(IdentityTest, Matches) {
  const IdentityCase& c = GetParam();
  auto a = authorizer({nsPolicy("shop/p", kAllow, {only(c.match)})});
  EXPECT_EQ(a->check(destination(*a, "cart"), conn("10.0.0.1", "10.0.0.2", 80, c.identity)).allowed,
            c.matches);
}

INSTANTIATE_TEST_SUITE_P(Cases, IdentityTest, ::testing::ValuesIn(kIdentityCases),
                         caseName<IdentityCase>);

// ---- applicable() and workloads from elsewhere ----------------------------------------------

std::vector<Authorization> everyScope() {
  return {
      policy("shop/cart-only", PolicyScope::WorkloadSelector, kDeny, {only(port(22))}),
      nsPolicy("shop/ns-allow", kAllow, {only(ns("shop"))}),
      policy("istio-system/global-deny", PolicyScope::Global, kDeny, {only(ns("dev"))}),
      nsPolicy("other/ns-deny", kDeny, {Rule{}}),
      policy("istio-system/root-selector", PolicyScope::WorkloadSelector, kAllow, {only(ns("dev"))},
             true),
      nsPolicy("shop/dry", kDeny, {Rule{}}, true),
  };
}

std::vector<std::string> keys(const std::vector<const Authorization*>& policies) {
  std::vector<std::string> out;
  out.reserve(policies.size());
  for (const Authorization* p : policies) out.push_back(p->key());
  return out;
}

TEST(AuthorizerApplicableTest, GlobalThenNamespaceThenWorkloadInConfigOrder) {
  auto a = authorizer(everyScope());
  EXPECT_THAT(keys(a->applicable(destination(*a, "cart"))),
              ElementsAre("istio-system/global-deny", "shop/ns-allow", "shop/dry", "shop/cart-only",
                          "istio-system/root-selector"));
  EXPECT_THAT(keys(a->applicable(destination(*a, "frontend"))),
              ElementsAre("istio-system/global-deny", "shop/ns-allow", "shop/dry"));
  EXPECT_THAT(keys(a->applicable(destination(*a, "db"))),
              ElementsAre("istio-system/global-deny", "other/ns-deny"));
  EXPECT_THAT(keys(a->applicable(destination(*a, "gateway"))),
              ElementsAre("istio-system/global-deny"));
}

TEST(AuthorizerApplicableTest, ListingAPolicyTwiceOrAnUnknownOneChangesNothing) {
  std::vector<Workload> ws = workloads();
  ws[1].authorization_policies = {"shop/ns-allow", "shop/ns-allow", "shop/missing"};
  Authorizer a(model::Snapshot::create(std::move(ws), {}, everyScope()));
  EXPECT_THAT(keys(a.applicable(destination(a, "frontend"))),
              ElementsAre("istio-system/global-deny", "shop/ns-allow", "shop/dry"));
}

// A workload that is not one of the snapshot's own objects (a copy, or one from an older
// snapshot) gets the same answers, computed on the spot.
TEST(AuthorizerApplicableTest, WorkloadFromElsewhere) {
  auto a = authorizer(everyScope());
  for (const char* uid : {"cart", "frontend", "db", "gateway"}) {
    SCOPED_TRACE(uid);
    const Workload& own = destination(*a, uid);
    Workload copy = own;
    EXPECT_EQ(keys(a->applicable(copy)), keys(a->applicable(own)));
    for (const ConnectionAttributes& c : {kFromShop, kFromDev, kFromShopPort80, kPlainPort80}) {
      Verdict expected = a->check(own, c);
      Verdict got = a->check(copy, c);
      EXPECT_EQ(got.allowed, expected.allowed);
      EXPECT_EQ(got.reason(), expected.reason());
      EXPECT_EQ(got.dry_run, expected.dry_run);
    }
  }
  // A workload no snapshot knows: its namespace's policies and the ones it lists.
  Workload stranger = workload("stranger", "shop", "10.9.9.9", {"shop/cart-only"});
  EXPECT_THAT(
      keys(a->applicable(stranger)),
      ElementsAre("istio-system/global-deny", "shop/ns-allow", "shop/dry", "shop/cart-only"));
  EXPECT_EQ(a->check(stranger, conn("10.0.0.3", "10.9.9.9", 22, kFrontendId)).reason(),
            "denied by DENY policy shop/cart-only rule 0");
}

TEST(AuthorizerTest, EmptyOrNullSnapshotAllows) {
  Authorizer empty(std::make_shared<const model::Snapshot>());
  Workload w = workload("w", "shop", "10.0.0.9");
  EXPECT_EQ(empty.check(w, kFromDev).reason(), "no policy applies");
  Authorizer null(nullptr);
  EXPECT_TRUE(null.check(w, kFromDev).allowed);
  EXPECT_THAT(null.applicable(w), IsEmpty());
}

TEST(AuthorizerTest, OutcomeNames) {
  EXPECT_EQ(toString(Outcome::NoPolicy), "NoPolicy");
  EXPECT_EQ(toString(Outcome::NoDenyMatched), "NoDenyMatched");
  EXPECT_EQ(toString(Outcome::Denied), "Denied");
  EXPECT_EQ(toString(Outcome::Allowed), "Allowed");
  EXPECT_EQ(toString(Outcome::NoAllowMatched), "NoAllowMatched");
}

}  // namespace
}  // namespace nodemesh::policy
