// model::validate(): the checks every config source shares (unique keys, references), each
// finding pointing at the item and part it is about.

#include "model/validation.h"

#include <gtest/gtest.h>

namespace nodemesh::model {
namespace {

using Finding = ValidationFinding;
using Kind = ValidationFinding::Kind;
using Part = ValidationFinding::Part;

Workload workload(std::string uid, const std::vector<std::string>& ips) {
  Workload w;
  w.uid = std::move(uid);
  w.namespace_name = "shop";
  for (const auto& ip : ips) w.workload_ips.push_back(IpAddress::parse(ip).value());
  return w;
}

Service service(std::string hostname, const std::vector<std::string>& vips) {
  Service s;
  s.name = hostname;
  s.namespace_name = "shop";
  s.hostname = std::move(hostname);
  for (const auto& vip : vips) s.vips.push_back(NetworkAddress::parse(vip).value());
  return s;
}

Authorization policy(std::string name) {
  Authorization p;
  p.name = std::move(name);
  p.namespace_name = "shop";
  return p;
}

TEST(ModelValidation, ACleanSetHasNoFindings) {
  Workload w = workload("w1", {"10.0.0.1", "fd00::1"});
  w.authorization_policies = {"shop/p"};
  w.services["shop/a.shop"] = {{80, 8080}};
  auto findings = validate({w, workload("w2", {"10.0.0.2"})},
                           {service("a.shop", {"/10.96.0.1"}), service("b.shop", {"/10.96.0.2"})},
                           {policy("p"), policy("q")});
  EXPECT_TRUE(findings.empty());
  EXPECT_FALSE(hasErrors(findings));
}

TEST(ModelValidation, DuplicateKeysNameTheFirst) {
  auto findings =
      validate({workload("w1", {}), workload("w2", {}), workload("w1", {})},
               {service("a.shop", {}), service("a.shop", {})}, {policy("p"), policy("p")});
  ASSERT_EQ(findings.size(), 3u);
  EXPECT_TRUE(hasErrors(findings));

  EXPECT_EQ(findings[0].kind, Kind::Workload);
  EXPECT_EQ(findings[0].index, 2u);
  EXPECT_EQ(findings[0].part, Part::Key);
  EXPECT_EQ(findings[0].first, std::optional<size_t>(0));
  EXPECT_EQ(findings[0].subject, "w1");
  EXPECT_EQ(findings[0].message, "duplicate workload uid 'w1'");
  EXPECT_TRUE(findings[0].isError());

  EXPECT_EQ(findings[1].kind, Kind::Service);
  EXPECT_EQ(findings[1].index, 1u);
  EXPECT_EQ(findings[1].first, std::optional<size_t>(0));
  EXPECT_EQ(findings[1].message, "duplicate service 'shop/a.shop'");

  EXPECT_EQ(findings[2].kind, Kind::Policy);
  EXPECT_EQ(findings[2].index, 1u);
  EXPECT_EQ(findings[2].message, "duplicate policy 'shop/p'");
}

TEST(ModelValidation, AnAddressOrVipTwiceInOneItemIsAnError) {
  auto findings = validate({workload("w1", {"10.0.0.1", "10.0.0.2", "10.0.0.1"})},
                           {service("a.shop", {"/10.96.0.1", "net1/10.96.0.1", "/10.96.0.1"})}, {});
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_EQ(findings[0].part, Part::Address);
  EXPECT_EQ(findings[0].item, 2u);
  EXPECT_EQ(findings[0].message, "address 10.0.0.1 is listed twice");
  EXPECT_TRUE(findings[0].isError());
  EXPECT_EQ(findings[1].part, Part::Vip);
  EXPECT_EQ(findings[1].item, 2u);  // net1/10.96.0.1 is another network: not a duplicate
  EXPECT_EQ(findings[1].message, "VIP /10.96.0.1 is listed twice");
}

TEST(ModelValidation, SharedAddressesAndVipsWarn) {
  Workload host1 = workload("h1", {"10.0.0.9"});
  host1.network_mode = NetworkMode::HostNetwork;
  Workload host2 = workload("h2", {"10.0.0.9"});
  host2.network_mode = NetworkMode::HostNetwork;
  Workload other_network = workload("n", {"10.0.0.1"});
  other_network.network = "net1";
  auto findings =
      validate({workload("a", {"10.0.0.1"}), workload("b", {"10.0.0.2", "10.0.0.1"}), host1, host2,
                other_network},
               {service("a.shop", {"/10.96.0.1"}), service("b.shop", {"/10.96.0.1"})}, {});
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_FALSE(hasErrors(findings));
  EXPECT_EQ(findings[0].kind, Kind::Workload);
  EXPECT_EQ(findings[0].index, 1u);
  EXPECT_EQ(findings[0].item, 1u);
  EXPECT_EQ(findings[0].first, std::optional<size_t>(0));
  EXPECT_EQ(findings[0].severity, Finding::Severity::Warning);
  EXPECT_EQ(findings[1].kind, Kind::Service);
  EXPECT_EQ(findings[1].index, 1u);
  EXPECT_EQ(findings[1].first, std::optional<size_t>(0));
  EXPECT_EQ(findings[1].message,
            "VIP /10.96.0.1 also belongs to service 'shop/a.shop'; lookups by VIP take the later "
            "one");
}

TEST(ModelValidation, ReferencesResolveOrAreReported) {
  Workload w = workload("w1", {});
  w.authorization_policies = {"shop/p", "shop/missing", "p"};
  w.services["shop/ghost.shop"] = {{80, 80}};
  w.services["shop/a.shop"] = {{80, 80}};
  auto findings = validate({w}, {service("a.shop", {})}, {policy("p")});
  ASSERT_EQ(findings.size(), 3u);
  EXPECT_EQ(findings[0].part, Part::PolicyRef);
  EXPECT_EQ(findings[0].item, 1u);
  EXPECT_EQ(findings[0].subject, "shop/missing");
  EXPECT_TRUE(findings[0].isError());
  EXPECT_EQ(findings[0].message,
            "workload references policy 'shop/missing', which is not defined (policies are named "
            "namespace/name)");
  EXPECT_EQ(findings[1].item, 2u);  // "p" without its namespace names nothing
  EXPECT_EQ(findings[2].part, Part::ServiceRef);
  EXPECT_EQ(findings[2].subject, "shop/ghost.shop");
  EXPECT_FALSE(findings[2].isError());  // ztunnel keeps such endpoints until the service comes

  // A source whose resources arrive one by one (xDS) only warns about a missing policy.
  auto streamed =
      validate({w}, {service("a.shop", {})}, {policy("p")}, {.undefined_policy_is_error = false});
  EXPECT_FALSE(hasErrors(streamed));
  EXPECT_EQ(streamed.size(), 3u);
}

}  // namespace
}  // namespace nodemesh::model
