// istiod's resources -> the model (xds/convert.h): every mapped field and every refusal, with
// protos built in C++ as istiod would send them.

#include "xds/convert.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"

namespace nodemesh::xds {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

namespace pb = istio::workload;
namespace pbsec = istio::security;

std::string v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return std::string{static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                     static_cast<char>(d)};
}

std::string v6Bytes(const std::string& text) {
  auto ip = IpAddress::parse(text);
  EXPECT_TRUE(ip.ok()) << text;
  const auto& bytes = ip->bytes();
  return std::string(bytes.begin(), bytes.end());
}

IpAddress ip(const std::string& text) {
  return IpAddress::parse(text).value();
}

pb::Workload minimalWorkload() {
  pb::Workload w;
  w.set_uid("cluster1//Pod/shop/cart-1");
  w.set_name("cart-1");
  w.set_namespace_("shop");
  w.add_addresses(v4(10, 199, 0, 5));
  return w;
}

pb::Workload fullWorkload() {
  pb::Workload w = minimalWorkload();
  w.add_addresses(v6Bytes("fd00::5"));
  w.set_hostname("cart.example");
  w.set_network("net1");
  w.set_tunnel_protocol(pb::HBONE);
  w.set_trust_domain("example.org");
  w.set_service_account("cart-sa");
  w.mutable_waypoint()->mutable_address()->set_network("net1");
  w.mutable_waypoint()->mutable_address()->set_address(v4(10, 199, 0, 9));
  w.mutable_waypoint()->set_hbone_mtls_port(15008);
  w.mutable_network_gateway()->mutable_hostname()->set_namespace_("istio-system");
  w.mutable_network_gateway()->mutable_hostname()->set_hostname("eastwest.istio-system.svc");
  w.mutable_network_gateway()->set_hbone_mtls_port(15009);
  w.set_node("node-a");
  w.set_canonical_name("cart");
  w.set_canonical_revision("v1");
  w.set_workload_type(pb::POD);
  w.set_workload_name("cart-deploy");
  w.set_native_tunnel(true);
  w.mutable_application_tunnel()->set_protocol(pb::ApplicationTunnel::PROXY);
  w.mutable_application_tunnel()->set_port(15088);
  pb::PortList ports;
  auto* p = ports.add_ports();
  p->set_service_port(80);
  p->set_target_port(8080);
  p->set_app_protocol(pb::HTTP2);
  p = ports.add_ports();
  p->set_service_port(443);
  p->set_target_port(8443);
  (*w.mutable_services())["shop/cart.shop.svc.cluster.local"] = ports;
  w.add_authorization_policies("shop/allow-frontend");
  w.add_authorization_policies("shop/deny-batch");
  w.set_status(pb::UNHEALTHY);
  w.set_cluster_id("cluster1");
  w.mutable_locality()->set_region("eu");
  w.mutable_locality()->set_zone("eu-1a");
  w.mutable_locality()->set_subzone("rack7");
  w.set_network_mode(pb::HOST_NETWORK);
  w.mutable_capacity()->set_value(7);
  auto* ext = w.add_extensions();
  ext->set_name("vendor.example/telemetry");
  ext->mutable_config()->set_type_url("type.googleapis.com/google.protobuf.StringValue");
  ext->mutable_config()->set_value("\x0a\x02hi");
  return w;
}

