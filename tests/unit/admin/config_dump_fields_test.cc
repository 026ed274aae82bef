// The config dump shows the fields the model keeps without acting on them yet (CIDR VIPs,
// weighted waypoints, visibility, app protocols, extensions, ...), so an operator can see that
// what istiod or the local file said arrived.

#include <gtest/gtest.h>

#include "agent/admin/config_dump.h"

namespace nodemesh::agent::admin {
namespace {

using nlohmann::json;

model::GatewayAddress gatewayAt(const char* ip, uint16_t port) {
  return model::GatewayAddress{model::NetworkAddress{"", IpAddress::parse(ip).value()}, port};
}

TEST(ConfigDumpFields, ServiceShowsEveryKeptField) {
  model::Service s;
  s.name = "cart";
  s.namespace_name = "shop";
  s.hostname = "cart.shop.svc.cluster.local";
  s.cidr_vips.push_back(model::NetworkCidr{"net1", Cidr::parse("10.199.128.0/20").value()});
  s.ports = {{80, 8080}};
  s.app_protocols = {{80, model::AppProtocol::Http2}};
  s.weighted_waypoints.push_back(model::WeightedWaypoint{gatewayAt("10.199.0.30", 15008), 90});
  s.canonical = true;
  s.ingress_use_waypoint = true;
  s.visibility = model::Visibility::Namespace;
  s.extensions.push_back(model::Extension{"ext", "type.googleapis.com/x.Y", "abc"});
  model::Snapshot snapshot({}, {s}, {});

  json j = serviceJson(snapshot, s);
  EXPECT_EQ(j["cidrVips"], json({"net1/10.199.128.0/20"}));
  EXPECT_EQ(j["appProtocols"], json({{"80", "HTTP2"}}));
  EXPECT_EQ(j["weightedWaypoints"], json::parse(R"([{"destination":"/10.199.0.30:15008",
                                                      "weight":90}])"));
  EXPECT_EQ(j["canonical"], true);
  EXPECT_EQ(j["ingressUseWaypoint"], true);
  EXPECT_EQ(j["visibility"], "Namespace");
  EXPECT_EQ(j["extensions"],
            json::parse(R"([{"name":"ext","typeUrl":"type.googleapis.com/x.Y","bytes":3}])"));

  model::Service plain;
  json p = serviceJson(snapshot, plain);
  EXPECT_EQ(p["visibility"], "Public");  // always shown, as ztunnel does
  EXPECT_EQ(p["canonical"], false);
  EXPECT_EQ(p["cidrVips"], json::array());
}

TEST(ConfigDumpFields, WorkloadShowsApplicationTunnelProtocolsAndExtensions) {
  model::Workload w;
  w.uid = "cluster1//Pod/shop/cart-1";
  w.application_tunnel = model::ApplicationTunnel{model::ApplicationTunnel::Protocol::Proxy, 15088};
  w.service_app_protocols["shop/cart"] = {{80, model::AppProtocol::Grpc}};
  w.extensions.push_back(model::Extension{"wl-ext", "", ""});
  json j = workloadJson(w);
  EXPECT_EQ(j["applicationTunnel"], json::parse(R"({"protocol":"PROXY","port":15088})"));
  EXPECT_EQ(j["serviceAppProtocols"], json::parse(R"({"shop/cart":{"80":"GRPC"}})"));
  EXPECT_EQ(j["extensions"][0]["name"], "wl-ext");

  model::Workload plain;
  EXPECT_TRUE(workloadJson(plain)["applicationTunnel"].is_null());
}

TEST(ConfigDumpFields, PolicyAndMatchExtensions) {
  model::Authorization p;
  p.name = "allow";
  p.namespace_name = "shop";
  model::Match m;
  m.destination_ports = {80};
  m.extensions.push_back(model::Extension{"match-ext", "", ""});
  p.rules = {{{m}}};
  p.extensions.push_back(model::Extension{"policy-ext", "", "xy"});
  json j = policyJson(p);
  EXPECT_EQ(j["extensions"][0]["name"], "policy-ext");
  EXPECT_EQ(j["extensions"][0]["bytes"], 2);
  EXPECT_EQ(j["rules"][0][0][0]["extensions"][0]["name"], "match-ext");
}

}  // namespace
}  // namespace nodemesh::agent::admin
