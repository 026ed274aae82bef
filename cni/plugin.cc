// The CNI plugin's logic (plugin.h). Rules (CNI spec 1.0.0, SPEC.md):
//  - stdin is the network config: cniVersion, name, type, our fields, and prevResult (the result of
//    the plugins before us in the chain).
//  - ADD prints prevResult unchanged but for cniVersion, which becomes the config's.
//  - DEL prints nothing and succeeds whenever it can (it is retried until it does).
//  - CHECK prints nothing; VERSION prints the supported versions.
//  - Errors: a JSON error object on stdout and a non-zero exit.

#include "cni/plugin.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "cni/state_file.h"

namespace nodemesh::cni {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

constexpr const char* kLatestVersion = "1.0.0";
constexpr int kMaxTimeoutMs = 60000;

std::string getenvOr(const char* name) {
  const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): single-threaded process
  return v == nullptr ? std::string() : std::string(v);
}

bool supported(const std::string& version) {
  const auto& all = supportedCniVersions();
  return std::find(all.begin(), all.end(), version) != all.end();
}

Error cniError(int code, std::string message) {
  return Error{code, std::move(message)};
}

// "Absolute path" checks keep a relative path from resolving against the runtime's cwd.
Status readPath(const ordered_json& j, const char* key, std::string* out) {
  const auto it = j.find(key);
  if (it == j.end()) return okStatus();
  if (!it->is_string() || it->get<std::string>().empty() || it->get<std::string>()[0] != '/') {
    return cniError(kErrInvalidNetworkConfig,
                    fmt::format("\"{}\" must be an absolute path (a string starting with /)", key));
  }
  *out = it->get<std::string>();
  return okStatus();
}

Status readPrevResult(const ordered_json& j, PluginConfig* config) {
  const auto it = j.find("prevResult");
  if (it == j.end() || it->is_null()) return okStatus();
  if (!it->is_object()) {
    return cniError(kErrInvalidNetworkConfig, "\"prevResult\" is not an object");
  }
  config->has_prev_result = true;
  config->prev_result = *it;
  const auto ips = it->find("ips");
  if (ips == it->end() || ips->is_null()) return okStatus();
  if (!ips->is_array()) {
    return cniError(kErrInvalidNetworkConfig, "\"prevResult.ips\" is not an array");
  }
  for (const auto& ip : *ips) {
    const auto address = ip.is_object() ? ip.find("address") : ip.end();
    if (!ip.is_object() || address == ip.end() || !address->is_string()) {
      return cniError(kErrInvalidNetworkConfig,
                      "\"prevResult.ips\" holds an entry without an \"address\" string");
    }
    // The agent refuses a request with a malformed address (decodeRequest): say so here, as a
    // config error, rather than pass it on.
    if (!isIpCidr(address->get_ref<const std::string&>())) {
      return cniError(kErrInvalidNetworkConfig,
                      fmt::format("\"prevResult.ips\" holds {}, not an address/prefix",
                                  address->dump(-1, ' ', false, json::error_handler_t::replace)));
    }
    config->ips.push_back(address->get<std::string>());
  }
  return okStatus();
}

// The version of a config that may be broken, for the error object: the spec wants the error in
// the version the runtime asked for when it can be read.
std::string versionForErrors(std::string_view stdin_bytes) {
  const json j = json::parse(stdin_bytes, nullptr, false);
  if (j.is_object()) {
    const auto it = j.find("cniVersion");
    if (it != j.end() && it->is_string() && supported(it->get<std::string>())) {
      return it->get<std::string>();
    }
  }
  return kLatestVersion;
}

PluginOutcome fail(std::string_view version, const Error& error, std::string log = {}) {
  PluginOutcome outcome;
  outcome.exit_code = 1;
  outcome.out = cniErrorJson(version, error.code, error.message);
  outcome.log = std::move(log);
  outcome.log += fmt::format("nodemesh-cni: error {}: {}\n", error.code, error.message);
  return outcome;
}

bool excluded(const PluginConfig& config, const std::string& pod_namespace) {
  return !pod_namespace.empty() &&
         std::find(config.exclude_namespaces.begin(), config.exclude_namespaces.end(),
                   pod_namespace) != config.exclude_namespaces.end();
}

std::string podName(const CniRequest& r) {
  if (r.pod_name.empty()) return fmt::format("container {}", r.container_id);
  return fmt::format("pod {}/{}", r.pod_namespace, r.pod_name);
}

