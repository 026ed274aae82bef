#include "cni/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "common/fd.h"

namespace nodemesh::cni {

Result<std::string> readFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::fromErrno("open " + path);
  std::string out;
  char buf[16384];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::fromErrno("read " + path);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return Error{EFBIG, fmt::format("{}: larger than {} bytes", path, max_bytes)};
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status writeFileAtomic(const std::string& path, const std::string& bytes, mode_t mode) {
  const std::filesystem::path target(path);
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  // A dot name without a CNI extension: libcni never loads it as a config, even for the moment
  // it exists.
  std::string tmpl = fmt::format("{}/.{}.tmp-XXXXXX", dir, target.filename().string());
  UniqueFd fd(::mkstemp(tmpl.data()));
  if (!fd.valid()) return Error::fromErrno("create a temporary file in " + dir);
  auto fail = [&tmpl](std::string what) {
    Error e = Error::fromErrno(std::move(what));
    ::unlink(tmpl.c_str());
    return e;
  };
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + off, bytes.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write " + tmpl);
    }
    off += static_cast<size_t>(n);
  }
  if (::fchmod(fd.get(), mode) != 0) return fail("chmod " + tmpl);
  if (::fsync(fd.get()) != 0) return fail("fsync " + tmpl);
  if (::close(fd.release()) != 0) return fail("close " + tmpl);
  if (::rename(tmpl.c_str(), path.c_str()) != 0) return fail("rename to " + path);
  return okStatus();
}

}  // namespace nodemesh::cni
