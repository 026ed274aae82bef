#pragma once

// `nodemesh-cni install` / `uninstall`: puts the plugin on a node the way istio-cni's installer
// does. The binary is copied into the CNI bin dir, and the node's primary network config (the
// first *.conf, *.conflist or *.json in the conf dir in lexical order, the one kubelet's runtime
// uses) gets {"type": "nodemesh-cni", ...} appended to its "plugins" once. A single-plugin .conf
// (or .json) becomes a .conflist of the same stem holding it (libcni's ConfListFromConf).
//
// Uninstall gives the primary file back byte for byte: before the first change, install keeps the
// file's original bytes in `<conf dir>/.nodemesh-cni.orig` and what it wrote in
// `<conf dir>/.nodemesh-cni.state` (names without a CNI extension: runtimes never load them).
// When the file still holds exactly what install wrote, uninstall restores the original bytes
// (and name); when the primary CNI rewrote it meanwhile, uninstall only removes our entry.
//
// Every write is a temporary file in the same directory and a rename: a runtime reading the
// directory sees the old or the new file, never a partial one.

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace nodemesh::cni {

inline constexpr const char* kPluginType = "nodemesh-cni";
inline constexpr const char* kBackupName = ".nodemesh-cni.orig";
inline constexpr const char* kInstallStateName = ".nodemesh-cni.state";

struct InstallOptions {
  std::string bin_dir = "/opt/cni/bin";
  std::string conf_dir = "/etc/cni/net.d";
  // The binary to copy to <bin_dir>/nodemesh-cni; empty: do not copy (tests of the config part).
  std::string binary_source;
  // Our entry in the plugin list: {"type": "nodemesh-cni"} plus these fields (agentSocket,
  // stateFile, excludeNamespaces, timeoutMs) when set.
  nlohmann::ordered_json plugin_fields = nlohmann::ordered_json::object();
};

// --- pure parts (no files) ---

// The primary config's file name among these names, or "" when none is a CNI config.
std::string pickPrimaryConfig(std::vector<std::string> names);

struct EditedConfig {
  bool changed = false;  // false: our plugin was already there (bytes untouched)
  std::string bytes;     // the conflist to write when changed
};

// Appends our plugin to a conflist, or turns a single-plugin conf into a conflist with ours last.
// Errors: not JSON, not an object, "plugins" not an array of objects.
Result<EditedConfig> insertPlugin(std::string_view config_bytes,
                                  const nlohmann::ordered_json& plugin_fields);
// Removes every entry of type nodemesh-cni from a conflist.
Result<EditedConfig> removePlugin(std::string_view config_bytes);

// --- on a node ---

// Copies the binary (when binary_source is set) and inserts the plugin. ENOENT when the conf dir
// holds no config yet.
Status install(const InstallOptions& options);
// Only the config part of install(): what the watch repeats.
Status installConfig(const InstallOptions& options);
// Restores the primary config and removes the backup and <bin_dir>/nodemesh-cni.
Status uninstall(const InstallOptions& options);

// install(), then watches the conf dir (inotify) and repeats installConfig() whenever a file
// there changes (the primary CNI rewrote its config, or a new primary appeared), until stop_fd
// (an eventfd or signalfd) is readable; then uninstall(). A conf dir with no config yet, or a
// primary config that is not valid JSON, is waited for.
Status installAndWatch(const InstallOptions& options, int stop_fd);
// installAndWatch() without the uninstall at the end: the node agent decides on stopping whether
// the plugin stays (its replacement is coming) or goes.
Status installAndKeepInstalled(const InstallOptions& options, int stop_fd);

}  // namespace nodemesh::cni