// The agent did not answer: may this pod start anyway (ADD)?
PluginOutcome agentDownOnAdd(const PluginConfig& config, const CniRequest& request,
                             const Error& why, std::string result) {
  std::string log = fmt::format("nodemesh-cni: agent at {} unavailable for {}: {}\n",
                                config.agent_socket, podName(request), why.message);
  auto state = readCniState(config.state_file);
  if (!state && state.error().code == ENOENT) {
    // The agent never wrote its state here: nothing on this node is known to need the mesh.
    log +=
        fmt::format("nodemesh-cni: no state file {}: letting the pod start\n", config.state_file);
    return PluginOutcome{0, std::move(result), std::move(log)};
  }
  if (!state) {
    // Cannot tell whether the pod must be in the mesh: fail safe, the runtime retries.
    return fail(config.cni_version,
                cniError(kErrTryAgainLater,
                         fmt::format("the nodemesh agent is unavailable ({}) and its state "
                                     "file cannot be read: {}",
                                     why.message, state.error().message)),
                std::move(log));
  }
  if (state->requiresMesh(request.pod_namespace, request.pod_name)) {
    return fail(
        config.cni_version,
        cniError(kErrTryAgainLater, fmt::format("{} must be in the mesh but the nodemesh agent is "
                                                "unavailable ({}); try again later",
                                                podName(request), why.message)),
        std::move(log));
  }
  log += "nodemesh-cni: the pod is not in an ambient namespace: letting it start\n";
  return PluginOutcome{0, std::move(result), std::move(log)};
}

}  // namespace

PluginEnv pluginEnvFromProcess() {
  return PluginEnv{getenvOr("CNI_COMMAND"), getenvOr("CNI_CONTAINERID"), getenvOr("CNI_NETNS"),
                   getenvOr("CNI_IFNAME"),  getenvOr("CNI_ARGS"),        getenvOr("CNI_PATH")};
}

std::string cniErrorJson(std::string_view cni_version, int code, std::string_view msg,
                         std::string_view details) {
  ordered_json j = {
      {"cniVersion", std::string(cni_version)}, {"code", code}, {"msg", std::string(msg)}};
  if (!details.empty()) j["details"] = std::string(details);
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<PluginConfig> parsePluginConfig(std::string_view stdin_bytes) {
  ordered_json j = ordered_json::parse(stdin_bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return cniError(kErrDecoding, "the network config on stdin is not JSON");
  if (!j.is_object()) {
    return cniError(kErrDecoding, "the network config on stdin is not a JSON object");
  }
  PluginConfig config;
  const auto version = j.find("cniVersion");
  if (version == j.end() || !version->is_string()) {
    return cniError(kErrInvalidNetworkConfig, "\"cniVersion\" is missing or not a string");
  }
  config.cni_version = version->get<std::string>();
  if (!supported(config.cni_version)) {
    return cniError(kErrIncompatibleVersion,
                    fmt::format("CNI version \"{}\" is not supported (supported: {})",
                                config.cni_version, fmt::join(supportedCniVersions(), ", ")));
  }
  const auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get<std::string>().empty()) {
    return cniError(kErrInvalidNetworkConfig, "\"name\" is missing or not a non-empty string");
  }
  config.name = name->get<std::string>();
  if (const auto type = j.find("type"); type != j.end() && !type->is_string()) {
    return cniError(kErrInvalidNetworkConfig, "\"type\" is not a string");
  }
  if (auto s = readPath(j, "agentSocket", &config.agent_socket); !s) return s.error();
  if (auto s = readPath(j, "stateFile", &config.state_file); !s) return s.error();
  if (const auto ex = j.find("excludeNamespaces"); ex != j.end()) {
    if (!ex->is_array()) {
      return cniError(kErrInvalidNetworkConfig, "\"excludeNamespaces\" is not an array");
    }
    config.exclude_namespaces.clear();
    for (const auto& ns : *ex) {
      if (!ns.is_string() || ns.get<std::string>().empty()) {
        return cniError(kErrInvalidNetworkConfig,
                        "\"excludeNamespaces\" holds a value that is not a non-empty string");
      }
      config.exclude_namespaces.push_back(ns.get<std::string>());
    }
  }
  if (const auto t = j.find("timeoutMs"); t != j.end()) {
    if (!t->is_number_integer() || t->get<int64_t>() < 1 || t->get<int64_t>() > kMaxTimeoutMs) {
      return cniError(kErrInvalidNetworkConfig,
                      fmt::format("\"timeoutMs\" must be an integer from 1 to {}", kMaxTimeoutMs));
    }
    config.timeout_ms = static_cast<int>(t->get<int64_t>());
  }
  if (auto s = readPrevResult(j, &config); !s) return s.error();
  return config;
}

Result<std::map<std::string, std::string>> parseCniArgs(std::string_view args) {
  // The CNI spec makes CNI_ARGS alphanumeric pairs, and the values we read (Kubernetes names and
  // UIDs) are ASCII. A control or non-ASCII byte is refused rather than passed on: invalid UTF-8
  // would reach the agent as U+FFFD (the request is JSON), naming another pod than the runtime's.
  for (size_t i = 0; i < args.size(); ++i) {
    const auto c = static_cast<unsigned char>(args[i]);
    if (c < 0x20 || c > 0x7e) {
      return cniError(kErrInvalidEnvironment,
                      fmt::format("CNI_ARGS: byte 0x{:02x} at offset {} is not printable ASCII",
                                  static_cast<unsigned>(c), i));
    }
  }
  std::map<std::string, std::string> out;
  while (!args.empty()) {
    const size_t semi = args.find(';');
    const std::string_view pair = args.substr(0, semi);
    args = semi == std::string_view::npos ? std::string_view() : args.substr(semi + 1);
    if (pair.empty()) continue;  // "A=1;;B=2" and a trailing ';'
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return cniError(kErrInvalidEnvironment,
                      fmt::format("CNI_ARGS: \"{}\" is not KEY=VALUE", pair));
    }
    out[std::string(pair.substr(0, eq))] = std::string(pair.substr(eq + 1));
  }
  return out;
}

