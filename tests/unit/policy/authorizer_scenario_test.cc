// Authorizer: full scenarios (structure, scopes, actions, edge cases) and their verdicts.

#include <gtest/gtest.h>

#include "policy/authorizer.h"
#include "tests/unit/policy/authorizer_test_util.h"

namespace nodemesh::policy::authorizer_test {
namespace {

// ---- scenarios: structure, scopes, actions, edge cases --------------------------------------

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

}  // namespace
}  // namespace nodemesh::policy::authorizer_test
