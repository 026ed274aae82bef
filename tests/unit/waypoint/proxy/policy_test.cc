// L4 authorization at the waypoint (waypoint/proxy/policy.h): the mesh's policies applied to the
// endpoint the waypoint picked, with the original client's identity and address.
#include "waypoint/proxy/policy.h"

#include <gtest/gtest.h>

#include "tests/unit/waypoint/waypoint_mesh_util.h"

namespace nodemesh::waypoint {
namespace {

using mesh_test::kFrontend;
using mesh_test::kReviews;
using mesh_test::mesh;

const char* const kDenyFrontend =
    "- {name: deny-frontend, namespace: shop, scope: WorkloadSelector, action: Deny,"
    " rules: [[[{principals: [{Exact: cluster.local/ns/shop/sa/frontend}]}]]]}\n";

SocketAddress addr(const char* text) {
  return SocketAddress::parse(text).value();
}

// A request or connection from `principal` at 10.244.1.10 to cart-v1's 10.244.2.20:`port`.
PolicyFacts toCartV1(const model::Snapshot& snap, std::string_view principal,
                     uint16_t port = 8080) {
  PolicyFacts f;
  f.source_principal = principal;
  f.source_address = addr("10.244.1.10:40000");
  f.destination = snap.workloadByUid("cluster1//v1/Pod/shop/cart-v1-0");
  f.destination_address = SocketAddress{IpAddress::parse("10.244.2.20").value(), port};
  return f;
}

TEST(WaypointPolicyTest, NoPolicyAllowsAndNoConfigAllows) {
  WaypointPolicy policy;
  auto snap = mesh();
  EXPECT_TRUE(policy.check(toCartV1(*snap, kFrontend)).allowed);  // no snapshot yet
  policy.setSnapshot(snap);
  PolicyDecision d = policy.check(toCartV1(*snap, kFrontend));
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.reason, "no policy applies");
}

// The deciding fact is the original client's identity: frontend is denied, another client of
// the same destination (reviews) is not.
TEST(WaypointPolicyTest, DenyByTheClientsPrincipalNamesThePolicy) {
  auto snap = mesh(kDenyFrontend, "", "shop/deny-frontend");
  WaypointPolicy policy;
  policy.setSnapshot(snap);
  PolicyDecision denied = policy.check(toCartV1(*snap, kFrontend));
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.policy, "shop/deny-frontend");
  EXPECT_EQ(denied.reason, "denied by DENY policy shop/deny-frontend rule 0");
  EXPECT_TRUE(policy.check(toCartV1(*snap, kReviews)).allowed);
  // The waypoint's own identity (what the endpoint's agent sees) would not be denied: this is
  // why the waypoint checks with the client's.
  EXPECT_TRUE(policy.check(toCartV1(*snap, "spiffe://cluster.local/ns/shop/sa/waypoint")).allowed);
  // Another endpoint that does not list the policy is not affected.
  PolicyFacts to_v2 = toCartV1(*snap, kFrontend);
  to_v2.destination = snap->workloadByUid("cluster1//v1/Pod/shop/cart-v2-0");
  to_v2.destination_address = addr("10.244.1.21:8080");
  EXPECT_TRUE(policy.check(to_v2).allowed);
}

// An ALLOW policy: at least one rule must match; the destination port is the target port the
// waypoint connects to (8080), as the endpoint's agent would see it.
TEST(WaypointPolicyTest, AllowPolicyMatchesTheTargetPortAndOtherClientsAreDenied) {
  auto snap = mesh(
      "- {name: allow-frontend, namespace: shop, scope: Namespace, action: Allow,"
      " rules: [[[{principals: [{Exact: cluster.local/ns/shop/sa/frontend}]}],"
      " [{destinationPorts: [8080]}]]]}\n");
  WaypointPolicy policy;
  policy.setSnapshot(snap);
  EXPECT_TRUE(policy.check(toCartV1(*snap, kFrontend, 8080)).allowed);
  PolicyDecision wrong_port = policy.check(toCartV1(*snap, kFrontend, 80));
  EXPECT_FALSE(wrong_port.allowed);
  EXPECT_EQ(wrong_port.policy, "shop/allow-frontend");
  EXPECT_FALSE(policy.check(toCartV1(*snap, kReviews, 8080)).allowed);
  // No identity (never the case behind a waypoint, which requires a client certificate).
  EXPECT_FALSE(policy.check(toCartV1(*snap, "", 8080)).allowed);
}

// The source address is the original client's (forwarded for=), not the agent's.
TEST(WaypointPolicyTest, SourceIpsMatchTheForwardedClientAddress) {
  auto snap = mesh(
      "- {name: deny-ip, namespace: shop, scope: Namespace, action: Deny,"
      " rules: [[[{sourceIps: ['10.244.1.10/32']}]]]}\n");
  WaypointPolicy policy;
  policy.setSnapshot(snap);
  PolicyFacts f = toCartV1(*snap, kReviews);
  EXPECT_FALSE(policy.check(f).allowed);
  f.source_address = addr("10.244.1.11:40000");
  EXPECT_TRUE(policy.check(f).allowed);
}

TEST(WaypointPolicyTest, AuthorizeCountsDenialsBySubject) {
  auto snap = mesh(kDenyFrontend, "", "shop/deny-frontend");
  WaypointPolicy policy;
  policy.setSnapshot(snap);
  EXPECT_TRUE(policy.authorize(PolicySubject::kRequest, toCartV1(*snap, kReviews)).allowed);
  EXPECT_FALSE(policy.authorize(PolicySubject::kRequest, toCartV1(*snap, kFrontend)).allowed);
  EXPECT_FALSE(policy.authorize(PolicySubject::kRequest, toCartV1(*snap, kFrontend)).allowed);
  EXPECT_FALSE(policy.authorize(PolicySubject::kConnection, toCartV1(*snap, kFrontend)).allowed);
  EXPECT_EQ(policy.stats().denied_requests, 2u);
  EXPECT_EQ(policy.stats().denied_connections, 1u);
}

// A new snapshot replaces the policies in force.
TEST(WaypointPolicyTest, ANewSnapshotReplacesThePolicies) {
  WaypointPolicy policy;
  auto denying = mesh(kDenyFrontend, "", "shop/deny-frontend");
  policy.setSnapshot(denying);
  EXPECT_FALSE(policy.check(toCartV1(*denying, kFrontend)).allowed);
  auto open = mesh();
  policy.setSnapshot(open);
  EXPECT_TRUE(policy.check(toCartV1(*open, kFrontend)).allowed);
}

}  // namespace
}  // namespace nodemesh::waypoint
