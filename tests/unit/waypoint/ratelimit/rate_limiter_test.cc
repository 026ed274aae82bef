// The waypoint's local rate limits with a test clock: GCRA's burst and steady rate, per-identity
// fairness, overrides, the header limit, route targets, what a 429 says, and state across reloads.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "waypoint/ratelimit/gcra.h"
#include "waypoint/ratelimit/rate_limiter.h"

namespace nodemesh::waypoint {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::string_view kFrontend = "spiffe://cluster.local/ns/shop/sa/frontend";
constexpr std::string_view kBot = "spiffe://cluster.local/ns/shop/sa/bot";
constexpr std::string_view kAdmin = "spiffe://other.domain/ns/ops/sa/admin";

// A clock the test moves by hand.
struct TestClock {
  RateClock::time_point now = RateClock::time_point{} + std::chrono::hours(1);
  RateLimiter::ClockFn fn() {
    return [this] { return now; };
  }
};

model::RateLimitPolicy servicePolicy(std::string name = "cart-rl") {
  model::RateLimitPolicy p;
  p.metadata.name = std::move(name);
  p.metadata.namespace_name = "shop";
  p.target_refs.push_back({model::RateLimitTargetRef::Kind::kService, "cart"});
  return p;
}

model::SnapshotPtr snapshotWith(std::vector<model::RateLimitPolicy> policies) {
  return model::Snapshot::create({}, {}, {}, {}, {}, std::move(policies));
}

RateLimitRequest toCart(std::string_view principal = kFrontend) {
  RateLimitRequest r;
  r.service = "shop/cart";
  r.principal = principal;
  return r;
}

// How many of `n` requests sent at once pass.
int admitted(RateLimiter& limiter, int n, const RateLimitRequest& request) {
  int ok = 0;
  for (int i = 0; i < n; ++i) ok += limiter.check(request).limited ? 0 : 1;
  return ok;
}

TEST(GcraTest, BurstIsOneSecondsWorthThenTheSteadyRate) {
  const GcraLimit limit = GcraLimit::perSecond(10);
  EXPECT_EQ(limit.interval, milliseconds(100));
  EXPECT_EQ(limit.tolerance, seconds(1));
  RateClock::time_point now{seconds(100)};
  RateClock::time_point tat{};
  for (int i = 0; i < 10; ++i) {
    GcraResult r = gcraCheck(tat, now, limit);
    ASSERT_TRUE(r.allowed) << i;
    EXPECT_EQ(r.remaining, static_cast<uint32_t>(9 - i));
    tat = r.tat;
  }
  GcraResult denied = gcraCheck(tat, now, limit);
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.tat, tat);  // a rejection costs nothing
  EXPECT_EQ(denied.retry_after, milliseconds(100));
  EXPECT_EQ(denied.reset, seconds(1));
  // One interval later exactly one more passes.
  now += milliseconds(100);
  GcraResult again = gcraCheck(tat, now, limit);
  ASSERT_TRUE(again.allowed);
  EXPECT_FALSE(gcraCheck(again.tat, now, limit).allowed);
}

TEST(GcraTest, ARateThatDoesNotDivideASecondKeepsItsBurst) {
  const GcraLimit limit = GcraLimit::perSecond(3);
  RateClock::time_point now{seconds(5)};
  RateClock::time_point tat{};
  int passed = 0;
  for (int i = 0; i < 5; ++i) {
    GcraResult r = gcraCheck(tat, now, limit);
    if (r.allowed) {
      tat = r.tat;
      ++passed;
    }
  }
  EXPECT_EQ(passed, 3);
}

TEST(RateLimiterTest, TotalAdmitsTheBurstThenTheRate) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto p = servicePolicy();
  p.total_rps = 100;
  limiter.setSnapshot(snapshotWith({p}));
  EXPECT_EQ(admitted(limiter, 300, toCart()), 100);
  // Steady state: 300 requests/s offered for 10 s, 3 every 10 ms; 100/s pass.
  int ok = 0;
  for (int tick = 0; tick < 1000; ++tick) {
    clock.now += milliseconds(10);
    ok += admitted(limiter, 3, toCart());
  }
  EXPECT_EQ(ok, 1000);
  // Other services are not limited.
  RateLimitRequest other = toCart();
  other.service = "shop/other";
  EXPECT_EQ(admitted(limiter, 500, other), 500);
}