TEST(XdsConvertWorkload, MapsEveryField) {
  auto r = toWorkload(fullWorkload());
  ASSERT_TRUE(r.ok()) << r.error().message;
  const model::Workload& w = *r;
  EXPECT_EQ(w.uid, "cluster1//Pod/shop/cart-1");
  EXPECT_EQ(w.name, "cart-1");
  EXPECT_EQ(w.namespace_name, "shop");
  EXPECT_THAT(w.workload_ips, ElementsAre(ip("10.199.0.5"), ip("fd00::5")));
  EXPECT_TRUE(w.workload_ips[0].isV4());
  EXPECT_EQ(w.hostname, "cart.example");
  EXPECT_EQ(w.network, "net1");
  EXPECT_EQ(w.protocol, model::Protocol::Hbone);
  EXPECT_EQ(w.trust_domain, "example.org");
  EXPECT_EQ(w.service_account, "cart-sa");
  EXPECT_EQ(w.identity(), "spiffe://example.org/ns/shop/sa/cart-sa");
  ASSERT_TRUE(w.waypoint.has_value());
  EXPECT_EQ(w.waypoint->destination,
            (std::variant<model::NetworkAddress, model::NamespacedHostname>(
                model::NetworkAddress{"net1", ip("10.199.0.9")})));
  EXPECT_EQ(w.waypoint->hbone_mtls_port, 15008);
  ASSERT_TRUE(w.network_gateway.has_value());
  EXPECT_EQ(w.network_gateway->destination,
            (std::variant<model::NetworkAddress, model::NamespacedHostname>(
                model::NamespacedHostname{"istio-system", "eastwest.istio-system.svc"})));
  EXPECT_EQ(w.network_gateway->hbone_mtls_port, 15009);
  EXPECT_EQ(w.node, "node-a");
  EXPECT_EQ(w.canonical_name, "cart");
  EXPECT_EQ(w.canonical_revision, "v1");
  EXPECT_EQ(w.workload_type, "pod");
  EXPECT_EQ(w.workload_name, "cart-deploy");
  EXPECT_TRUE(w.native_tunnel);
  ASSERT_TRUE(w.application_tunnel.has_value());
  EXPECT_EQ(w.application_tunnel->protocol, model::ApplicationTunnel::Protocol::Proxy);
  EXPECT_EQ(w.application_tunnel->port, std::optional<uint16_t>(15088));
  ASSERT_EQ(w.services.size(), 1U);
  EXPECT_EQ(w.services.at("shop/cart.shop.svc.cluster.local"),
            (model::PortMap{{80, 8080}, {443, 8443}}));
  EXPECT_THAT(w.authorization_policies, ElementsAre("shop/allow-frontend", "shop/deny-batch"));
  EXPECT_EQ(w.status, model::HealthStatus::Unhealthy);
  EXPECT_EQ(w.cluster_id, "cluster1");
  EXPECT_EQ(w.locality, (model::Locality{"eu", "eu-1a", "rack7"}));
  EXPECT_EQ(w.network_mode, model::NetworkMode::HostNetwork);
  EXPECT_EQ(w.capacity, 7U);
  // Only the port with a known application protocol is listed.
  EXPECT_EQ(w.service_app_protocols,
            (std::map<std::string, model::AppProtocolMap>{
                {"shop/cart.shop.svc.cluster.local", {{80, model::AppProtocol::Http2}}}}));
  EXPECT_THAT(w.extensions, ElementsAre(model::Extension{
                                "vendor.example/telemetry",
                                "type.googleapis.com/google.protobuf.StringValue", "\x0a\x02hi"}));
}

TEST(XdsConvertWorkload, DefaultsAsZtunnel) {
  auto r = toWorkload(minimalWorkload());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->protocol, model::Protocol::Tcp);
  EXPECT_EQ(r->trust_domain, "cluster.local");
  EXPECT_EQ(r->service_account, "default");
  EXPECT_EQ(r->cluster_id, "Kubernetes");
  EXPECT_EQ(r->capacity, 1U);  // capacity absent
  EXPECT_EQ(r->workload_type, "deployment");
  EXPECT_EQ(r->status, model::HealthStatus::Healthy);
  EXPECT_EQ(r->network_mode, model::NetworkMode::Standard);
  EXPECT_FALSE(r->waypoint.has_value());
  EXPECT_FALSE(r->network_gateway.has_value());
  EXPECT_FALSE(r->application_tunnel.has_value());
  EXPECT_TRUE(r->services.empty());
  EXPECT_TRUE(r->service_app_protocols.empty());
  EXPECT_TRUE(r->extensions.empty());

  pb::Workload zero = minimalWorkload();
  zero.mutable_capacity()->set_value(0);  // present and 0 is kept, not defaulted
  EXPECT_EQ(toWorkload(zero)->capacity, 0U);

  pb::Workload tunnel = minimalWorkload();
  tunnel.mutable_application_tunnel()->set_protocol(pb::ApplicationTunnel::NONE);
  auto t = toWorkload(tunnel);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t->application_tunnel.has_value());
  EXPECT_EQ(t->application_tunnel->protocol, model::ApplicationTunnel::Protocol::None);
  EXPECT_FALSE(t->application_tunnel->port.has_value());  // port 0 = unset
}

TEST(XdsConvertWorkload, WorkloadTypesAreLowerCaseNames) {
  for (auto [type, name] :
       {std::pair{pb::DEPLOYMENT, "deployment"}, std::pair{pb::CRONJOB, "cronjob"},
        std::pair{pb::POD, "pod"}, std::pair{pb::JOB, "job"}}) {
    pb::Workload w = minimalWorkload();
    w.set_workload_type(type);
    EXPECT_EQ(toWorkload(w)->workload_type, name);
  }
}

