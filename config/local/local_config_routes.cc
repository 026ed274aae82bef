// LocalConfigParser: the `httpRoutes` and `grpcRoutes` sections, Gateway API objects as
// `kubectl get -o yaml` prints them. The checks are the CRD's (apis/v1/httproute_types.go,
// grpcroute_types.go: enums, patterns, limits and CEL rules), so a file that loads here would be
// accepted by the API server, minus what nodemesh cannot honour (ExtensionRef filters, backends
// that are not Services), which is rejected rather than skipped.

#include <algorithm>
#include <utility>

#include "config/local/local_config_parser.h"
#include "model/route_validation.h"

namespace nodemesh::config::local_internal {

namespace {

constexpr std::string_view kApiVersion = "gateway.networking.k8s.io/v1";
constexpr std::string_view kObjectFields[] = {"apiVersion", "kind", "metadata", "spec", "status"};
constexpr std::string_view kHttpSpecFields[] = {"parentRefs", "hostnames", "rules"};
constexpr std::string_view kParentRefFields[] = {"group", "kind",        "namespace",
                                                 "name",  "sectionName", "port"};
constexpr std::string_view kBackendRefFields[] = {"group", "kind",   "name",   "namespace",
                                                  "port",  "weight", "filters"};

constexpr size_t kMaxListItems = 16;  // hostnames, rules, backendRefs, filters, header lists
constexpr size_t kMaxParentRefs = 32;
constexpr uint32_t kMaxWeight = 1'000'000;

std::string_view kindName(RouteKind kind) {
  return kind == RouteKind::Http ? "HTTPRoute" : "GRPCRoute";
}

}  // namespace

void LocalConfigParser::parseHttpRoute(const YAML::Node& node, const std::string& path) {
  model::HttpRoute route;
  auto spec = readRouteObject(node, path, RouteKind::Http, route.metadata);
  if (!spec) return;
  readParentRefs(*spec, route.metadata, route.parent_refs);
  readHostnames(*spec, route.hostnames);
  readHttpRules(*spec, route.metadata.namespace_name, route.rules);
  http_routes_.push_back(std::move(route));
}

void LocalConfigParser::parseGrpcRoute(const YAML::Node& node, const std::string& path) {
  model::GrpcRoute route;
  auto spec = readRouteObject(node, path, RouteKind::Grpc, route.metadata);
  if (!spec) return;
  readParentRefs(*spec, route.metadata, route.parent_refs);
  readHostnames(*spec, route.hostnames);
  readGrpcRules(*spec, route.metadata.namespace_name, route.rules);
  grpc_routes_.push_back(std::move(route));
}

std::optional<FieldMap> LocalConfigParser::readRouteObject(const YAML::Node& node,
                                                           const std::string& path, RouteKind kind,
                                                           model::RouteMetadata& metadata) {
  std::string what(kindName(kind));
  FieldMap f(r_, node, path, what, kObjectFields);
  if (!f.valid()) return std::nullopt;
  if (auto v = f.require("apiVersion")) {
    auto text = r_.readString(*v, f.pathOf("apiVersion"));
    if (text && *text != kApiVersion) {
      r_.problem(*v, f.pathOf("apiVersion"),
                 "unsupported apiVersion '" + *text + "'; expected " + std::string(kApiVersion));
    }
  }
  if (auto k = f.require("kind")) {
    auto text = r_.readString(*k, f.pathOf("kind"));
    if (text && *text != what) {
      r_.problem(*k, f.pathOf("kind"),
                 "kind '" + *text + "' in " +
                     (kind == RouteKind::Http ? "httpRoutes" : "grpcRoutes") + "; expected " +
                     what);
    }
  }
  auto meta_node = f.require("metadata");
  if (!meta_node) return std::nullopt;
  FieldMap meta(r_, *meta_node, f.pathOf("metadata"), "metadata", kObjectMetaFields);
  if (!meta.valid()) return std::nullopt;
  // Kubernetes puts an object without a namespace into "default"; so does this file.
  metadata.namespace_name = "default";
  readString(meta, "namespace", metadata.namespace_name);
  auto name = meta.require("name");
  if (name) {
    if (auto n = r_.readString(*name, meta.pathOf("name"))) metadata.name = *n;
  }
  if (name && metadata.name.empty()) {
    r_.problem(*name, meta.pathOf("name"), "a route needs a non-empty name");
  } else if (name && !metadata.name.empty()) {
    std::string key = what + " " + metadata.key();
    auto [prev, inserted] = route_lines_.emplace(key, YamlReader::lineOf(*name));
    if (!inserted) {
      r_.problem(*name, meta.pathOf("name"),
                 "duplicate " + what + " '" + metadata.key() + "' (first defined at line " +
                     std::to_string(prev->second) + ")");
    }
  }
  if (metadata.namespace_name.empty()) {
    r_.problem(meta.node(), meta.path(), "metadata.namespace must not be empty");
  }
  if (auto ts = meta.get("creationTimestamp"); ts && !ts->IsNull()) {
    if (auto text = r_.readString(*ts, meta.pathOf("creationTimestamp"))) {
      auto parsed = model::parseTimestamp(*text);
      if (parsed) {
        metadata.creation_timestamp = *parsed;
      } else {
        r_.problem(*ts, meta.pathOf("creationTimestamp"), parsed.error().message);
      }
    }
  }
  auto spec_node = f.require("spec");
  if (!spec_node) return std::nullopt;
  // Both kinds have the same top-level spec fields.
  FieldMap spec(r_, *spec_node, f.pathOf("spec"), what + " spec", kHttpSpecFields);
  if (!spec.valid()) return std::nullopt;
  return spec;
}

void LocalConfigParser::readParentRefs(const FieldMap& spec, const model::RouteMetadata& metadata,
                                       std::vector<model::ParentRef>& out) {
  auto node = spec.get("parentRefs");
  if (!node) return;
  std::string path = spec.pathOf("parentRefs");
  r_.forEachItem(*node, path, [&](const YAML::Node& item, const std::string& item_path) {
    if (out.size() == kMaxParentRefs) {
      r_.problem(item, item_path, "more than 32 parentRefs");
      return;
    }
    FieldMap f(r_, item, item_path, "parentRef", kParentRefFields);
    if (!f.valid()) return;
    model::ParentRef ref;
    readString(f, "group", ref.group);
    readString(f, "kind", ref.kind);
    readRequiredString(f, "name", ref.name);
    if (auto ns = f.get("namespace")) {
      if (auto v = r_.readString(*ns, f.pathOf("namespace"))) ref.namespace_name = *v;
    }
    if (auto port = f.get("port")) ref.port = r_.readPort(*port, f.pathOf("port"));
    if (auto section = f.get("sectionName")) {
      if (auto v = r_.readString(*section, f.pathOf("sectionName"))) {
        if (auto ok = model::checkSectionName(*v); !ok) {
          r_.problem(*section, f.pathOf("sectionName"),
                     "invalid sectionName: " + ok.error().message);
        }
        ref.section_name = *v;
      }
    }
    bool gateway = ref.group == "gateway.networking.k8s.io" && ref.kind == "Gateway";
    if (gateway) {
      // Accepted so that one object can serve an ingress Gateway and the mesh; the waypoint
      // only routes mesh traffic.
      r_.warning(item, item_path,
                 "parentRef to Gateway '" + ref.name +
                     "' is ignored: the waypoint applies routes whose parentRef is a Service "
                     "(group: \"\", kind: Service)");
    } else if (!ref.isService()) {
      r_.problem(item, item_path,
                 "unsupported parentRef group '" + ref.group + "' kind '" + ref.kind +
                     "'; a mesh route attaches to a Service (group: \"\", kind: Service)");
    } else if (!ref.name.empty()) {
      noteServiceRef(ref.namespace_name.value_or(metadata.namespace_name) + "/" + ref.name, item,
                     item_path, "parentRef");
    }
    out.push_back(std::move(ref));
  });
}

void LocalConfigParser::readHostnames(const FieldMap& spec, std::vector<std::string>& out) {
  auto node = spec.get("hostnames");
  if (!node) return;
  r_.forEachItem(*node, spec.pathOf("hostnames"),
                 [&](const YAML::Node& item, const std::string& item_path) {
                   auto text = r_.readString(item, item_path);
                   if (!text) return;
                   if (out.size() == kMaxListItems) {
                     r_.problem(item, item_path, "more than 16 hostnames");
                   } else if (auto ok = model::checkHostname(*text, true); !ok) {
                     r_.problem(item, item_path, "invalid hostname: " + ok.error().message);
                   } else {
                     out.push_back(*text);
                   }
                 });
}

std::optional<model::BackendObjectRef> LocalConfigParser::readBackendObjectRef(
    FieldMap& f, const std::string& route_namespace) {
  model::BackendObjectRef ref;
  readString(f, "group", ref.group);
  readString(f, "kind", ref.kind);
  readRequiredString(f, "name", ref.name);
  if (auto ns = f.get("namespace")) {
    if (auto v = r_.readString(*ns, f.pathOf("namespace"))) ref.namespace_name = *v;
  }
  if (auto port = f.get("port")) ref.port = r_.readPort(*port, f.pathOf("port"));
  if (!ref.group.empty() || ref.kind != "Service") {
    r_.problem(f.node(), f.path(),
               "unsupported backend group '" + ref.group + "' kind '" + ref.kind +
                   "'; nodemesh routes to Services (group: \"\", kind: Service)");
    return std::nullopt;
  }
  if (!f.get("port")) {
    r_.problem(f.node(), f.path(), "a backendRef to a Service needs a port");
    return std::nullopt;
  }
  if (ref.name.empty() || !ref.port) return std::nullopt;
  noteServiceRef(ref.namespace_name.value_or(route_namespace) + "/" + ref.name, f.node(), f.path(),
                 "backendRef");
  return ref;
}

void LocalConfigParser::readBackendRefs(const YAML::Node& node, const std::string& path,
                                        RouteKind kind, const std::string& route_namespace,
                                        std::vector<model::RouteBackendRef>& out) {
  size_t count = 0;
  r_.forEachItem(node, path, [&](const YAML::Node& item, const std::string& item_path) {
    if (++count > kMaxListItems) {
      r_.problem(item, item_path, "more than 16 backendRefs");
      return;
    }
    FieldMap f(r_, item, item_path, "backendRef", kBackendRefFields);
    if (!f.valid()) return;
    model::RouteBackendRef backend;
    auto ref = readBackendObjectRef(f, route_namespace);
    if (auto w = f.get("weight")) {
      if (auto v = readBounded(*w, f.pathOf("weight"), 0, kMaxWeight)) backend.weight = *v;
    }
    if (auto filters = f.get("filters")) {
      readFilters(*filters, f.pathOf("filters"), kind, route_namespace, backend.filters);
    }
    if (!ref) return;
    backend.ref = std::move(*ref);
    out.push_back(std::move(backend));
  });
}

std::optional<uint32_t> LocalConfigParser::readBounded(const YAML::Node& node,
                                                       const std::string& path, uint32_t min,
                                                       uint32_t max) {
  auto v = r_.readUint32(node, path);
  if (!v) return std::nullopt;
  if (*v < min || *v > max) {
    r_.problem(node, path,
               std::to_string(*v) + " out of range (" + std::to_string(min) + "-" +
                   std::to_string(max) + ")");
    return std::nullopt;
  }
  return v;
}

void LocalConfigParser::noteServiceRef(const std::string& key, const YAML::Node& node,
                                       const std::string& path, std::string_view what) {
  route_service_refs_.push_back(Reference{key, node, path + " (" + std::string(what) + ")"});
}

}  // namespace nodemesh::config::local_internal
