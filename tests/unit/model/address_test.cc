#include "model/address.h"

#include <gtest/gtest.h>

#include "model/authorization.h"

namespace nodemesh::model {
namespace {

TEST(NetworkAddressTest, Parses) {
  struct Case {
    std::string_view text;
    bool ok;
    std::string network;
    std::string ip;
  };
  const Case cases[] = {
      {"/10.96.0.20", true, "", "10.96.0.20"},
      {"net1/10.96.0.20", true, "net1", "10.96.0.20"},
      {"/fd00::1", true, "", "fd00::1"},
      {"10.96.0.20", false, "", ""},     // no network part
      {"/10.96.0.300", false, "", ""},   // bad IP
      {"a/b/10.96.0.1", false, "", ""},  // split at the first '/', as ztunnel does
      {"", false, "", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto parsed = NetworkAddress::parse(c.text);
    ASSERT_EQ(parsed.ok(), c.ok);
    if (!c.ok) continue;
    EXPECT_EQ(parsed->network, c.network);
    EXPECT_EQ(parsed->address.toString(), c.ip);
    EXPECT_EQ(parsed->toString(), std::string(c.text));
  }
}

TEST(NamespacedHostnameTest, Parses) {
  auto parsed = NamespacedHostname::parse("shop/cart.shop.svc.cluster.local");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->namespace_name, "shop");
  EXPECT_EQ(parsed->hostname, "cart.shop.svc.cluster.local");
  EXPECT_EQ(parsed->toString(), "shop/cart.shop.svc.cluster.local");
  EXPECT_FALSE(NamespacedHostname::parse("cart.shop.svc.cluster.local").ok());
}

TEST(GatewayAddressTest, DestinationIsAnAddressWhenItCanBe) {
  auto address = GatewayAddress::parseDestination("/10.0.0.9");
  ASSERT_TRUE(address.ok());
  ASSERT_TRUE(std::holds_alternative<NetworkAddress>(*address));
  EXPECT_EQ(std::get<NetworkAddress>(*address).address.toString(), "10.0.0.9");

  auto host = GatewayAddress::parseDestination("shop/waypoint.shop.svc.cluster.local");
  ASSERT_TRUE(host.ok());
  ASSERT_TRUE(std::holds_alternative<NamespacedHostname>(*host));
  EXPECT_EQ(std::get<NamespacedHostname>(*host).hostname, "waypoint.shop.svc.cluster.local");

  EXPECT_FALSE(GatewayAddress::parseDestination("waypoint").ok());

  GatewayAddress gw{std::get<NetworkAddress>(*address), 15008};
  EXPECT_EQ(gw.toString(), "/10.0.0.9:15008");
}

TEST(StringMatchTest, Matches) {
  struct Case {
    StringMatch match;
    std::string_view candidate;
    bool expected;
  };
  const Case cases[] = {
      {StringMatch::exact("shop"), "shop", true},
      {StringMatch::exact("shop"), "shop2", false},
      {StringMatch::prefix("kube-"), "kube-system", true},
      {StringMatch::prefix("kube-"), "shop", false},
      {StringMatch::suffix("/sa/frontend"), "cluster.local/ns/shop/sa/frontend", true},
      {StringMatch::suffix("/sa/frontend"), "cluster.local/ns/shop/sa/cart", false},
      {StringMatch::presence(), "anything", true},
      {StringMatch::presence(), "", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.match.toString() + " vs " + std::string(c.candidate));
    EXPECT_EQ(c.match.matches(c.candidate), c.expected);
  }
}

TEST(MatchTest, EmptyMeansNoFieldSet) {
  Match m;
  EXPECT_TRUE(m.empty());
  EXPECT_TRUE(m.l4Empty());
  m.not_destination_ports.push_back(9999);
  EXPECT_FALSE(m.empty());
  EXPECT_FALSE(m.l4Empty());
}

TEST(MatchTest, L7FieldsAloneAreNotEmpty) {
  Match m;
  m.l7_fields = {"methods"};
  EXPECT_FALSE(m.empty());
  EXPECT_TRUE(m.l4Empty());
}

}  // namespace
}  // namespace nodemesh::model