// Each broken workload fails with the uid and the field path in the message.
TEST(XdsConvertWorkload, Errors) {
  struct Case {
    const char* what;
    void (*break_it)(pb::Workload&);
    const char* message;
  };
  const Case cases[] = {
      {"5-byte address", [](pb::Workload& w) { w.add_addresses("12345"); },
       "workload cluster1//Pod/shop/cart-1: addresses[1]: 5 bytes, want 4 or 16"},
      {"empty address", [](pb::Workload& w) { w.set_addresses(0, ""); },
       "workload cluster1//Pod/shop/cart-1: addresses[0]: 0 bytes, want 4 or 16"},
      {"no uid", [](pb::Workload& w) { w.clear_uid(); },
       "workload (no uid) shop/cart-1: uid: required"},
      {"legacy mTLS", [](pb::Workload& w) { w.set_tunnel_protocol(pb::LEGACY_ISTIO_MTLS); },
       "tunnel_protocol: LEGACY_ISTIO_MTLS is not supported"},
      {"unknown tunnel",
       [](pb::Workload& w) { w.set_tunnel_protocol(static_cast<pb::TunnelProtocol>(9)); },
       "tunnel_protocol: unknown value 9"},
      {"unknown network mode",
       [](pb::Workload& w) { w.set_network_mode(static_cast<pb::NetworkMode>(5)); },
       "network_mode: unknown value 5"},
      {"unknown status", [](pb::Workload& w) { w.set_status(static_cast<pb::WorkloadStatus>(4)); },
       "status: unknown value 4"},
      {"unknown workload type",
       [](pb::Workload& w) { w.set_workload_type(static_cast<pb::WorkloadType>(8)); },
       "workload_type: unknown value 8"},
      {"waypoint without destination",
       [](pb::Workload& w) { w.mutable_waypoint()->set_hbone_mtls_port(15008); },
       "waypoint: neither address nor hostname is set"},
      {"waypoint bad address",
       [](pb::Workload& w) {
         w.mutable_waypoint()->mutable_address()->set_address("abc");
         w.mutable_waypoint()->set_hbone_mtls_port(15008);
       },
       "waypoint.address.address: 3 bytes, want 4 or 16"},
      {"waypoint port too big",
       [](pb::Workload& w) {
         w.mutable_waypoint()->mutable_address()->set_address(v4(10, 199, 0, 9));
         w.mutable_waypoint()->set_hbone_mtls_port(70000);
       },
       "waypoint.hbone_mtls_port: port 70000 is above 65535"},
      {"waypoint port unset",
       [](pb::Workload& w) {
         w.mutable_waypoint()->mutable_address()->set_address(v4(10, 199, 0, 9));
       },
       "waypoint.hbone_mtls_port: not set (0)"},
      {"network gateway empty hostname",
       [](pb::Workload& w) {
         w.mutable_network_gateway()->mutable_hostname()->set_namespace_("x");
         w.mutable_network_gateway()->set_hbone_mtls_port(15008);
       },
       "network_gateway.hostname.hostname: empty"},
      {"application tunnel port",
       [](pb::Workload& w) { w.mutable_application_tunnel()->set_port(65536); },
       "application_tunnel.port: port 65536 is above 65535"},
      {"application tunnel protocol",
       [](pb::Workload& w) {
         w.mutable_application_tunnel()->set_protocol(
             static_cast<pb::ApplicationTunnel::Protocol>(3));
       },
       "application_tunnel.protocol: unknown value 3"},
      {"service key without slash",
       [](pb::Workload& w) { (*w.mutable_services())["cart.shop.svc"]; },
       "services[\"cart.shop.svc\"]: key is not of the form namespace/hostname"},
      {"service port too big",
       [](pb::Workload& w) {
         auto* p = (*w.mutable_services())["shop/cart"].add_ports();
         p->set_service_port(80);
         p->set_target_port(123456);
       },
       "services[\"shop/cart\"].ports[0].target_port: port 123456 is above 65535"},
      {"service port twice",
       [](pb::Workload& w) {
         auto& list = (*w.mutable_services())["shop/cart"];
         auto* p = list.add_ports();
         p->set_service_port(80);
         p->set_target_port(8080);
         p = list.add_ports();
         p->set_service_port(80);
         p->set_target_port(9090);
       },
       "services[\"shop/cart\"].ports[1]: service port 80 is listed twice, with target ports 8080 "
       "and 9090"},
      {"unknown app protocol",
       [](pb::Workload& w) {
         auto* p = (*w.mutable_services())["shop/cart"].add_ports();
         p->set_service_port(80);
         p->set_app_protocol(static_cast<pb::AppProtocol>(17));
       },
       "services[\"shop/cart\"].ports[0].app_protocol: unknown value 17"},
  };
  for (const Case& c : cases) {
    pb::Workload w = minimalWorkload();
    c.break_it(w);
    auto r = toWorkload(w);
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_THAT(r.error().message, HasSubstr(c.message)) << c.what;
    EXPECT_THAT(r.error().message, ::testing::StartsWith("workload ")) << c.what;
  }
}