TEST(RateLimiterTest, IdentityLimitIsPerClient) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto p = servicePolicy();
  p.total_rps = 100;
  p.identity_rps = 20;
  limiter.setSnapshot(snapshotWith({p}));
  // A greedy client gets its 20, and leaves the others theirs.
  EXPECT_EQ(admitted(limiter, 100, toCart(kBot)), 20);
  EXPECT_EQ(admitted(limiter, 100, toCart(kFrontend)), 20);
  EXPECT_EQ(admitted(limiter, 100, toCart(kAdmin)), 20);
  RateLimitVerdict v = limiter.check(toCart(kBot));
  ASSERT_TRUE(v.limited);
  EXPECT_EQ(v.kind, RateLimitKind::kIdentity);
  EXPECT_EQ(v.requests_per_second, 20u);
  // Five clients exhaust the total: the next one, fresh, is refused by the total.
  for (std::string_view c :
       {"spiffe://cluster.local/ns/a/sa/1", "spiffe://cluster.local/ns/a/sa/2"}) {
    EXPECT_EQ(admitted(limiter, 20, toCart(c)), 20);
  }
  RateLimitVerdict total = limiter.check(toCart("spiffe://cluster.local/ns/a/sa/3"));
  ASSERT_TRUE(total.limited);
  EXPECT_EQ(total.kind, RateLimitKind::kTotal);
}

TEST(RateLimiterTest, ARejectedRequestIsChargedToNoLimit) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto p = servicePolicy();
  p.total_rps = 10;
  p.identity_rps = 2;
  limiter.setSnapshot(snapshotWith({p}));
  // The bot's refused requests do not use up the total.
  EXPECT_EQ(admitted(limiter, 1000, toCart(kBot)), 2);
  EXPECT_EQ(admitted(limiter, 2, toCart(kFrontend)), 2);
  EXPECT_EQ(admitted(limiter, 2, toCart(kAdmin)), 2);
}

TEST(RateLimiterTest, OverrideReplacesTheIdentityLimitForItsClients) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto p = servicePolicy();
  p.identity_rps = 5;
  p.overrides.push_back({50, {{"shop", "bot"}}});
  p.overrides.push_back({1, {{"ops", "admin"}}});
  limiter.setSnapshot(snapshotWith({p}));
  EXPECT_EQ(admitted(limiter, 100, toCart(kBot)), 50);
  EXPECT_EQ(limiter.check(toCart(kBot)).kind, RateLimitKind::kOverride);
  // A ServiceAccount is the same client in any trust domain.
  EXPECT_EQ(admitted(limiter, 100, toCart(kAdmin)), 1);
  EXPECT_EQ(admitted(limiter, 100, toCart(kFrontend)), 5);
  // Not a SPIFFE ID of a service account: the identity limit, keyed by the whole string.
  EXPECT_EQ(admitted(limiter, 100, toCart("spiffe://cluster.local/ns/shop/sa/bot/x")), 5);
}

TEST(RateLimiterTest, OverrideAloneLimitsOnlyItsClients) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto p = servicePolicy();
  p.overrides.push_back({3, {{"shop", "bot"}}});
  limiter.setSnapshot(snapshotWith({p}));
  EXPECT_EQ(admitted(limiter, 10, toCart(kBot)), 3);
  EXPECT_EQ(admitted(limiter, 10, toCart(kFrontend)), 10);
}

TEST(RateLimiterTest, HeaderLimitIsPerValue) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto p = servicePolicy();
  p.header = model::HeaderRateLimit{"x-tenant", 4};
  limiter.setSnapshot(snapshotWith({p}));
  Headers acme{{"x-tenant", "acme"}};
  Headers umbrella{{"X-Tenant", "umbrella"}};
  RateLimitRequest r = toCart();
  r.headers = &acme;
  EXPECT_EQ(admitted(limiter, 10, r), 4);
  RateLimitVerdict v = limiter.check(r);
  EXPECT_EQ(v.kind, RateLimitKind::kHeader);
  r.headers = &umbrella;
  EXPECT_EQ(admitted(limiter, 10, r), 4);
  Headers none;
  r.headers = &none;
  EXPECT_EQ(admitted(limiter, 10, r), 10);  // no header: not limited by it
}

TEST(RateLimiterTest, RoutePolicyAppliesToThatRouteOnlyAndWithTheServices) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto route = servicePolicy("api-rl");
  route.target_refs = {{model::RateLimitTargetRef::Kind::kHttpRoute, "cart-api"}};
  route.total_rps = 2;
  auto service = servicePolicy("cart-rl");
  service.total_rps = 5;
  limiter.setSnapshot(snapshotWith({route, service}));
  RateLimitRequest api = toCart();
  api.route_kind = "HTTPRoute";
  api.route = "shop/cart-api";
  EXPECT_EQ(admitted(limiter, 10, api), 2);
  // The service's limit counted the two, and still applies to the other route.
  RateLimitRequest web = toCart();
  web.route_kind = "HTTPRoute";
  web.route = "shop/cart-web";
  EXPECT_EQ(admitted(limiter, 10, web), 3);
  // A GRPCRoute of the same name is another target.
  clock.now += seconds(1);
  api.route_kind = "GRPCRoute";
  EXPECT_EQ(admitted(limiter, 10, api), 5);
}

