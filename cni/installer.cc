#include "cni/installer.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cni/file_util.h"
#include "common/fd.h"

namespace nodemesh::cni {

namespace {

using nlohmann::ordered_json;
namespace fs = std::filesystem;

constexpr size_t kMaxConfigBytes = 1024 * 1024;
constexpr int kInstallStateVersion = 1;

bool hasCniExtension(const std::string& name) {
  const std::string ext = fs::path(name).extension().string();
  return ext == ".conf" || ext == ".conflist" || ext == ".json";
}

// FNV-1a: enough to tell whether a file still holds the bytes we wrote.
std::string fingerprint(std::string_view bytes) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return fmt::format("{:016x}-{}", h, bytes.size());
}

std::string dump(const ordered_json& j) {
  return j.dump(2, ' ', false, ordered_json::error_handler_t::replace) + "\n";
}

bool isOurs(const ordered_json& plugin) {
  const auto type = plugin.find("type");
  return type != plugin.end() && type->is_string() && type->get<std::string>() == kPluginType;
}

Result<ordered_json> parseConfig(std::string_view bytes) {
  ordered_json j = ordered_json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error::invalid("not valid JSON");
  if (!j.is_object()) return Error::invalid("not a JSON object");
  if (const auto plugins = j.find("plugins"); plugins != j.end()) {
    if (!plugins->is_array()) return Error::invalid("\"plugins\" is not an array");
    for (const auto& p : *plugins) {
      if (!p.is_object()) return Error::invalid("\"plugins\" holds an entry that is not an object");
    }
  }
  return j;
}

std::string join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

// The conflist name a config ends up under: a single-plugin .conf/.json becomes X.conflist.
std::string conflistName(const std::string& name, const ordered_json& config) {
  if (config.contains("plugins")) return name;
  return fs::path(name).stem().string() + ".conflist";
}

struct InstallState {
  std::string original_file;
  std::string installed_file;
  std::string installed_fingerprint;
};

Result<InstallState> readInstallState(const std::string& conf_dir) {
  const std::string path = join(conf_dir, kInstallStateName);
  auto text = readFile(path, kMaxConfigBytes);
  if (!text) return text.error();
  const auto j = nlohmann::json::parse(*text, nullptr, false);
  InstallState state;
  auto str = [&j](const char* key, std::string* out) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string() || it->get<std::string>().empty()) return false;
    *out = it->get<std::string>();
    return true;
  };
  if (!j.is_object() || !j.contains("version") || j["version"] != kInstallStateVersion ||
      !str("originalFile", &state.original_file) || !str("installedFile", &state.installed_file) ||
      !str("installedFingerprint", &state.installed_fingerprint) ||
      state.original_file.find('/') != std::string::npos ||
      state.installed_file.find('/') != std::string::npos) {
    return Error::invalid(fmt::format("{}: not an install state this version wrote", path));
  }
  return state;
}

Status writeInstallState(const std::string& conf_dir, const InstallState& state) {
  const nlohmann::json j = {{"version", kInstallStateVersion},
                            {"originalFile", state.original_file},
                            {"installedFile", state.installed_file},
                            {"installedFingerprint", state.installed_fingerprint}};
  return writeFileAtomic(join(conf_dir, kInstallStateName), j.dump(2) + "\n", 0644);
}

Result<std::string> findPrimary(const std::string& conf_dir) {
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(conf_dir, ec)) {
    std::error_code type_ec;
    if (entry.is_regular_file(type_ec)) names.push_back(entry.path().filename().string());
  }
  if (ec) return Error{ec.value(), fmt::format("list {}: {}", conf_dir, ec.message())};
  std::string primary = pickPrimaryConfig(std::move(names));
  if (primary.empty()) return Error{ENOENT, fmt::format("no CNI config in {}", conf_dir)};
  return primary;
}

