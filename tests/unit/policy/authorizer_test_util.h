#pragma once

// Shared by the authorizer tests: builders for matches, connections, workloads and policies.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>
#include "policy/authorizer.h"

namespace nodemesh::policy::authorizer_test {

using model::Authorization;
using model::Match;
using model::PolicyAction;
using model::PolicyScope;
using model::Rule;
using model::ServiceAccountMatch;
using model::StringMatch;
using model::Workload;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

inline constexpr PolicyAction kAllow = PolicyAction::Allow;
inline constexpr PolicyAction kDeny = PolicyAction::Deny;

inline IpAddress ip(std::string_view text) {
  return IpAddress::parse(text).value();
}

inline Cidr cidr(std::string_view text) {
  return Cidr::parse(text).value();
}

// ---- match builders: one per field, merge() to combine ---------------------------------------

using Strings = std::vector<StringMatch>;
using Accounts = std::vector<ServiceAccountMatch>;
using Cidrs = std::vector<std::string_view>;
using Ports = std::vector<uint16_t>;

inline std::vector<Cidr> cidrs(const Cidrs& texts) {
  std::vector<Cidr> out;
  out.reserve(texts.size());
  for (std::string_view t : texts) out.push_back(cidr(t));
  return out;
}

inline StringMatch exact(std::string v) {
  return StringMatch::exact(std::move(v));
}

inline Match namespaces(Strings v) {
  Match m;
  m.namespaces = std::move(v);
  return m;
}
inline Match notNamespaces(Strings v) {
  Match m;
  m.not_namespaces = std::move(v);
  return m;
}
inline Match serviceAccounts(Accounts v) {
  Match m;
  m.service_accounts = std::move(v);
  return m;
}
inline Match notServiceAccounts(Accounts v) {
  Match m;
  m.not_service_accounts = std::move(v);
  return m;
}
inline Match principals(Strings v) {
  Match m;
  m.principals = std::move(v);
  return m;
}
inline Match notPrincipals(Strings v) {
  Match m;
  m.not_principals = std::move(v);
  return m;
}
inline Match sourceIps(const Cidrs& v) {
  Match m;
  m.source_ips = cidrs(v);
  return m;
}
inline Match notSourceIps(const Cidrs& v) {
  Match m;
  m.not_source_ips = cidrs(v);
  return m;
}
inline Match destinationIps(const Cidrs& v) {
  Match m;
  m.destination_ips = cidrs(v);
  return m;
}
inline Match notDestinationIps(const Cidrs& v) {
  Match m;
  m.not_destination_ips = cidrs(v);
  return m;
}
inline Match destinationPorts(Ports v) {
  Match m;
  m.destination_ports = std::move(v);
  return m;
}
inline Match notDestinationPorts(Ports v) {
  Match m;
  m.not_destination_ports = std::move(v);
  return m;
}
// A match naming L7 attributes (config keys such as "methods"), on top of `m`'s L4 fields.
inline Match l7(std::vector<std::string> fields, Match m = {}) {
  m.l7_fields = std::move(fields);
  return m;
}

// One match with the fields of all of `parts` (each field set in one part only).
inline Match merge(std::initializer_list<Match> parts) {
  Match m;
  auto take = [](auto& into, const auto& from) {
    if (!from.empty()) into = from;
  };
  for (const Match& p : parts) {
    take(m.namespaces, p.namespaces);
    take(m.not_namespaces, p.not_namespaces);
    take(m.service_accounts, p.service_accounts);
    take(m.not_service_accounts, p.not_service_accounts);
    take(m.principals, p.principals);
    take(m.not_principals, p.not_principals);
    take(m.source_ips, p.source_ips);
    take(m.not_source_ips, p.not_source_ips);
    take(m.destination_ips, p.destination_ips);
    take(m.not_destination_ips, p.not_destination_ips);
    take(m.destination_ports, p.destination_ports);
    take(m.not_destination_ports, p.not_destination_ports);
    take(m.l7_fields, p.l7_fields);
  }
  return m;
}

// ---- connections ----------------------------------------------------------------------------

inline constexpr std::string_view kFrontendId = "spiffe://cluster.local/ns/shop/sa/frontend";
inline constexpr std::string_view kBatchId = "spiffe://td-alt/ns/other/sa/batch";
inline constexpr std::string_view kDevId = "spiffe://cluster.local/ns/dev/sa/tester";

inline ConnectionAttributes conn(std::string_view src, std::string_view dst, uint16_t port,
                                 std::optional<std::string_view> identity) {
  return ConnectionAttributes{ip(src), ip(dst), port, identity};
}

// The three connections of ztunnel's rbac tests: plaintext, mTLS, and mTLS from another peer
// to another address and port.
inline const ConnectionAttributes kPlaintext = conn("10.0.0.1", "10.0.0.2", 8080, std::nullopt);
inline const ConnectionAttributes kTls = conn("10.0.0.1", "10.0.0.2", 8080, kFrontendId);
inline const ConnectionAttributes kTlsAlt = conn("10.1.0.3", "10.0.0.4", 9090, kBatchId);

// ---- snapshots ------------------------------------------------------------------------------

// The destinations every scenario can use: two workloads in "shop" (cart lists its own
// policies), one in "other", one in the root namespace.
inline Workload workload(std::string uid, std::string ns, std::string_view address,
                         std::vector<std::string> policies = {}) {
  Workload w;
  w.uid = uid;
  w.name = std::move(uid);
  w.namespace_name = std::move(ns);
  w.workload_ips = {ip(address)};
  w.authorization_policies = std::move(policies);
  return w;
}

inline std::vector<Workload> workloads() {
  return {
      workload("cart", "shop", "10.0.0.2", {"shop/cart-only", "istio-system/root-selector"}),
      workload("frontend", "shop", "10.0.0.3"),
      workload("db", "other", "10.0.0.4"),
      workload("gateway", "istio-system", "10.0.0.5"),
  };
}

inline Authorization policy(const std::string& ns_and_name, PolicyScope scope, PolicyAction action,
                            std::vector<Rule> rules, bool dry_run = false) {
  auto slash = ns_and_name.find('/');
  Authorization p;
  p.name = ns_and_name.substr(slash + 1);
  p.namespace_name = ns_and_name.substr(0, slash);
  p.scope = scope;
  p.action = action;
  p.dry_run = dry_run;
  p.rules = std::move(rules);
  return p;
}

inline Authorization nsPolicy(const std::string& key, PolicyAction action, std::vector<Rule> rules,
                              bool dry_run = false) {
  return policy(key, PolicyScope::Namespace, action, std::move(rules), dry_run);
}

// One rule of one clause of one match.
inline Rule only(Match m) {
  return Rule{{std::move(m)}};
}

inline std::unique_ptr<Authorizer> authorizer(std::vector<Authorization> policies) {
  return std::make_unique<Authorizer>(
      model::Snapshot::create(workloads(), {}, std::move(policies)));
}

inline const Workload& destination(const Authorizer& a, std::string_view uid) {
  const Workload* w = a.snapshot()->workloadByUid(uid);
  EXPECT_NE(w, nullptr) << uid;
  return *w;
}

template <typename Case>
inline std::string caseName(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.name);
}

// Failure messages name the case instead of dumping its bytes.
template <typename Case>
inline void printName(const Case& c, std::ostream* os) {
  *os << c.name;
}

// Matches and connections the scenarios and the verdict tests share.
inline Match ns(std::string name) {
  return namespaces({exact(std::move(name))});
}
inline Match port(uint16_t p) {
  return destinationPorts({p});
}

inline const ConnectionAttributes kFromShop = conn("10.0.0.3", "10.0.0.2", 8080, kFrontendId);
inline const ConnectionAttributes kFromShopPort80 = conn("10.0.0.3", "10.0.0.2", 80, kFrontendId);
inline const ConnectionAttributes kFromDev = conn("10.9.0.1", "10.0.0.2", 8080, kDevId);
inline const ConnectionAttributes kFromDevPort80 = conn("10.9.0.1", "10.0.0.2", 80, kDevId);
inline const ConnectionAttributes kPlainPort80 = conn("192.0.2.1", "10.0.0.2", 80, std::nullopt);

}  // namespace nodemesh::policy::authorizer_test
