#pragma once

// The few fields of Kubernetes objects that nodemesh reads, parsed from the API server's JSON
// (core/v1 Pod and Namespace). Everything else in an object is ignored, so newer API servers
// with more fields parse the same. A field that is present with the wrong type, or a pod
// address that is not an IP, makes the whole object malformed: the caller logs and skips it
// rather than acting on half of it.

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ip_address.h"
#include "common/result.h"

namespace nodemesh::k8s {

struct ObjectMeta {
  std::string name;
  std::string namespace_name;  // empty for cluster-scoped objects (Namespaces)
  std::string uid;
  std::string resource_version;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
};

struct Pod {
  ObjectMeta metadata;
  // spec
  std::string node_name;
  bool host_network = false;
  std::string service_account_name;  // "" when unset (the API server defaults it to "default")
  // status
  std::string phase;               // Pending, Running, Succeeded, Failed, Unknown; "" before set
  std::vector<IpAddress> pod_ips;  // status.podIPs, or status.podIP when podIPs is absent
};

struct Namespace {
  ObjectMeta metadata;
};

// metadata.name and metadata.resourceVersion are required (every object the API server returns
// has both); the rest may be absent.
Result<ObjectMeta> parseObjectMeta(const nlohmann::json& object);
Result<Pod> parsePod(const nlohmann::json& object);
Result<Namespace> parseNamespace(const nlohmann::json& object);

// "namespace/name", or "name" for cluster-scoped objects: the informer's key (client-go's
// MetaNamespaceKeyFunc).
std::string objectKey(const ObjectMeta& meta);

}  // namespace nodemesh::k8s