// Puts back what install changed, or removes our entry from whatever is there now.
Status restoreConfig(const std::string& conf_dir, const InstallState& state) {
  const std::string installed_path = join(conf_dir, state.installed_file);
  auto current = readFile(installed_path, kMaxConfigBytes);
  if (!current) {
    if (current.error().code == ENOENT) return okStatus();  // the primary CNI removed it
    return current.error();
  }
  if (fingerprint(*current) == state.installed_fingerprint) {
    auto original = readFile(join(conf_dir, kBackupName), kMaxConfigBytes);
    if (original) {
      if (auto s = writeFileAtomic(join(conf_dir, state.original_file), *original, 0644); !s) {
        return s;
      }
      if (state.original_file != state.installed_file && ::unlink(installed_path.c_str()) != 0 &&
          errno != ENOENT) {
        return Error::fromErrno("remove " + installed_path);
      }
      spdlog::info("cni install: restored {}", join(conf_dir, state.original_file));
      return okStatus();
    }
    spdlog::warn("cni install: backup of {} unreadable ({}): removing our entry instead",
                 state.original_file, original.error().message);
  }
  auto edited = removePlugin(*current);
  if (!edited) {
    return Error::invalid(fmt::format("{}: {}", installed_path, edited.error().message));
  }
  if (!edited->changed) return okStatus();
  spdlog::info("cni install: removed nodemesh-cni from {}", installed_path);
  return writeFileAtomic(installed_path, edited->bytes, 0644);
}

void removeInstallState(const std::string& conf_dir) {
  for (const char* name : {kInstallStateName, kBackupName}) {
    const std::string path = join(conf_dir, name);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("cni install: cannot remove {}: {}", path, std::strerror(errno));
    }
  }
}

}  // namespace

std::string pickPrimaryConfig(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    if (hasCniExtension(name)) return name;
  }
  return {};
}

Result<EditedConfig> insertPlugin(std::string_view config_bytes,
                                  const ordered_json& plugin_fields) {
  auto parsed = parseConfig(config_bytes);
  if (!parsed) return parsed.error();
  ordered_json config = std::move(*parsed);
  if (!config.contains("plugins")) {
    // libcni's ConfListFromConf: the conf becomes the list's only plugin, unchanged.
    ordered_json list = ordered_json::object();
    const auto version = config.find("cniVersion");
    if (version != config.end()) list["cniVersion"] = *version;
    const auto name = config.find("name");
    if (name != config.end()) list["name"] = *name;
    list["plugins"] = ordered_json::array({config});
    config = std::move(list);
  } else {
    for (const auto& p : config["plugins"]) {
      if (isOurs(p)) return EditedConfig{false, {}};
    }
  }
  ordered_json ours = {{"type", kPluginType}};
  for (const auto& [key, value] : plugin_fields.items()) {
    if (key != "type") ours[key] = value;
  }
  config["plugins"].push_back(std::move(ours));
  return EditedConfig{true, dump(config)};
}

Result<EditedConfig> removePlugin(std::string_view config_bytes) {
  auto parsed = parseConfig(config_bytes);
  if (!parsed) return parsed.error();
  ordered_json config = std::move(*parsed);
  if (!config.contains("plugins")) return EditedConfig{false, {}};
  auto& plugins = config["plugins"];
  const size_t before = plugins.size();
  ordered_json kept = ordered_json::array();
  for (auto& p : plugins) {
    if (!isOurs(p)) kept.push_back(std::move(p));
  }
  if (kept.size() == before) return EditedConfig{false, {}};
  plugins = std::move(kept);
  return EditedConfig{true, dump(config)};
}

Status installConfig(const InstallOptions& options) {
  auto primary = findPrimary(options.conf_dir);
  if (!primary) return primary.error();
  auto previous = readInstallState(options.conf_dir);
  if (previous && previous->installed_file != *primary) {
    // A new primary config took over (or the first install was into another file): give the old
    // one back before changing the new one.
    if (auto s = restoreConfig(options.conf_dir, *previous); !s) return s;
    removeInstallState(options.conf_dir);
  }
  const std::string path = join(options.conf_dir, *primary);
  auto bytes = readFile(path, kMaxConfigBytes);
  if (!bytes) return bytes.error();
  auto edited = insertPlugin(*bytes, options.plugin_fields);
  if (!edited) return Error::invalid(fmt::format("{}: {}", path, edited.error().message));
  if (!edited->changed) return okStatus();  // already there

  auto parsed = parseConfig(*bytes);  // cannot fail: insertPlugin parsed the same bytes
  const std::string target = conflistName(*primary, *parsed);
  // The backup first, the state second, the config last: a crash in between leaves a state that
  // a later install or uninstall reads correctly.
  if (auto s = writeFileAtomic(join(options.conf_dir, kBackupName), *bytes, 0600); !s) return s;
  if (auto s = writeInstallState(options.conf_dir,
                                 InstallState{*primary, target, fingerprint(edited->bytes)});
      !s) {
    return s;
  }
  if (auto s = writeFileAtomic(join(options.conf_dir, target), edited->bytes, 0644); !s) return s;
  if (target != *primary && ::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Error::fromErrno("remove " + path);
  }
  spdlog::info("cni install: added nodemesh-cni to {}", join(options.conf_dir, target));
  return okStatus();
}

