#include "cni/socket_io.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

namespace nodemesh::cni {

namespace {

// Waits for `events` on fd until the deadline.
Status waitFor(int fd, short events, Deadline deadline) {  // NOLINT(google-runtime-int)
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Error{ETIMEDOUT, "timed out"};
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::fromErrno("poll");
    if (n > 0) return okStatus();
  }
}

}  // namespace

Status writeAll(int fd, std::string_view bytes, Deadline deadline) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (auto s = waitFor(fd, POLLOUT, deadline); !s) return s.error();
      continue;
    }
    return Error::fromErrno("send");
  }
  return okStatus();
}

Result<std::string> readLine(int fd, size_t max_bytes, Deadline deadline) {
  std::string line;
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      const std::string_view chunk(buf, static_cast<size_t>(n));
      const size_t nl = chunk.find('\n');
      const size_t take = nl == std::string_view::npos ? chunk.size() : nl;
      if (line.size() + take > max_bytes) {
        return Error{EMSGSIZE, fmt::format("message longer than {} bytes", max_bytes)};
      }
      line.append(chunk.substr(0, take));
      if (nl != std::string_view::npos) return line;
      continue;
    }
    if (n == 0) {
      return Error{ECONNRESET, line.empty() ? std::string("closed without a message")
                                            : std::string("closed before the end of the line")};
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (auto s = waitFor(fd, POLLIN, deadline); !s) return s.error();
      continue;
    }
    return Error::fromErrno("recv");
  }
}

}  // namespace nodemesh::cni
