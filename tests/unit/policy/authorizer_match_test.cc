// Authorizer: every match field and its `not` form, IPv4/IPv6 addresses, peer identities.

#include <gtest/gtest.h>

#include "policy/authorizer.h"
#include "tests/unit/policy/authorizer_test_util.h"

namespace nodemesh::policy::authorizer_test {
namespace {

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

}  // namespace
}  // namespace nodemesh::policy::authorizer_test
