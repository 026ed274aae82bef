#pragma once

// nodemesh-cni as a CNI plugin (CNI spec 1.0.0, also 0.3.0, 0.3.1 and 0.4.0 configs): a chained
// plugin that tells the node agent about each pod and passes the chain's result through.
//
// runPlugin() is the whole plugin without the process around it: the environment, stdin and the
// way to reach the agent come in, the exit code and the bytes for stdout and stderr go out, so
// that the tests drive every path without a runtime. main() only fills PluginEnv from getenv().
//
// What happens when the agent cannot be reached (docs/cni.md): ADD of a pod in an excluded
// namespace passes; ADD of a pod the agent's state file says must be in the mesh fails with code
// 11 ("try again later": kubelet retries the sandbox, so the pod never starts outside the mesh);
// any other ADD passes (the agent enrolls running pods when it is back). DEL always succeeds.
// CHECK passes.

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cni/protocol.h"
#include "common/result.h"

namespace nodemesh::cni {

// The CNI versions whose configs and results this plugin reads and writes.
inline const std::vector<std::string>& supportedCniVersions() {
  static const std::vector<std::string> kVersions = {"0.3.0", "0.3.1", "0.4.0", "1.0.0"};
  return kVersions;
}

// CNI spec error codes (SPEC.md "Error"); 100 and above are this plugin's.
enum CniErrorCode : int {
  kErrIncompatibleVersion = 1,
  kErrInvalidEnvironment = 4,
  kErrDecoding = 6,
  kErrInvalidNetworkConfig = 7,
  kErrTryAgainLater = 11,
  kErrAgentRefused = 100,  // the agent answered and refused the pod (its reason in msg)
  kErrInternal = 101,      // this plugin failed (writing its output)
};

inline constexpr const char* kDefaultAgentSocket = "/var/run/nodemesh/cni.sock";
inline constexpr const char* kDefaultStateFile = "/var/run/nodemesh/cni-state.json";
inline constexpr int kDefaultTimeoutMs = 5000;

// The CNI_* environment variables.
struct PluginEnv {
  std::string command;       // CNI_COMMAND
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS
  std::string if_name;       // CNI_IFNAME
  std::string args;          // CNI_ARGS
  std::string path;          // CNI_PATH
};

PluginEnv pluginEnvFromProcess();

// The network configuration on stdin, our fields with their defaults applied.
struct PluginConfig {
  std::string cni_version;
  std::string name;
  std::string agent_socket = kDefaultAgentSocket;
  std::vector<std::string> exclude_namespaces = {"kube-system"};
  std::string state_file = kDefaultStateFile;
  int timeout_ms = kDefaultTimeoutMs;
  bool has_prev_result = false;
  // The previous plugin's result, keys in their original order.
  nlohmann::ordered_json prev_result;
  std::vector<std::string> ips;  // prevResult.ips[].address
};

// Error::code is a CniErrorCode (not an errno) in the results of these two.
Result<PluginConfig> parsePluginConfig(std::string_view stdin_bytes);
// CNI_ARGS: "K1=V1;K2=V2" (an empty string is no arguments).
Result<std::map<std::string, std::string>> parseCniArgs(std::string_view args);

// One request to the agent and its reply. An error means the agent could not be reached or did
// not answer properly in time; the plugin then follows the rules above.
using AgentCall =
    std::function<Result<CniReply>(const PluginConfig& config, const CniRequest& request)>;

struct PluginOutcome {
  int exit_code = 0;
  std::string out;  // stdout: a result, a version result or an error object
  std::string log;  // stderr: one line per notable event, for the runtime's log
};

PluginOutcome runPlugin(const PluginEnv& env, std::string_view stdin_bytes,
                        const AgentCall& call_agent);

// The CNI error object: {"cniVersion":..., "code":..., "msg":..., "details":...}.
std::string cniErrorJson(std::string_view cni_version, int code, std::string_view msg,
                         std::string_view details = {});

}  // namespace nodemesh::cni
