// Loading a local config file: reading it safely and the problem/result types.

#include "config/local/local_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <span>

#include "common/fd.h"
#include "config/local/local_config_parser.h"

namespace nodemesh::config {
namespace {

using local_internal::LocalConfigParser;

// Refuse files beyond this size: the local config describes one node's view of a mesh.
constexpr off_t kMaxFileBytes = 16 * 1024 * 1024;

}  // namespace

std::string ConfigProblem::toString() const {
  return file + ":" + std::to_string(line) + ": " + reason;
}

std::string LoadResult::problemsText() const {
  std::string out;
  for (const ConfigProblem& p : problems) {
    if (!out.empty()) out += '\n';
    out += p.toString();
  }
  return out;
}

LoadResult parseLocalConfig(std::string_view yaml_text, const std::string& file_name_for_messages) {
  return LocalConfigParser(yaml_text, file_name_for_messages).run();
}

Result<std::string> readLocalConfigFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::fromErrno("cannot open config file");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::fromErrno("cannot stat config file");
  if (!S_ISREG(st.st_mode)) return Error::invalid("not a regular file");
  if (st.st_size > kMaxFileBytes) {
    return Error{EFBIG, "config file is " + std::to_string(st.st_size) + " bytes; the limit is " +
                            std::to_string(kMaxFileBytes)};
  }
  std::string text;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::fromErrno("cannot read config file");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > static_cast<size_t>(kMaxFileBytes)) {
      return Error{EFBIG, "config file grew beyond " + std::to_string(kMaxFileBytes) + " bytes"};
    }
  }
  return text;
}

LoadResult loadLocalConfigFile(const std::string& path) {
  auto text = readLocalConfigFile(path);
  if (!text) {
    LoadResult result;
    result.problems.push_back(ConfigProblem{path, 0, text.error().message});
    return result;
  }
  return parseLocalConfig(*text, path);
}

}  // namespace nodemesh::config