PluginOutcome runPlugin(const PluginEnv& env, std::string_view stdin_bytes,
                        const AgentCall& call_agent) {
  if (env.command == "VERSION") {
    std::string version = kLatestVersion;
    if (!stdin_bytes.empty()) {
      const json j = json::parse(stdin_bytes, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        return fail(kLatestVersion, cniError(kErrDecoding, "the config on stdin is not JSON"));
      }
      if (const auto v = j.find("cniVersion"); v != j.end() && v->is_string()) {
        version = v->get<std::string>();
      }
    }
    ordered_json out = {{"cniVersion", version}, {"supportedVersions", supportedCniVersions()}};
    return PluginOutcome{0, out.dump() + "\n", {}};
  }

  CniRequest request;
  if (env.command == "ADD") {
    request.command = CniCommand::kAdd;
  } else if (env.command == "DEL") {
    request.command = CniCommand::kDel;
  } else if (env.command == "CHECK") {
    request.command = CniCommand::kCheck;
  } else {
    return fail(versionForErrors(stdin_bytes),
                cniError(kErrInvalidEnvironment,
                         env.command.empty() ? std::string("CNI_COMMAND is not set")
                                             : fmt::format("CNI_COMMAND \"{}\" is not one of "
                                                           "ADD, DEL, CHECK, VERSION",
                                                           env.command)));
  }

  auto parsed = parsePluginConfig(stdin_bytes);
  if (!parsed) return fail(versionForErrors(stdin_bytes), parsed.error());
  const PluginConfig& config = *parsed;

  const bool del = request.command == CniCommand::kDel;
  for (const auto& [value, var] :
       {std::pair{&env.container_id, "CNI_CONTAINERID"}, std::pair{&env.if_name, "CNI_IFNAME"},
        std::pair{&env.netns, "CNI_NETNS"}}) {
    if (value->empty() && !(del && std::string_view(var) == "CNI_NETNS")) {
      return fail(config.cni_version,
                  cniError(kErrInvalidEnvironment, fmt::format("{} is not set", var)));
    }
  }
  auto args = parseCniArgs(env.args);
  if (!args) return fail(config.cni_version, args.error());
  auto arg = [&args](const char* key) {
    const auto it = args->find(key);
    return it == args->end() ? std::string() : it->second;
  };
  request.container_id = env.container_id;
  request.netns = env.netns;
  request.if_name = env.if_name;
  request.pod_namespace = arg("K8S_POD_NAMESPACE");
  request.pod_name = arg("K8S_POD_NAME");
  request.pod_uid = arg("K8S_POD_UID");
  request.ips = config.ips;

  if (request.command == CniCommand::kCheck &&
      (config.cni_version == "0.3.0" || config.cni_version == "0.3.1")) {
    return fail(config.cni_version, cniError(kErrIncompatibleVersion,
                                             fmt::format("CHECK is not defined for CNI version {}",
                                                         config.cni_version)));
  }
  if (request.command != CniCommand::kDel && !config.has_prev_result) {
    return fail(config.cni_version,
                cniError(kErrInvalidNetworkConfig,
                         "no \"prevResult\": nodemesh-cni is a chained plugin and must come after "
                         "the plugin that creates the pod's interface"));
  }

  // ADD's output: the chain's result, in the config's version.
  std::string result;
  if (request.command == CniCommand::kAdd) {
    ordered_json out = config.prev_result;
    out["cniVersion"] = config.cni_version;
    result = out.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  }

  if (excluded(config, request.pod_namespace)) return PluginOutcome{0, std::move(result), {}};

  auto reply = call_agent(config, request);
  if (request.command == CniCommand::kDel) {
    PluginOutcome outcome;
    if (!reply) {
      outcome.log = fmt::format(
          "nodemesh-cni: DEL of {}: agent at {} unavailable ({}); the agent "
          "drops the pod when its namespace goes away\n",
          podName(request), config.agent_socket, reply.error().message);
    } else if (!reply->ok) {
      outcome.log = fmt::format("nodemesh-cni: DEL of {}: the agent answered: {}\n",
                                podName(request), reply->error);
    }
    return outcome;  // DEL never fails because of the agent
  }
  if (!reply) {
    if (request.command == CniCommand::kCheck) {
      return PluginOutcome{0,
                           {},
                           fmt::format("nodemesh-cni: CHECK of {}: agent unavailable: {}\n",
                                       podName(request), reply.error().message)};
    }
    return agentDownOnAdd(config, request, reply.error(), std::move(result));
  }
  if (!reply->ok) {
    return fail(config.cni_version,
                cniError(kErrAgentRefused, fmt::format("the nodemesh agent refused {}: {}",
                                                       podName(request), reply->error)));
  }
  return PluginOutcome{0, std::move(result), {}};
}

}  // namespace nodemesh::cni