TEST(XdsConvertWorkload, SamePortTwiceWithSameTargetIsFine) {
  pb::Workload w = minimalWorkload();
  auto& list = (*w.mutable_services())["shop/cart"];
  for (int i = 0; i < 2; ++i) {
    auto* p = list.add_ports();
    p->set_service_port(80);
    p->set_target_port(8080);
  }
  auto r = toWorkload(w);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->services.at("shop/cart"), (model::PortMap{{80, 8080}}));
}

pb::Service minimalService() {
  pb::Service s;
  s.set_name("cart");
  s.set_namespace_("shop");
  s.set_hostname("cart.shop.svc.cluster.local");
  return s;
}

TEST(XdsConvertService, MapsEveryField) {
  pb::Service in = minimalService();
  auto* a = in.add_addresses();
  a->set_network("");
  a->set_address(v4(10, 199, 96, 20));
  a = in.add_addresses();
  a->set_network("net1");
  a->set_address(v6Bytes("fd00:96::20"));
  a->set_length(128);  // a full-length prefix is a plain VIP
  a = in.add_addresses();
  a->set_network("net1");
  a->set_address(v4(10, 199, 128, 0));
  a->set_length(20);  // a shorter prefix is a CIDR VIP
  a = in.add_addresses();
  a->set_address(v6Bytes("fd00:97::"));
  a->set_length(64);
  auto* p = in.add_ports();
  p->set_service_port(80);
  p->set_target_port(8080);
  p->set_app_protocol(pb::HTTP11);
  p = in.add_ports();
  p->set_service_port(9090);
  p->set_target_port(0);  // named target port: the endpoint says
  p->set_app_protocol(pb::GRPC);
  p = in.add_ports();
  p->set_service_port(5432);
  p->set_target_port(5432);
  p->set_app_protocol(pb::TCP);
  p = in.add_ports();
  p->set_service_port(8443);
  p->set_target_port(8443);
  p->set_app_protocol(pb::TLS);
  auto* ww = in.add_weighted_waypoints();
  ww->mutable_destination()->mutable_address()->set_address(v4(10, 199, 0, 30));
  ww->mutable_destination()->set_hbone_mtls_port(15008);
  ww->set_weight(90);
  ww = in.add_weighted_waypoints();
  ww->mutable_destination()->mutable_hostname()->set_namespace_("shop");
  ww->mutable_destination()->mutable_hostname()->set_hostname("canary-wp.shop.svc");
  ww->mutable_destination()->set_hbone_mtls_port(15018);
  ww->set_weight(10);
  in.set_canonical(true);
  in.set_ingress_use_waypoint(true);
  in.set_visibility(pb::Service::NAMESPACE);
  auto* ext = in.add_extensions();
  ext->set_name("svc-ext");
  ext->mutable_config()->set_type_url("type.googleapis.com/x.Y");
  in.add_subject_alt_names("spiffe://cluster.local/ns/shop/sa/cart");
  in.mutable_waypoint()->mutable_hostname()->set_namespace_("shop");
  in.mutable_waypoint()->mutable_hostname()->set_hostname("waypoint.shop.svc.cluster.local");
  in.mutable_waypoint()->set_hbone_mtls_port(15008);
  in.mutable_load_balancing()->add_routing_preference(pb::LoadBalancing::NETWORK);
  in.mutable_load_balancing()->add_routing_preference(pb::LoadBalancing::REGION);
  in.mutable_load_balancing()->add_routing_preference(pb::LoadBalancing::ZONE);
  in.mutable_load_balancing()->add_routing_preference(pb::LoadBalancing::SUBZONE);
  in.mutable_load_balancing()->add_routing_preference(pb::LoadBalancing::NODE);
  in.mutable_load_balancing()->add_routing_preference(pb::LoadBalancing::CLUSTER);
  in.mutable_load_balancing()->set_mode(pb::LoadBalancing::FAILOVER);
  in.mutable_load_balancing()->set_health_policy(pb::LoadBalancing::ALLOW_ALL);
  in.set_ip_families(pb::DUAL);

  auto r = toService(in);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const model::Service& s = *r;
  EXPECT_EQ(s.name, "cart");
  EXPECT_EQ(s.namespace_name, "shop");
  EXPECT_EQ(s.hostname, "cart.shop.svc.cluster.local");
  EXPECT_EQ(s.key(), "shop/cart.shop.svc.cluster.local");
  EXPECT_THAT(s.vips, ElementsAre(model::NetworkAddress{"", ip("10.199.96.20")},
                                  model::NetworkAddress{"net1", ip("fd00:96::20")}));
  EXPECT_THAT(s.cidr_vips,
              ElementsAre(model::NetworkCidr{"net1", Cidr::parse("10.199.128.0/20").value()},
                          model::NetworkCidr{"", Cidr::parse("fd00:97::/64").value()}));
  EXPECT_EQ(s.cidr_vips[0].toString(), "net1/10.199.128.0/20");
  EXPECT_EQ(s.ports, (model::PortMap{{80, 8080}, {9090, 0}, {5432, 5432}, {8443, 8443}}));
  EXPECT_EQ(s.app_protocols, (model::AppProtocolMap{{80, model::AppProtocol::Http11},
                                                    {9090, model::AppProtocol::Grpc},
                                                    {5432, model::AppProtocol::Tcp},
                                                    {8443, model::AppProtocol::Tls}}));
  ASSERT_EQ(s.weighted_waypoints.size(), 2U);
  EXPECT_EQ(s.weighted_waypoints[0].destination.toString(), "/10.199.0.30:15008");
  EXPECT_EQ(s.weighted_waypoints[0].weight, 90U);
  EXPECT_EQ(s.weighted_waypoints[1].destination.toString(), "shop/canary-wp.shop.svc:15018");
  EXPECT_EQ(s.weighted_waypoints[1].weight, 10U);
  EXPECT_TRUE(s.canonical);
  EXPECT_TRUE(s.ingress_use_waypoint);
  EXPECT_EQ(s.visibility, model::Visibility::Namespace);
  EXPECT_THAT(s.extensions,
              ElementsAre(model::Extension{"svc-ext", "type.googleapis.com/x.Y", ""}));
  EXPECT_THAT(s.subject_alt_names, ElementsAre("spiffe://cluster.local/ns/shop/sa/cart"));
  ASSERT_TRUE(s.waypoint.has_value());
  EXPECT_EQ(s.waypoint->toString(), "shop/waypoint.shop.svc.cluster.local:15008");
  ASSERT_TRUE(s.load_balancing.has_value());
  using Scope = model::LoadBalancingScope;
  EXPECT_THAT(s.load_balancing->routing_preference,
              ElementsAre(Scope::Network, Scope::Region, Scope::Zone, Scope::Subzone, Scope::Node,
                          Scope::Cluster));
  EXPECT_EQ(s.load_balancing->mode, model::LoadBalancingMode::Failover);
  EXPECT_EQ(s.load_balancing->health_policy, model::LoadBalancingHealthPolicy::AllowAll);
  EXPECT_EQ(s.ip_families, model::IpFamilies::Dual);
  EXPECT_TRUE(s.endpoints.empty());
}