TEST(RateLimiterTest, TheAnswerCarriesRetryAfterAndRateLimitFields) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto p = servicePolicy();
  p.total_rps = 2;
  limiter.setSnapshot(snapshotWith({p}));
  ASSERT_EQ(admitted(limiter, 2, toCart()), 2);
  RateLimitVerdict v = limiter.check(toCart());
  ASSERT_TRUE(v.limited);
  EXPECT_EQ(v.policy, "shop/cart-rl");
  EXPECT_EQ(v.retry_after, milliseconds(500));
  Headers h = v.responseHeaders();
  EXPECT_EQ(headerValue(h, "retry-after"), "1");  // 0.5 s, rounded up
  EXPECT_EQ(headerValue(h, "ratelimit-policy"), "\"shop/cart-rl/total\";q=2;w=1");
  EXPECT_EQ(headerValue(h, "ratelimit"), "\"shop/cart-rl/total\";r=0;t=1");
  // A slow limit: one request per second, retry-after counts whole seconds.
  auto slow = servicePolicy();
  slow.identity_rps = 1;
  slow.overrides.push_back({1, {{"shop", "bot"}}});
  limiter.setSnapshot(snapshotWith({slow}));
  ASSERT_FALSE(limiter.check(toCart(kBot)).limited);
  clock.now += milliseconds(1);
  RateLimitVerdict s = limiter.check(toCart(kBot));
  ASSERT_TRUE(s.limited);
  EXPECT_EQ(headerValue(s.responseHeaders(), "retry-after"), "1");
  EXPECT_EQ(rateLimitKindName(s.kind), "override");
}

TEST(RateLimiterTest, CountersByPolicyAndLimit) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto p = servicePolicy();
  p.total_rps = 10;
  p.identity_rps = 1;
  limiter.setSnapshot(snapshotWith({p}));
  (void)admitted(limiter, 5, toCart(kBot));  // 1 passes, 4 over the identity limit
  auto counters = limiter.counters();
  ASSERT_EQ(counters.size(), 1u);
  EXPECT_EQ(counters[0].policy, "shop/cart-rl");
  EXPECT_EQ(counters[0].kind, RateLimitKind::kIdentity);
  EXPECT_EQ(counters[0].rejected, 4u);
  // A reload keeps the counters (they only grow) and an unchanged policy's state.
  limiter.setSnapshot(snapshotWith({p}));
  EXPECT_TRUE(limiter.check(toCart(kBot)).limited);
  EXPECT_EQ(limiter.counters()[0].rejected, 5u);
  // A changed policy starts afresh.
  p.identity_rps = 2;
  limiter.setSnapshot(snapshotWith({p}));
  EXPECT_EQ(admitted(limiter, 5, toCart(kBot)), 2);
  // No policy: nothing is limited.
  limiter.setSnapshot(snapshotWith({}));
  EXPECT_EQ(admitted(limiter, 50, toCart(kBot)), 50);
}

TEST(RateLimiterTest, PruneForgetsClientsBackToFull) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto p = servicePolicy();
  p.identity_rps = 10;
  limiter.setSnapshot(snapshotWith({p}));
  for (int i = 0; i < 100; ++i) {
    // Appended, not "literal" + std::string: GCC 12 -O3 warns falsely (-Wrestrict) there.
    std::string client = "spiffe://cluster.local/ns/a/sa/c";
    client += std::to_string(i);
    (void)limiter.check(toCart(client));
  }
  EXPECT_EQ(limiter.keys(), 100u);
  limiter.prune();
  EXPECT_EQ(limiter.keys(), 100u);  // 100 ms of credit still owed each
  clock.now += milliseconds(100);
  limiter.prune();
  EXPECT_EQ(limiter.keys(), 0u);
}

TEST(RateLimiterTest, KeysAreBoundedAndTheRestShareOneState) {
  TestClock clock;
  RateLimiter limiter(clock.fn());
  auto p = servicePolicy();
  p.identity_rps = 1;
  limiter.setSnapshot(snapshotWith({p}));
  for (size_t i = 0; i < RateLimiter::kMaxKeys; ++i) {
    std::string client = "c";  // appended: see above (GCC 12 -O3 -Wrestrict)
    client += std::to_string(i);
    ASSERT_FALSE(limiter.check(toCart(client)).limited);
  }
  EXPECT_EQ(limiter.keys(), RateLimiter::kMaxKeys);
  // Every key still owes credit: new clients share the overflow state, one request per second.
  EXPECT_FALSE(limiter.check(toCart("new-1")).limited);
  EXPECT_TRUE(limiter.check(toCart("new-2")).limited);
  EXPECT_EQ(limiter.keys(), RateLimiter::kMaxKeys + 1);
}

}  // namespace
}  // namespace nodemesh::waypoint
