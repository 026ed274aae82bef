#include "identity/spiffe_id.h"

#include <string>
#include <unordered_set>

#include <gtest/gtest.h>

namespace nodemesh::identity {
namespace {

TEST(SpiffeIdTest, ParsesIstioForm) {
  auto id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/sleep");
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(id->trustDomain(), "cluster.local");
  EXPECT_EQ(id->ns(), "default");
  EXPECT_EQ(id->serviceAccount(), "sleep");
  EXPECT_EQ(id->toString(), "spiffe://cluster.local/ns/default/sa/sleep");
}

TEST(SpiffeIdTest, CreateRoundTrips) {
  auto id = SpiffeId::create("example.org", "istio-system", "ztunnel_1.x");
  ASSERT_TRUE(id.ok()) << id.error().message;
  auto parsed = SpiffeId::parse(id->toString());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, *id);
}

TEST(SpiffeIdTest, RejectsMalformed) {
  for (const char* bad : {
           "",
           "spiffe://",
           "spiffe:///ns/a/sa/b",          // empty trust domain
           "SPIFFE://td/ns/a/sa/b",        // scheme is lower case
           "https://td/ns/a/sa/b",         // wrong scheme
           "spiffe:/td/ns/a/sa/b",         //
           "spiffe://td",                  // no path
           "spiffe://td/",                 //
           "spiffe://td/ns/a",             // no service account
           "spiffe://td/ns/a/sa",          //
           "spiffe://td/ns/a/sa/",         // empty service account
           "spiffe://td/ns//sa/b",         // empty namespace
           "spiffe://td/ns/a/sa/b/",       // trailing slash
           "spiffe://td/ns/a/sa/b/extra",  // extra segment
           "spiffe://td/sa/b/ns/a",        // wrong order
           "spiffe://td/NS/a/sa/b",        // keys are exact
           "spiffe://Td/ns/a/sa/b",        // trust domain is lower case
           "spiffe://td:443/ns/a/sa/b",    // port
           "spiffe://user@td/ns/a/sa/b",   // user info
           "spiffe://td/ns/a/sa/b?x=1",    // query
           "spiffe://td/ns/a/sa/b#f",      // fragment
           "spiffe://td/ns/a%20b/sa/b",    // percent-encoding
           "spiffe://td/ns/../sa/b",       // dot segments
           "spiffe://td/ns/./sa/b",        //
           " spiffe://td/ns/a/sa/b",       // whitespace
       }) {
    EXPECT_FALSE(SpiffeId::parse(bad).ok()) << "accepted '" << bad << "'";
  }
  EXPECT_FALSE(SpiffeId::parse(std::string("spiffe://td/ns/a\0b/sa/c", 23)).ok());
  EXPECT_FALSE(SpiffeId::parse("spiffe://" + std::string(256, 'a') + "/ns/a/sa/b").ok());
  EXPECT_FALSE(SpiffeId::create("td", "", "sa").ok());
  EXPECT_FALSE(SpiffeId::create("td", "ns", "a/b").ok());
  EXPECT_FALSE(SpiffeId::create("", "ns", "sa").ok());
}

TEST(SpiffeIdTest, ErrorNamesTheInput) {
  auto id = SpiffeId::parse("spiffe://td/ns/a/sa/b/c");
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message.find("spiffe://td/ns/a/sa/b/c"), std::string::npos);
}

TEST(SpiffeIdTest, HashesAndOrders) {
  auto a = SpiffeId::parse("spiffe://td/ns/a/sa/x").value();
  auto b = SpiffeId::parse("spiffe://td/ns/b/sa/x").value();
  EXPECT_LT(a, b);
  std::unordered_set<SpiffeId, SpiffeIdHash> set{a, b, a};
  EXPECT_EQ(set.size(), 2U);
}

}  // namespace
}  // namespace nodemesh::identity
