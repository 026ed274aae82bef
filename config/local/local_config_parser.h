#pragma once

// Internal to config/local/: the parser behind parseLocalConfig(), one YAML document in, a
// LoadResult out. Its methods live in local_config_{parser,workloads,services,policies}.cc.

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/local/local_config.h"
#include "config/local/yaml_reader.h"
#include "model/snapshot.h"

namespace nodemesh::config::local_internal {

using model::Authorization;
using model::GatewayAddress;
using model::Service;
using model::Workload;

class LocalConfigParser {
 public:
  LocalConfigParser(std::string_view text, const std::string& file) : r_(file, text), text_(text) {}

  LoadResult run();

 private:
  struct Reference {
    std::string key;
    YAML::Node node;
    std::string path;
  };

  void parse();

  // ---- helpers for optional fields ----

  void readString(const FieldMap& f, std::string_view key, std::string& out);

  void readRequiredString(FieldMap& f, std::string_view key, std::string& out);

  void readStringList(const YAML::Node& node, const std::string& path,
                      std::vector<std::string>& out);

  // service port -> target port. A service may map to target port 0 ("the endpoint says").
  void readPortMap(const YAML::Node& node, const std::string& path, bool allow_zero_target,
                   model::PortMap& out);

  std::optional<GatewayAddress> readGateway(const YAML::Node& node, const std::string& path);

  std::optional<model::HealthStatus> readStatus(const YAML::Node& node, const std::string& path);

  // ---- workloads ----

  void parseWorkload(const YAML::Node& node, const std::string& path);

  // ---- services ----

  void parseService(const YAML::Node& node, const std::string& path);

  std::optional<model::LoadBalancing> readLoadBalancer(const YAML::Node& node,
                                                       const std::string& path);

  // ---- policies ----

  void parsePolicy(const YAML::Node& node, const std::string& path);

  // Istio reports the same through the policy's status ("ztunnel does not support HTTP
  // attributes"); the semantics are policy/'s (docs/policy.md).
  void warnL7(const YAML::Node& at, const std::string& path, const Authorization& p,
              const std::set<std::string>& names);

  model::Match parseMatch(const YAML::Node& node, const std::string& path);

  // ztunnel's StringMatch is an externally tagged enum: {Exact: v}, {Prefix: v}, {Suffix: v},
  // {Presence: []}; serde_yaml also reads the tag form (!Exact v).
  std::optional<model::StringMatch> readStringMatch(const YAML::Node& node,
                                                    const std::string& path);

  std::optional<model::StringMatch> readStringMatchValue(const YAML::Node& kind_node,
                                                         const std::string& kind,
                                                         const YAML::Node& value,
                                                         const std::string& path);

  // ---- cross references ----

  void checkReferences();

  YamlReader r_;
  std::string_view text_;
  std::vector<Workload> workloads_;
  std::vector<Service> services_;
  std::vector<Authorization> policies_;
  std::map<std::string, int, std::less<>> workload_lines_;
  std::map<std::string, int, std::less<>> service_lines_;
  std::map<std::string, int, std::less<>> policy_lines_;
  std::vector<Reference> policy_refs_;
  std::vector<Reference> service_refs_;
  bool policies_ok_ = true;
};

}  // namespace nodemesh::config::local_internal