TEST(XdsConvertService, EnumValues) {
  using Mode = model::LoadBalancingMode;
  for (auto [mode, want] : {std::pair{pb::LoadBalancing::UNSPECIFIED_MODE, Mode::UnspecifiedMode},
                            std::pair{pb::LoadBalancing::STRICT, Mode::Strict},
                            std::pair{pb::LoadBalancing::PASSTHROUGH, Mode::Passthrough}}) {
    pb::Service in = minimalService();
    in.mutable_load_balancing()->set_mode(mode);
    EXPECT_EQ(toService(in)->load_balancing->mode, want);
    EXPECT_EQ(toService(in)->load_balancing->health_policy,
              model::LoadBalancingHealthPolicy::OnlyHealthy);
  }
  for (auto [family, want] : {std::pair{pb::AUTOMATIC, model::IpFamilies::Automatic},
                              std::pair{pb::IPV4_ONLY, model::IpFamilies::Ipv4Only},
                              std::pair{pb::IPV6_ONLY, model::IpFamilies::Ipv6Only}}) {
    pb::Service in = minimalService();
    in.set_ip_families(family);
    EXPECT_EQ(toService(in)->ip_families, want);
  }
  auto plain = toService(minimalService());
  EXPECT_FALSE(plain->load_balancing.has_value());
  EXPECT_FALSE(plain->canonical);
  EXPECT_FALSE(plain->ingress_use_waypoint);
  EXPECT_EQ(plain->visibility, model::Visibility::Public);
  EXPECT_TRUE(plain->cidr_vips.empty());
  EXPECT_TRUE(plain->weighted_waypoints.empty());
  EXPECT_TRUE(plain->app_protocols.empty());

  // As ztunnel: an unknown visibility is PUBLIC, the service is kept.
  pb::Service future = minimalService();
  future.set_visibility(static_cast<pb::Service::Visibility>(5));
  auto kept = toService(future);
  ASSERT_TRUE(kept.ok()) << kept.error().message;
  EXPECT_EQ(kept->visibility, model::Visibility::Public);
}

