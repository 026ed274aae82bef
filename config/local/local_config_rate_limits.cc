// LocalConfigParser: the `rateLimitPolicies` section. Each item is Linkerd's
// HTTPLocalRateLimitPolicy (policy.linkerd.io/v1alpha1) as `kubectl get -o yaml` prints it, with
// Gateway API policy attachment targets (a Service or one HTTPRoute/GRPCRoute in the policy's
// namespace) instead of Linkerd's Server, and our optional per-header-value limit. The checks are
// the CRD's (requestsPerSecond bounds; identity and override limits not above the total), plus
// what a local file can check as a whole (duplicates, targets that name nothing).

#include <algorithm>
#include <utility>

#include "config/local/local_config_parser.h"
#include "model/route_validation.h"

namespace nodemesh::config::local_internal {

namespace {

constexpr std::string_view kApiVersion = "policy.linkerd.io/v1alpha1";
constexpr std::string_view kKind = "HTTPLocalRateLimitPolicy";
constexpr std::string_view kObjectFields[] = {"apiVersion", "kind", "metadata", "spec", "status"};
constexpr std::string_view kSpecFields[] = {"targetRef", "targetRefs", "total",
                                            "identity",  "overrides",  "header"};
constexpr std::string_view kTargetRefFields[] = {"group", "kind", "name"};
constexpr std::string_view kLimitFields[] = {"requestsPerSecond"};
constexpr std::string_view kOverrideFields[] = {"requestsPerSecond", "clientRefs"};
constexpr std::string_view kClientRefFields[] = {"group", "kind", "namespace", "name"};
constexpr std::string_view kHeaderFields[] = {"name", "requestsPerSecond"};

constexpr std::string_view kGatewayGroup = "gateway.networking.k8s.io";
constexpr size_t kMaxTargets = 16;  // GEP-713's targetRefs limit
constexpr size_t kMaxOverrides = 64;
constexpr uint32_t kMaxRequestsPerSecond = 1'000'000;

std::string targetText(const model::RateLimitTargetRef& t) {
  switch (t.kind) {
    case model::RateLimitTargetRef::Kind::kService:
      return "Service";
    case model::RateLimitTargetRef::Kind::kHttpRoute:
      return "HTTPRoute";
    case model::RateLimitTargetRef::Kind::kGrpcRoute:
      return "GRPCRoute";
  }
  return "";
}

}  // namespace

void LocalConfigParser::parseRateLimitPolicy(const YAML::Node& node, const std::string& path) {
  FieldMap f(r_, node, path, std::string(kKind), kObjectFields);
  if (!f.valid()) return;
  if (auto v = f.require("apiVersion")) {
    auto text = r_.readString(*v, f.pathOf("apiVersion"));
    if (text && *text != kApiVersion) {
      r_.problem(*v, f.pathOf("apiVersion"),
                 "unsupported apiVersion '" + *text + "'; expected " + std::string(kApiVersion));
    }
  }
  if (auto k = f.require("kind")) {
    auto text = r_.readString(*k, f.pathOf("kind"));
    if (text && *text != kKind) {
      r_.problem(*k, f.pathOf("kind"),
                 "kind '" + *text + "' in rateLimitPolicies; expected " + std::string(kKind));
    }
  }
  model::RateLimitPolicy policy;
  auto meta_node = f.require("metadata");
  if (!meta_node) return;
  FieldMap meta(r_, *meta_node, f.pathOf("metadata"), "metadata", kObjectMetaFields);
  if (!meta.valid()) return;
  policy.metadata.namespace_name = "default";  // as Kubernetes, and the routes
  readString(meta, "namespace", policy.metadata.namespace_name);
  if (policy.metadata.namespace_name.empty()) {
    r_.problem(meta.node(), meta.path(), "metadata.namespace must not be empty");
  }
  if (auto name = meta.require("name")) {
    if (auto n = r_.readString(*name, meta.pathOf("name"))) policy.metadata.name = *n;
    if (policy.metadata.name.empty()) {
      r_.problem(*name, meta.pathOf("name"), "a rate limit policy needs a non-empty name");
    } else {
      auto [prev, inserted] = rate_limit_lines_.emplace(policy.key(), YamlReader::lineOf(*name));
      if (!inserted) {
        r_.problem(*name, meta.pathOf("name"),
                   "duplicate " + std::string(kKind) + " '" + policy.key() +
                       "' (first defined at line " + std::to_string(prev->second) + ")");
      }
    }
  }
  auto spec_node = f.require("spec");
  if (!spec_node) return;
  FieldMap spec(r_, *spec_node, f.pathOf("spec"), "rate limit spec", kSpecFields);
  if (!spec.valid()) return;
  readRateLimitTargets(spec, policy);

  auto read_limit = [&](std::string_view key) -> std::optional<uint32_t> {
    auto n = spec.get(key);
    if (!n) return std::nullopt;
    FieldMap limit(r_, *n, spec.pathOf(key), "limit", kLimitFields);
    if (!limit.valid()) return std::nullopt;
    auto rps = limit.require("requestsPerSecond");
    if (!rps) return std::nullopt;
    return readRequestsPerSecond(*rps, limit.pathOf("requestsPerSecond"));
  };
  policy.total_rps = read_limit("total");
  policy.identity_rps = read_limit("identity");
  if (auto n = spec.get("overrides")) readRateLimitOverrides(*n, spec.pathOf("overrides"), policy);
  if (auto n = spec.get("header")) {
    FieldMap h(r_, *n, spec.pathOf("header"), "header limit", kHeaderFields);
    if (h.valid()) {
      model::HeaderRateLimit header;
      auto name = h.require("name");
      auto rps = h.require("requestsPerSecond");
      std::optional<std::string> text;
      if (name) text = r_.readString(*name, h.pathOf("name"));
      if (text) {
        if (auto valid = model::checkHeaderName(*text); !valid) {
          r_.problem(*name, h.pathOf("name"), "invalid header name: " + valid.error().message);
          text.reset();
        }
      }
      std::optional<uint32_t> limit;
      if (rps) limit = readRequestsPerSecond(*rps, h.pathOf("requestsPerSecond"));
      if (text && limit) {
        header.name = lower(*text);
        header.requests_per_second = *limit;
        policy.header = std::move(header);
      }
    }
  }
  if (!spec.get("total") && !spec.get("identity") && !spec.get("overrides") &&
      !spec.get("header")) {
    r_.problem(spec.node(), spec.path(),
               "a rate limit policy needs at least one of total, identity, overrides, header");
  }
  // The CRD's rule: no per-client limit above the total (it could never be reached).
  if (policy.total_rps) {
    if (policy.identity_rps && *policy.identity_rps > *policy.total_rps) {
      r_.problem(*spec.get("identity"), spec.pathOf("identity"),
                 "identity.requestsPerSecond (" + std::to_string(*policy.identity_rps) +
                     ") is above total.requestsPerSecond (" + std::to_string(*policy.total_rps) +
                     ")");
    }
  }
  rate_limits_.push_back(std::move(policy));
}

void LocalConfigParser::readRateLimitTargets(const FieldMap& spec, model::RateLimitPolicy& policy) {
  auto one = spec.get("targetRef");    // Linkerd's form
  auto many = spec.get("targetRefs");  // Gateway API policy attachment's (GEP-713)
  if (one && many) {
    r_.problem(*many, spec.pathOf("targetRefs"), "give targetRef or targetRefs, not both");
    return;
  }
  if (!one && !many) {
    r_.problem(spec.node(), spec.path(), "a rate limit policy needs targetRef or targetRefs");
    return;
  }
  auto read_target = [&](const YAML::Node& node, const std::string& path) {
    FieldMap t(r_, node, path, "targetRef", kTargetRefFields);
    if (!t.valid()) return;
    std::string group;
    readString(t, "group", group);
    std::string kind;
    readRequiredString(t, "kind", kind);
    model::RateLimitTargetRef target;
    readRequiredString(t, "name", target.name);
    if (kind.empty() && !t.get("kind")) return;
    if (kind == "Service" && (group.empty() || group == "core")) {
      target.kind = model::RateLimitTargetRef::Kind::kService;
    } else if (kind == "HTTPRoute" && group == kGatewayGroup) {
      target.kind = model::RateLimitTargetRef::Kind::kHttpRoute;
    } else if (kind == "GRPCRoute" && group == kGatewayGroup) {
      target.kind = model::RateLimitTargetRef::Kind::kGrpcRoute;
    } else if (kind == "Server") {
      r_.problem(node, path,
                 "kind Server is Linkerd's; the waypoint has no Server resource: target the "
                 "Service (group \"\") or an HTTPRoute/GRPCRoute (group " +
                     std::string(kGatewayGroup) + ")");
      return;
    } else {
      r_.problem(node, path,
                 "unsupported target group '" + group + "' kind '" + kind +
                     "'; expected a Service (group \"\") or an HTTPRoute or GRPCRoute (group " +
                     std::string(kGatewayGroup) + ")");
      return;
    }
    if (target.name.empty()) {
      if (t.get("name")) r_.problem(node, path, "targetRef needs a non-empty name");
      return;
    }
    const std::string what =
        targetText(target) + " " + policy.metadata.namespace_name + "/" + target.name;
    auto [prev, inserted] = rate_limit_target_owner_.emplace(
        what, std::make_pair(policy.key(), YamlReader::lineOf(node)));
    if (!inserted) {
      // As Linkerd: one policy per target, so that which limit applies is never a question.
      r_.problem(node, path,
                 what + " is already the target of rate limit policy '" + prev->second.first +
                     "' (line " + std::to_string(prev->second.second) + ")");
      return;
    }
    rate_limit_targets_.push_back(Reference{what, node, path});
    policy.target_refs.push_back(std::move(target));
  };
  if (one) {
    read_target(*one, spec.pathOf("targetRef"));
    return;
  }
  if (many->IsSequence() && many->size() == 0) {
    r_.problem(*many, spec.pathOf("targetRefs"), "targetRefs must not be empty");
  } else if (many->IsSequence() && many->size() > kMaxTargets) {
    r_.problem(*many, spec.pathOf("targetRefs"),
               "at most " + std::to_string(kMaxTargets) + " targetRefs");
    return;
  }
  r_.forEachItem(*many, spec.pathOf("targetRefs"), read_target);
}

std::optional<uint32_t> LocalConfigParser::readRequestsPerSecond(const YAML::Node& node,
                                                                 const std::string& path) {
  return readBounded(node, path, 1, kMaxRequestsPerSecond);
}

void LocalConfigParser::readRateLimitOverrides(const YAML::Node& node, const std::string& path,
                                               model::RateLimitPolicy& policy) {
  if (node.IsSequence() && node.size() > kMaxOverrides) {
    r_.problem(node, path, "at most " + std::to_string(kMaxOverrides) + " overrides");
    return;
  }
  // A client in two overrides would have two limits.
  std::map<std::string, int, std::less<>> clients;
  r_.forEachItem(node, path, [&](const YAML::Node& item, const std::string& item_path) {
    FieldMap o(r_, item, item_path, "override", kOverrideFields);
    if (!o.valid()) return;
    model::RateLimitOverride out;
    std::optional<uint32_t> rps;
    if (auto n = o.require("requestsPerSecond")) {
      rps = readRequestsPerSecond(*n, o.pathOf("requestsPerSecond"));
    }
    auto refs = o.require("clientRefs");
    if (refs && refs->IsSequence() && refs->size() == 0) {
      r_.problem(*refs, o.pathOf("clientRefs"), "clientRefs must not be empty");
    }
    if (refs) {
      r_.forEachItem(*refs, o.pathOf("clientRefs"),
                     [&](const YAML::Node& ref, const std::string& ref_path) {
                       FieldMap c(r_, ref, ref_path, "clientRef", kClientRefFields);
                       if (!c.valid()) return;
                       std::string group;
                       readString(c, "group", group);
                       std::string kind;
                       readRequiredString(c, "kind", kind);
                       if (c.get("kind") && (kind != "ServiceAccount" || !group.empty())) {
                         r_.problem(ref, ref_path,
                                    "unsupported clientRef kind '" + kind +
                                        "'; only ServiceAccount (group \"\") names a client");
                         return;
                       }
                       model::RateLimitClientRef client;
                       client.namespace_name = policy.metadata.namespace_name;
                       readString(c, "namespace", client.namespace_name);
                       readRequiredString(c, "name", client.name);
                       if (client.name.empty() || client.namespace_name.empty()) {
                         if (c.get("name")) {
                           r_.problem(ref, ref_path, "clientRef needs a name and a namespace");
                         }
                         return;
                       }
                       const std::string key = client.namespace_name + "/" + client.name;
                       auto [prev, inserted] = clients.emplace(key, YamlReader::lineOf(ref));
                       if (!inserted) {
                         r_.problem(ref, ref_path,
                                    "ServiceAccount " + key + " is already in an override (line " +
                                        std::to_string(prev->second) + ")");
                         return;
                       }
                       out.client_refs.push_back(std::move(client));
                     });
    }
    if (!rps) return;
    if (policy.total_rps && *rps > *policy.total_rps) {
      r_.problem(item, o.pathOf("requestsPerSecond"),
                 "override requestsPerSecond (" + std::to_string(*rps) +
                     ") is above total.requestsPerSecond (" + std::to_string(*policy.total_rps) +
                     ")");
    }
    out.requests_per_second = *rps;
    policy.overrides.push_back(std::move(out));
  });
}

void LocalConfigParser::checkRateLimitTargets() {
  std::set<std::string, std::less<>> known;
  for (const Service& s : services_) known.insert("Service " + s.namespace_name + "/" + s.name);
  for (const auto& r : http_routes_) known.insert("HTTPRoute " + r.metadata.key());
  for (const auto& r : grpc_routes_) known.insert("GRPCRoute " + r.metadata.key());
  for (const Reference& ref : rate_limit_targets_) {
    if (known.count(ref.key) == 0) {
      r_.warning(ref.node, ref.path,
                 "rate limit policy targets " + ref.key +
                     ", which this file does not define: the policy limits nothing");
    }
  }
}

}  // namespace nodemesh::config::local_internal
