// Authorizer: the verdict fields, dry-run policies, applicable() and snapshots.

#include <gtest/gtest.h>

#include "policy/authorizer.h"
#include "tests/unit/policy/authorizer_test_util.h"

namespace nodemesh::policy::authorizer_test {
namespace {

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
}  // namespace nodemesh::policy::authorizer_test