Status install(const InstallOptions& options) {
  if (!options.binary_source.empty()) {
    auto binary = readFile(options.binary_source, 256 * 1024 * 1024);
    if (!binary) return binary.error();
    std::error_code ec;
    fs::create_directories(options.bin_dir, ec);
    if (ec) return Error{ec.value(), fmt::format("create {}: {}", options.bin_dir, ec.message())};
    if (auto s = writeFileAtomic(join(options.bin_dir, kPluginType), *binary, 0755); !s) return s;
  }
  return installConfig(options);
}

Status uninstall(const InstallOptions& options) {
  auto state = readInstallState(options.conf_dir);
  if (state) {
    if (auto s = restoreConfig(options.conf_dir, *state); !s) return s;
  } else if (state.error().code == ENOENT) {
    // No record of an install: remove our entry wherever the primary config has it.
    if (auto primary = findPrimary(options.conf_dir)) {
      if (auto s = restoreConfig(options.conf_dir, InstallState{*primary, *primary, ""}); !s) {
        return s;
      }
    }
  } else {
    return state.error();
  }
  removeInstallState(options.conf_dir);
  const std::string binary = join(options.bin_dir, kPluginType);
  if (!options.binary_source.empty() && ::unlink(binary.c_str()) != 0 && errno != ENOENT) {
    return Error::fromErrno("remove " + binary);
  }
  return okStatus();
}

Status installAndWatch(const InstallOptions& options, int stop_fd) {
  if (Status watched = installAndKeepInstalled(options, stop_fd); !watched) return watched;
  return uninstall(options);
}

Status installAndKeepInstalled(const InstallOptions& options, int stop_fd) {
  UniqueFd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify.valid()) return Error::fromErrno("inotify_init1");
  std::error_code ec;
  fs::create_directories(options.conf_dir, ec);
  if (::inotify_add_watch(inotify.get(), options.conf_dir.c_str(),
                          IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                              IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
    return Error::fromErrno("watch " + options.conf_dir);
  }
  Status first = install(options);
  // No config yet, or one the primary CNI is still writing (not valid JSON yet): wait for the
  // next change. Anything else (an unwritable directory) will not get better by waiting.
  if (!first && first.error().code != ENOENT && first.error().code != EINVAL) return first;
  if (!first) spdlog::warn("cni install: {}; waiting for a change", first.error().message);
  while (true) {
    pollfd fds[2] = {{inotify.get(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Error::fromErrno("poll");
    }
    if ((fds[1].revents & POLLIN) != 0) break;
    if ((fds[0].revents & POLLIN) == 0) continue;
    // Drain the queue, then look once: one rewrite is often several events.
    alignas(inotify_event) char buf[8192];
    bool relevant = false;
    ssize_t n = 0;
    while ((n = ::read(inotify.get(), buf, sizeof(buf))) > 0) {
      for (ssize_t off = 0; off < n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(  // NOLINT: the inotify ABI
            buf + off);
        const std::string name = ev->len > 0 ? std::string(ev->name) : std::string();
        // Our own backup, state and temporary files start with a dot and change nothing.
        if (name.empty() || name[0] != '.') relevant = true;
        off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      }
    }
    if (!relevant) continue;
    if (auto s = installConfig(options); !s) {
      spdlog::warn("cni install: {}", s.error().message);
    }
  }
  return okStatus();
}

}  // namespace nodemesh::cni