TEST(XdsConvertService, Errors) {
  struct Case {
    const char* what;
    void (*break_it)(pb::Service&);
    const char* message;
  };
  const Case cases[] = {
      {"no hostname", [](pb::Service& s) { s.clear_hostname(); },
       "service shop/: hostname: required"},
      {"no namespace", [](pb::Service& s) { s.clear_namespace_(); },
       "service /cart.shop.svc.cluster.local: namespace: required"},
      {"bad VIP",
       [](pb::Service& s) {
         s.add_addresses()->set_address(v4(10, 0, 0, 1));
         s.add_addresses()->set_address("123456");
       },
       "service shop/cart.shop.svc.cluster.local: addresses[1].address: 6 bytes, want 4 or 16"},
      {"VIP prefix too long",
       [](pb::Service& s) {
         auto* a = s.add_addresses();
         a->set_address(v4(10, 0, 0, 1));
         a->set_length(33);
       },
       "addresses[0].length: prefix length 33 is longer than the address (32 bits)"},
      {"port too big",
       [](pb::Service& s) {
         auto* p = s.add_ports();
         p->set_service_port(65536);
         p->set_target_port(80);
       },
       "ports[0].service_port: port 65536 is above 65535"},
      {"waypoint without destination",
       [](pb::Service& s) { s.mutable_waypoint()->set_hbone_mtls_port(15008); },
       "waypoint: neither address nor hostname is set"},
      {"unspecified scope",
       [](pb::Service& s) {
         s.mutable_load_balancing()->add_routing_preference(pb::LoadBalancing::ZONE);
         s.mutable_load_balancing()->add_routing_preference(pb::LoadBalancing::UNSPECIFIED_SCOPE);
       },
       "load_balancing.routing_preference[1]: UNSPECIFIED_SCOPE is not a scope"},
      {"unknown scope",
       [](pb::Service& s) {
         s.mutable_load_balancing()->add_routing_preference(
             static_cast<pb::LoadBalancing::Scope>(42));
       },
       "load_balancing.routing_preference[0]: unknown value 42"},
      {"unknown mode",
       [](pb::Service& s) {
         s.mutable_load_balancing()->set_mode(static_cast<pb::LoadBalancing::Mode>(7));
       },
       "load_balancing.mode: unknown value 7"},
      {"unknown health policy",
       [](pb::Service& s) {
         s.mutable_load_balancing()->set_health_policy(
             static_cast<pb::LoadBalancing::HealthPolicy>(7));
       },
       "load_balancing.health_policy: unknown value 7"},
      {"unknown ip families",
       [](pb::Service& s) { s.set_ip_families(static_cast<pb::IPFamilies>(9)); },
       "ip_families: unknown value 9"},
      {"weighted waypoint without destination",
       [](pb::Service& s) { s.add_weighted_waypoints()->set_weight(3); },
       "weighted_waypoints[0].destination: required"},
      {"weighted waypoint bad destination",
       [](pb::Service& s) {
         s.add_weighted_waypoints()->mutable_destination()->mutable_address()->set_address("x");
       },
       "weighted_waypoints[0].destination.address.address: 1 bytes, want 4 or 16"},
      {"cidr VIP bad prefix",
       [](pb::Service& s) {
         auto* a = s.add_addresses();
         a->set_address(v6Bytes("fd00::"));
         a->set_length(200);
       },
       "addresses[0].length: prefix length 200 is longer than the address (128 bits)"},
      {"unknown app protocol",
       [](pb::Service& s) {
         auto* p = s.add_ports();
         p->set_service_port(80);
         p->set_app_protocol(static_cast<pb::AppProtocol>(6));
       },
       "ports[0].app_protocol: unknown value 6"},
  };
  for (const Case& c : cases) {
    pb::Service s = minimalService();
    c.break_it(s);
    auto r = toService(s);
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_THAT(r.error().message, HasSubstr(c.message)) << c.what;
    EXPECT_THAT(r.error().message, ::testing::StartsWith("service ")) << c.what;
  }
}

pbsec::Authorization minimalPolicy() {
  pbsec::Authorization a;
  a.set_name("allow-frontend");
  a.set_namespace_("shop");
  return a;
}

void addCidr(google::protobuf::RepeatedPtrField<pbsec::Address>* list, const std::string& bytes,
             uint32_t length) {
  auto* a = list->Add();
  a->set_address(bytes);
  a->set_length(length);
}

