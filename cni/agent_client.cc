#include "cni/agent_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "cni/socket_io.h"
#include "common/fd.h"

namespace nodemesh::cni {

Result<CniReply> callAgent(const std::string& socket_path, int timeout_ms,
                           const CniRequest& request) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return Error::invalid(fmt::format("socket path {} is too long", socket_path));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Error::fromErrno("socket");
  // A unix connect completes at once or fails (ENOENT, ECONNREFUSED); EAGAIN is a full backlog.
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockaddr API
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Error::fromErrno("connect " + socket_path);
  }
  if (auto s = writeAll(fd.get(), encodeRequest(request), deadline); !s) return s.error();
  auto line = readLine(fd.get(), kMaxMessageBytes, deadline);
  if (!line)
    return Error{line.error().code,
                 fmt::format("reply from {}: {}", socket_path, line.error().message)};
  return decodeReply(*line);
}

}  // namespace nodemesh::cni
