#pragma once

// Shell completion for nodemeshctl. CLI11 does not generate completion scripts, so
// `nodemeshctl completion bash` writes one from the command tree itself (subcommands, their
// flags, their own commands such as `waypoint routes`, and the values of -o and log-level); the
// build installs its output as share/bash-completion/completions/nodemeshctl.

#include <string>

#include <CLI/CLI.hpp>

namespace nodemesh::cli {

std::string bashCompletion(const CLI::App& app);

}  // namespace nodemesh::cli