TEST(XdsConvertAuthorization, MapsEveryField) {
  pbsec::Authorization in = minimalPolicy();
  in.set_scope(pbsec::WORKLOAD_SELECTOR);
  in.set_action(pbsec::DENY);
  in.set_dry_run(true);
  // rule 0: two clauses; clause 0 has two matches.
  auto* rule = in.add_rules();
  auto* clause = rule->add_clauses();
  auto* m = clause->add_matches();
  m->add_namespaces()->set_exact("front");
  m->add_namespaces()->set_prefix("team-");
  m->add_not_namespaces()->set_suffix("-test");
  m->add_principals()->mutable_presence();
  m->add_not_principals()->set_exact("cluster.local/ns/front/sa/bad");
  auto* sa = m->add_service_accounts();
  sa->set_namespace_("front");
  sa->set_serviceaccount("web");
  sa = m->add_not_service_accounts();
  sa->set_namespace_("front");
  sa->set_serviceaccount("batch");
  addCidr(m->mutable_source_ips(), v4(10, 199, 1, 0), 24);
  addCidr(m->mutable_not_source_ips(), v4(10, 199, 1, 7), 32);
  addCidr(m->mutable_destination_ips(), v6Bytes("fd00:1::"), 64);
  addCidr(m->mutable_not_destination_ips(), v4(10, 199, 2, 0), 0);
  m->add_destination_ports(8080);
  m->add_destination_ports(65535);
  m->add_not_destination_ports(9090);
  m->add_extensions()->set_name("match-ext");
  clause->add_matches()->add_destination_ports(80);
  rule->add_clauses()->add_matches()->add_namespaces()->set_exact("other");
  // rule 1: one clause, one match.
  in.add_rules()->add_clauses()->add_matches()->add_principals()->set_exact(
      "cluster.local/ns/a/sa/b");
  in.add_extensions()->set_name("policy-ext");

  auto r = toAuthorization(in);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const model::Authorization& a = *r;
  EXPECT_EQ(a.name, "allow-frontend");
  EXPECT_EQ(a.namespace_name, "shop");
  EXPECT_EQ(a.key(), "shop/allow-frontend");
  EXPECT_EQ(a.scope, model::PolicyScope::WorkloadSelector);
  EXPECT_EQ(a.action, model::PolicyAction::Deny);
  EXPECT_TRUE(a.dry_run);
  ASSERT_EQ(a.rules.size(), 2U);
  ASSERT_EQ(a.rules[0].size(), 2U);
  ASSERT_EQ(a.rules[0][0].size(), 2U);
  const model::Match& got = a.rules[0][0][0];
  EXPECT_THAT(got.namespaces,
              ElementsAre(model::StringMatch::exact("front"), model::StringMatch::prefix("team-")));
  EXPECT_THAT(got.not_namespaces, ElementsAre(model::StringMatch::suffix("-test")));
  EXPECT_THAT(got.principals, ElementsAre(model::StringMatch::presence()));
  EXPECT_THAT(got.not_principals,
              ElementsAre(model::StringMatch::exact("cluster.local/ns/front/sa/bad")));
  EXPECT_THAT(got.service_accounts, ElementsAre(model::ServiceAccountMatch{"front", "web"}));
  EXPECT_THAT(got.not_service_accounts, ElementsAre(model::ServiceAccountMatch{"front", "batch"}));
  EXPECT_THAT(got.source_ips, ElementsAre(Cidr::parse("10.199.1.0/24").value()));
  EXPECT_THAT(got.not_source_ips, ElementsAre(Cidr::parse("10.199.1.7/32").value()));
  EXPECT_THAT(got.destination_ips, ElementsAre(Cidr::parse("fd00:1::/64").value()));
  EXPECT_THAT(got.not_destination_ips, ElementsAre(Cidr::parse("0.0.0.0/0").value()));
  // The CIDR behaves as a /24: its neighbour inside matches, outside does not.
  EXPECT_TRUE(got.source_ips[0].contains(ip("10.199.1.200")));
  EXPECT_FALSE(got.source_ips[0].contains(ip("10.199.2.1")));
  EXPECT_THAT(got.destination_ports, ElementsAre(8080, 65535));
  EXPECT_THAT(got.not_destination_ports, ElementsAre(9090));
  EXPECT_TRUE(got.l7_fields.empty());
  EXPECT_THAT(got.extensions, ElementsAre(model::Extension{"match-ext", "", ""}));
  EXPECT_THAT(a.extensions, ElementsAre(model::Extension{"policy-ext", "", ""}));
  EXPECT_THAT(a.rules[0][0][1].destination_ports, ElementsAre(80));
  EXPECT_THAT(a.rules[0][1][0].namespaces, ElementsAre(model::StringMatch::exact("other")));
  ASSERT_EQ(a.rules[1].size(), 1U);
  EXPECT_THAT(a.rules[1][0][0].principals,
              ElementsAre(model::StringMatch::exact("cluster.local/ns/a/sa/b")));
}

