#include "cni/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cni/file_util.h"

namespace nodemesh::cni {

namespace {

using nlohmann::json;

// Thousands of namespaces and pods fit; a larger file is not the agent's.
constexpr size_t kMaxStateFileBytes = 4 * 1024 * 1024;

bool contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

Status readList(const json& j, const char* key, bool required, std::vector<std::string>* out) {
  const auto it = j.find(key);
  if (it == j.end()) {
    if (required) return Error::invalid(fmt::format("\"{}\" is missing", key));
    return okStatus();
  }
  if (!it->is_array()) return Error::invalid(fmt::format("\"{}\" is not an array", key));
  for (const json& v : *it) {
    if (!v.is_string() || v.get<std::string>().empty()) {
      return Error::invalid(
          fmt::format("\"{}\" holds a value that is not a non-empty string", key));
    }
    out->push_back(v.get<std::string>());
  }
  return okStatus();
}

}  // namespace

bool CniState::requiresMesh(const std::string& pod_namespace, const std::string& pod_name) const {
  const std::string pod = pod_namespace + "/" + pod_name;
  if (!pod_name.empty() && contains(opt_out_pods, pod)) return false;
  if (!pod_name.empty() && contains(ambient_pods, pod)) return true;
  return !pod_namespace.empty() && contains(ambient_namespaces, pod_namespace);
}

std::string encodeCniState(const CniState& state) {
  json j = {{"version", kStateFileVersion}, {"ambientNamespaces", state.ambient_namespaces}};
  if (!state.ambient_pods.empty()) j["ambientPods"] = state.ambient_pods;
  if (!state.opt_out_pods.empty()) j["optOutPods"] = state.opt_out_pods;
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<CniState> decodeCniState(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error::invalid("not valid JSON");
  if (!j.is_object()) return Error::invalid("not a JSON object");
  const auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer()) {
    return Error::invalid("\"version\" missing or not an integer");
  }
  if (version->get<int64_t>() != kStateFileVersion) {
    return Error::invalid(fmt::format("version {} is not supported (this plugin reads {})",
                                      version->get<int64_t>(), kStateFileVersion));
  }
  CniState state;
  if (auto s = readList(j, "ambientNamespaces", true, &state.ambient_namespaces); !s) {
    return s.error();
  }
  if (auto s = readList(j, "ambientPods", false, &state.ambient_pods); !s) return s.error();
  if (auto s = readList(j, "optOutPods", false, &state.opt_out_pods); !s) return s.error();
  return state;
}

Status writeCniState(const std::string& path, const CniState& state) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(p.parent_path(), ec);
    if (ec)
      return Error{ec.value(),
                   fmt::format("create {}: {}", p.parent_path().string(), ec.message())};
  }
  return writeFileAtomic(path, encodeCniState(state), 0644);
}

Result<CniState> readCniState(const std::string& path) {
  auto text = readFile(path, kMaxStateFileBytes);
  if (!text) return text.error();
  auto state = decodeCniState(*text);
  if (!state) return Error::invalid(fmt::format("{}: {}", path, state.error().message));
  return state;
}

}  // namespace nodemesh::cni
