#include "k8s/objects.h"

#include <fmt/format.h>

namespace nodemesh::k8s {
namespace {

using nlohmann::json;

// The string at `key` of `parent`, "" when absent or null; an error when it has another type.
Result<std::string> optionalString(const json& parent, const char* key, std::string_view where) {
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) return std::string();
  if (!it->is_string()) {
    return Error::invalid(
        fmt::format("{}.{}: expected a string, got {}", where, key, it->type_name()));
  }
  return it->get<std::string>();
}

// The object at `key`, or nullptr when absent or null; an error when it is not an object.
Result<const json*> optionalObject(const json& parent, const char* key, std::string_view where) {
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) return static_cast<const json*>(nullptr);
  if (!it->is_object()) {
    return Error::invalid(
        fmt::format("{}.{}: expected an object, got {}", where, key, it->type_name()));
  }
  return &*it;
}

Result<std::map<std::string, std::string>> stringMap(const json& parent, const char* key,
                                                     std::string_view where) {
  auto object = optionalObject(parent, key, where);
  if (!object) return object.error();
  std::map<std::string, std::string> out;
  if (*object == nullptr) return out;
  for (const auto& [k, v] : (*object)->items()) {
    if (!v.is_string()) {
      return Error::invalid(
          fmt::format("{}.{}[{}]: expected a string, got {}", where, key, k, v.type_name()));
    }
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

Result<IpAddress> podIp(const json& value, std::string_view where) {
  if (!value.is_string()) {
    return Error::invalid(fmt::format("{}: expected a string, got {}", where, value.type_name()));
  }
  auto ip = IpAddress::parse(value.get<std::string>());
  if (!ip) {
    return Error::invalid(
        fmt::format("{}: {:?} is not an IP address", where, value.get<std::string>()));
  }
  return ip;
}

}  // namespace

Result<ObjectMeta> parseObjectMeta(const json& object) {
  if (!object.is_object()) {
    return Error::invalid(
        fmt::format("object: expected a JSON object, got {}", object.type_name()));
  }
  auto metadata = optionalObject(object, "metadata", "object");
  if (!metadata) return metadata.error();
  if (*metadata == nullptr) return Error::invalid("object: no metadata");
  const json& m = **metadata;
  ObjectMeta meta;
  struct Field {
    const char* key;
    std::string* out;
  };
  for (const Field& f :
       {Field{"name", &meta.name}, Field{"namespace", &meta.namespace_name},
        Field{"uid", &meta.uid}, Field{"resourceVersion", &meta.resource_version}}) {
    auto value = optionalString(m, f.key, "metadata");
    if (!value) return value.error();
    *f.out = std::move(*value);
  }
  if (meta.name.empty()) return Error::invalid("metadata.name: missing");
  if (meta.resource_version.empty()) {
    return Error::invalid(fmt::format("{}: metadata.resourceVersion missing", objectKey(meta)));
  }
  auto labels = stringMap(m, "labels", "metadata");
  if (!labels) return Error::invalid(objectKey(meta) + ": " + labels.error().message);
  meta.labels = std::move(*labels);
  auto annotations = stringMap(m, "annotations", "metadata");
  if (!annotations) return Error::invalid(objectKey(meta) + ": " + annotations.error().message);
  meta.annotations = std::move(*annotations);
  return meta;
}

Result<Pod> parsePod(const json& object) {
  auto meta = parseObjectMeta(object);
  if (!meta) return meta.error();
  Pod pod;
  pod.metadata = std::move(*meta);
  auto fail = [&pod](const Error& e) {
    return Error::invalid(fmt::format("pod {}: {}", objectKey(pod.metadata), e.message));
  };

  auto spec = optionalObject(object, "spec", "pod");
  if (!spec) return fail(spec.error());
  if (*spec != nullptr) {
    const json& s = **spec;
    auto node = optionalString(s, "nodeName", "spec");
    if (!node) return fail(node.error());
    pod.node_name = std::move(*node);
    auto sa = optionalString(s, "serviceAccountName", "spec");
    if (!sa) return fail(sa.error());
    pod.service_account_name = std::move(*sa);
    auto host = s.find("hostNetwork");
    if (host != s.end() && !host->is_null()) {
      if (!host->is_boolean()) {
        return fail(Error::invalid(
            fmt::format("spec.hostNetwork: expected a boolean, got {}", host->type_name())));
      }
      pod.host_network = host->get<bool>();
    }
  }

  auto status = optionalObject(object, "status", "pod");
  if (!status) return fail(status.error());
  if (*status != nullptr) {
    const json& s = **status;
    auto phase = optionalString(s, "phase", "status");
    if (!phase) return fail(phase.error());
    pod.phase = std::move(*phase);
    // podIPs holds podIP first when both are set (the API server validates that), so podIP
    // is only read when podIPs is absent (API servers before dual stack).
    auto ips = s.find("podIPs");
    if (ips != s.end() && !ips->is_null()) {
      if (!ips->is_array()) {
        return fail(Error::invalid(
            fmt::format("status.podIPs: expected an array, got {}", ips->type_name())));
      }
      for (size_t i = 0; i < ips->size(); ++i) {
        const json& entry = (*ips)[i];
        std::string where = fmt::format("status.podIPs[{}].ip", i);
        if (!entry.is_object() || !entry.contains("ip")) {
          return fail(Error::invalid(where + ": missing"));
        }
        auto ip = podIp(entry["ip"], where);
        if (!ip) return fail(ip.error());
        pod.pod_ips.push_back(*ip);
      }
    } else {
      auto ip_text = optionalString(s, "podIP", "status");
      if (!ip_text) return fail(ip_text.error());
      if (!ip_text->empty()) {
        auto ip = podIp(json(*ip_text), "status.podIP");
        if (!ip) return fail(ip.error());
        pod.pod_ips.push_back(*ip);
      }
    }
  }
  return pod;
}

Result<Namespace> parseNamespace(const json& object) {
  auto meta = parseObjectMeta(object);
  if (!meta) return meta.error();
  if (!meta->namespace_name.empty()) {
    return Error::invalid(fmt::format("namespace {}: has metadata.namespace {:?}: not a Namespace",
                                      meta->name, meta->namespace_name));
  }
  return Namespace{std::move(*meta)};
}

std::string objectKey(const ObjectMeta& meta) {
  if (meta.namespace_name.empty()) return meta.name;
  return meta.namespace_name + "/" + meta.name;
}

}  // namespace nodemesh::k8s