TEST(XdsConvertAuthorization, ScopesAndActions) {
  for (auto [scope, want] :
       {std::pair{pbsec::GLOBAL, model::PolicyScope::Global},
        std::pair{pbsec::NAMESPACE, model::PolicyScope::Namespace},
        std::pair{pbsec::WORKLOAD_SELECTOR, model::PolicyScope::WorkloadSelector}}) {
    pbsec::Authorization in = minimalPolicy();
    in.set_scope(scope);
    EXPECT_EQ(toAuthorization(in)->scope, want);
  }
  pbsec::Authorization in = minimalPolicy();
  EXPECT_EQ(toAuthorization(in)->action, model::PolicyAction::Allow);  // ALLOW is 0
  EXPECT_FALSE(toAuthorization(in)->dry_run);
  EXPECT_TRUE(toAuthorization(in)->rules.empty());
}

TEST(XdsConvertAuthorization, Errors) {
  struct Case {
    const char* what;
    void (*break_it)(pbsec::Authorization&);
    const char* message;
  };
  const Case cases[] = {
      {"no name", [](pbsec::Authorization& a) { a.clear_name(); },
       "authorization shop/: name: required"},
      {"unknown scope", [](pbsec::Authorization& a) { a.set_scope(static_cast<pbsec::Scope>(3)); },
       "authorization shop/allow-frontend: scope: unknown value 3"},
      {"unknown action",
       [](pbsec::Authorization& a) { a.set_action(static_cast<pbsec::Action>(2)); },
       "action: unknown value 2"},
      {"string match without kind",
       [](pbsec::Authorization& a) {
         auto* m = a.add_rules()->add_clauses()->add_matches();
         m->add_namespaces()->set_exact("ok");
         m->add_namespaces();
       },
       "rules[0].clauses[0].matches[0].namespaces[1]: none of exact, prefix, suffix or presence "
       "is set"},
      {"not_principals without kind",
       [](pbsec::Authorization& a) {
         a.add_rules()->add_clauses()->add_matches()->add_not_principals();
       },
       "rules[0].clauses[0].matches[0].not_principals[0]: none of"},
      {"bad source address",
       [](pbsec::Authorization& a) {
         a.add_rules();
         auto* clause = a.add_rules()->add_clauses();
         clause->add_matches();
         addCidr(clause->add_matches()->mutable_source_ips(), "abc", 8);
       },
       "rules[1].clauses[0].matches[1].source_ips[0].address: 3 bytes, want 4 or 16"},
      {"v4 prefix too long",
       [](pbsec::Authorization& a) {
         addCidr(a.add_rules()->add_clauses()->add_matches()->mutable_not_destination_ips(),
                 v4(10, 0, 0, 0), 33);
       },
       "not_destination_ips[0].length: prefix length 33 is longer than the address (32 bits)"},
      {"v6 prefix too long",
       [](pbsec::Authorization& a) {
         addCidr(a.add_rules()->add_clauses()->add_matches()->mutable_destination_ips(),
                 v6Bytes("fd00::"), 129);
       },
       "destination_ips[0].length: prefix length 129 is longer than the address (128 bits)"},
      {"not source address",
       [](pbsec::Authorization& a) {
         addCidr(a.add_rules()->add_clauses()->add_matches()->mutable_not_source_ips(), "", 0);
       },
       "not_source_ips[0].address: 0 bytes, want 4 or 16"},
      {"destination port too big",
       [](pbsec::Authorization& a) {
         a.add_rules()->add_clauses()->add_matches()->add_destination_ports(65536);
       },
       "rules[0].clauses[0].matches[0].destination_ports[0]: port 65536 is above 65535"},
      {"not destination port too big",
       [](pbsec::Authorization& a) {
         auto* m = a.add_rules()->add_clauses()->add_matches();
         m->add_not_destination_ports(80);
         m->add_not_destination_ports(100000);
       },
       "not_destination_ports[1]: port 100000 is above 65535"},
  };
  for (const Case& c : cases) {
    pbsec::Authorization a = minimalPolicy();
    c.break_it(a);
    auto r = toAuthorization(a);
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_THAT(r.error().message, HasSubstr(c.message)) << c.what;
    EXPECT_THAT(r.error().message, ::testing::StartsWith("authorization ")) << c.what;
  }
}

}  // namespace
}  // namespace nodemesh::xds
