#include "model/validation.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>

namespace nodemesh::model {
namespace {

using Finding = ValidationFinding;
using Kind = ValidationFinding::Kind;
using Part = ValidationFinding::Part;
using Severity = ValidationFinding::Severity;

Finding finding(Severity severity, Kind kind, size_t index, Part part, size_t item,
                std::string subject, std::optional<size_t> first, std::string message) {
  return Finding{severity, kind, index, part, item, std::move(subject), first, std::move(message)};
}

}  // namespace

std::string_view toString(ValidationFinding::Kind kind) {
  switch (kind) {
    case Kind::Workload:
      return "workload";
    case Kind::Service:
      return "service";
    case Kind::Policy:
      return "policy";
  }
  return "unknown";
}

std::vector<ValidationFinding> validate(const std::vector<Workload>& workloads,
                                        const std::vector<Service>& services,
                                        const std::vector<Authorization>& policies,
                                        const ValidationOptions& options) {
  std::vector<Finding> out;

  std::set<std::string, std::less<>> service_keys;
  for (const Service& s : services) service_keys.insert(s.key());
  std::set<std::string, std::less<>> policy_keys;
  for (const Authorization& p : policies) policy_keys.insert(p.key());

  // ---- workloads ----
  std::map<std::string, size_t, std::less<>> uid_first;
  // (network, address) -> the first workload that has it.
  std::map<std::pair<std::string, IpAddress>, size_t> address_first;
  for (size_t i = 0; i < workloads.size(); ++i) {
    const Workload& w = workloads[i];
    auto [uid_it, uid_new] = uid_first.emplace(w.uid, i);
    if (!uid_new) {
      out.push_back(finding(Severity::Error, Kind::Workload, i, Part::Key, 0, w.uid, uid_it->second,
                            fmt::format("duplicate workload uid '{}'", w.uid)));
    }
    std::set<IpAddress> own;
    for (size_t a = 0; a < w.workload_ips.size(); ++a) {
      const IpAddress& ip = w.workload_ips[a];
      if (!own.insert(ip).second) {
        out.push_back(finding(Severity::Error, Kind::Workload, i, Part::Address, a, ip.toString(),
                              std::nullopt,
                              fmt::format("address {} is listed twice", ip.toString())));
        continue;
      }
      // A HostNetwork workload has the node's address, which other host-network pods share.
      if (w.network_mode == NetworkMode::HostNetwork) continue;
      auto [it, inserted] = address_first.emplace(std::pair{w.network, ip}, i);
      if (!inserted && it->second != i) {
        out.push_back(finding(
            Severity::Warning, Kind::Workload, i, Part::Address, a, ip.toString(), it->second,
            fmt::format("address {} also belongs to workload '{}'; lookups by address prefer a "
                        "pod, then an HBONE workload",
                        ip.toString(), workloads[it->second].uid)));
      }
    }
    for (size_t r = 0; r < w.authorization_policies.size(); ++r) {
      const std::string& ref = w.authorization_policies[r];
      if (policy_keys.count(ref) != 0) continue;
      out.push_back(
          finding(options.undefined_policy_is_error ? Severity::Error : Severity::Warning,
                  Kind::Workload, i, Part::PolicyRef, r, ref, std::nullopt,
                  fmt::format("workload references policy '{}', which is not defined (policies are "
                              "named namespace/name)",
                              ref)));
    }
    for (const auto& [key, ports] : w.services) {
      if (service_keys.count(key) != 0) continue;
      out.push_back(finding(Severity::Warning, Kind::Workload, i, Part::ServiceRef, 0, key,
                            std::nullopt,
                            fmt::format("workload backs service '{}', which is not defined", key)));
    }
  }

  // ---- services ----
  std::map<std::string, size_t, std::less<>> key_first;
  std::map<NetworkAddress, size_t> vip_first;
  for (size_t i = 0; i < services.size(); ++i) {
    const Service& s = services[i];
    std::string key = s.key();
    auto [key_it, key_new] = key_first.emplace(key, i);
    if (!key_new) {
      out.push_back(finding(Severity::Error, Kind::Service, i, Part::Key, 0, key, key_it->second,
                            fmt::format("duplicate service '{}'", key)));
    }
    std::set<NetworkAddress> own;
    for (size_t v = 0; v < s.vips.size(); ++v) {
      const NetworkAddress& vip = s.vips[v];
      if (!own.insert(vip).second) {
        out.push_back(finding(Severity::Error, Kind::Service, i, Part::Vip, v, vip.toString(),
                              std::nullopt, fmt::format("VIP {} is listed twice", vip.toString())));
        continue;
      }
      auto [it, inserted] = vip_first.emplace(vip, i);
      if (!inserted) {
        out.push_back(finding(
            Severity::Warning, Kind::Service, i, Part::Vip, v, vip.toString(), it->second,
            fmt::format("VIP {} also belongs to service '{}'; lookups by VIP take the later one",
                        vip.toString(), services[it->second].key())));
      }
    }
  }

  // ---- policies ----
  std::map<std::string, size_t, std::less<>> policy_first;
  for (size_t i = 0; i < policies.size(); ++i) {
    std::string key = policies[i].key();
    auto [it, inserted] = policy_first.emplace(key, i);
    if (!inserted) {
      out.push_back(finding(Severity::Error, Kind::Policy, i, Part::Key, 0, key, it->second,
                            fmt::format("duplicate policy '{}'", key)));
    }
  }
  return out;
}

bool hasErrors(const std::vector<ValidationFinding>& findings) {
  return std::any_of(findings.begin(), findings.end(),
                     [](const ValidationFinding& f) { return f.isError(); });
}

}  // namespace nodemesh::model
