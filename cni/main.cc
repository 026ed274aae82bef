// nodemesh-cni: the CNI plugin when a runtime runs it (CNI_COMMAND in the environment, the
// config on stdin), and its installer when run as `nodemesh-cni install|uninstall ...`.

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <iterator>
#include <string>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "cni/agent_client.h"
#include "cni/installer.h"
#include "cni/plugin.h"
#include "common/fd.h"

namespace {

using namespace nodemesh::cni;  // NOLINT(google-build-using-namespace): main only

int runAsPlugin() {
  const std::string input((std::istreambuf_iterator<char>(std::cin)),
                          std::istreambuf_iterator<char>());
  const PluginOutcome outcome =
      runPlugin(pluginEnvFromProcess(), input,
                [](const PluginConfig& config, const nodemesh::cni::CniRequest& request) {
                  return callAgent(config.agent_socket, config.timeout_ms, request);
                });
  std::fputs(outcome.log.c_str(), stderr);
  if (std::fwrite(outcome.out.data(), 1, outcome.out.size(), stdout) != outcome.out.size() ||
      std::fflush(stdout) != 0) {
    return 1;
  }
  return outcome.exit_code;
}

int runInstaller(int argc, char** argv) {
  CLI::App app{"nodemesh-cni: the nodemesh CNI plugin and its installer"};
  app.require_subcommand(1);
  InstallOptions options;
  bool watch = false;
  std::string agent_socket;
  std::string state_file;
  std::vector<std::string> exclude_namespaces;
  int timeout_ms = 0;
  auto add_common = [&](CLI::App* cmd) {
    cmd->add_option("--bin-dir", options.bin_dir, "CNI plugin binaries")->capture_default_str();
    cmd->add_option("--conf-dir", options.conf_dir, "CNI network configs")->capture_default_str();
  };
  CLI::App* install_cmd = app.add_subcommand("install",
                                             "copy the binary and chain the plugin "
                                             "into the node's primary CNI config");
  add_common(install_cmd);
  install_cmd->add_flag("--watch", watch,
                        "keep the plugin in the primary config until SIGTERM, then uninstall");
  install_cmd->add_option("--agent-socket", agent_socket, "the plugin's agentSocket");
  install_cmd->add_option("--state-file", state_file, "the plugin's stateFile");
  install_cmd
      ->add_option("--exclude-namespaces", exclude_namespaces, "the plugin's excludeNamespaces")
      ->delimiter(',');
  install_cmd->add_option("--timeout-ms", timeout_ms, "the plugin's timeoutMs")
      ->check(CLI::Range(1, 60000));
  CLI::App* uninstall_cmd =
      app.add_subcommand("uninstall", "restore the primary CNI config and remove the binary");
  add_common(uninstall_cmd);
  CLI11_PARSE(app, argc, argv);

  spdlog::set_default_logger(spdlog::stderr_logger_st("nodemesh-cni"));
  options.binary_source = "/proc/self/exe";
  if (!agent_socket.empty()) options.plugin_fields["agentSocket"] = agent_socket;
  if (!state_file.empty()) options.plugin_fields["stateFile"] = state_file;
  if (!exclude_namespaces.empty()) options.plugin_fields["excludeNamespaces"] = exclude_namespaces;
  if (timeout_ms > 0) options.plugin_fields["timeoutMs"] = timeout_ms;

  nodemesh::Status status;
  if (uninstall_cmd->parsed()) {
    status = uninstall(options);
  } else if (!watch) {
    status = install(options);
  } else {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
      spdlog::error("sigprocmask failed");
      return 1;
    }
    nodemesh::UniqueFd stop(::signalfd(-1, &mask, SFD_CLOEXEC));
    if (!stop.valid()) {
      spdlog::error("signalfd failed");
      return 1;
    }
    status = installAndWatch(options, stop.get());
  }
  if (!status) {
    spdlog::error("{}", status.error().message);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Nothing in the plugin is meant to throw; if something does (out of memory), the runtime still
  // gets an error object instead of a crash.
  try {
    if (argc > 1) return runInstaller(argc, argv);
    return runAsPlugin();
  } catch (const std::exception& e) {
    if (argc <= 1) {
      const std::string out = cniErrorJson("1.0.0", kErrInternal, e.what());
      std::fwrite(out.data(), 1, out.size(), stdout);
    }
    std::fprintf(stderr, "nodemesh-cni: %s\n", e.what());
    return 1;
  }
}
