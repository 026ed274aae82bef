#include "agent/istiod_loader.h"

#include <dlfcn.h>

#include <filesystem>
#include <system_error>

#include <fmt/format.h>

namespace nodemesh::agent {

Result<std::string> defaultIstiodModulePath() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) {
    return Error{ec.value(), fmt::format("finding the istiod module: reading /proc/self/exe: {}",
                                         ec.message())};
  }
  return (exe.parent_path().parent_path() / "lib" / "nodemesh" / kIstiodModuleName).string();
}

Result<xds::Istiod*> loadIstiodModule(const std::string& path) {
  std::string file = path;
  if (file.empty()) {
    auto found = defaultIstiodModulePath();
    if (!found) return found.error();
    file = std::move(*found);
  }
  // RTLD_NOW: a library the module needs that is missing fails here, with its name, not at the
  // first call. RTLD_LOCAL: its symbols serve only itself. Never closed.
  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return Error{ENOENT, fmt::format("cannot load the istiod module {}: {} (it is installed with "
                                     "the agent; --istiod-module names another path)",
                                     file, why != nullptr ? why : "unknown error")};
  }
  auto* entry = reinterpret_cast<xds::IstiodModuleEntry>(dlsym(handle, xds::kIstiodModuleEntry));
  if (entry == nullptr) {
    return Error::invalid(
        fmt::format("{} is not an istiod module: no {}", file, xds::kIstiodModuleEntry));
  }
  xds::Istiod* istiod = entry(xds::kIstiodModuleAbi);
  if (istiod == nullptr) {
    return Error::invalid(fmt::format(
        "the istiod module {} belongs to another build of nodemesh-agent (interface version {} "
        "refused); install the module built with this agent",
        file, xds::kIstiodModuleAbi));
  }
  return istiod;
}

}  // namespace nodemesh::agent
