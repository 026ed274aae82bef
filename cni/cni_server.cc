#include "cni/cni_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cni/socket_io.h"

namespace nodemesh::cni {

namespace {

Result<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Error::invalid(fmt::format("socket path \"{}\" is empty or too long", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// A socket at path that no process serves is left over from a server that died: remove it.
Status removeStaleSocket(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return okStatus();
    return Error::fromErrno("stat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Error{EEXIST, fmt::format("{} exists and is not a socket; not removing it", path)};
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe.valid()) return Error::fromErrno("socket");
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockaddr API
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 ||
      errno == EAGAIN) {
    return Error{EADDRINUSE, fmt::format("{}: another server is listening", path)};
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error::fromErrno("unlink " + path);
  return okStatus();
}

}  // namespace

Result<std::unique_ptr<CniServer>> CniServer::start(CniServerOptions options, CniHandler handler) {
  if (!handler) return Error::invalid("CniServer: no handler");
  if (options.io_timeout_ms <= 0) return Error::invalid("CniServer: io_timeout_ms must be > 0");
  auto addr = unixAddress(options.socket_path);
  if (!addr) return addr.error();
  const std::filesystem::path dir = std::filesystem::path(options.socket_path).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Error{ec.value(), fmt::format("create {}: {}", dir.string(), ec.message())};
  }
  if (auto s = removeStaleSocket(options.socket_path, *addr); !s) return s.error();

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Error::fromErrno("socket");
  // Bind under umask 0177 would race with other threads' file creation; instead chmod right
  // after bind. Nobody can connect before listen(), which comes after the chmod.
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockaddr API
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    return Error::fromErrno("bind " + options.socket_path);
  }
  if (::chmod(options.socket_path.c_str(), 0600) != 0 || ::listen(fd.get(), 128) != 0) {
    Error e = Error::fromErrno("chmod/listen " + options.socket_path);
    ::unlink(options.socket_path.c_str());
    return e;
  }
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) {
    Error e = Error::fromErrno("eventfd");
    ::unlink(options.socket_path.c_str());
    return e;
  }
  std::unique_ptr<CniServer> server(
      new CniServer(std::move(options), std::move(handler), std::move(fd), std::move(wake)));
  server->thread_ = std::thread([s = server.get()] { s->run(); });
  return server;
}

CniServer::CniServer(CniServerOptions options, CniHandler handler, UniqueFd listen_fd,
                     UniqueFd wake_fd)
    : options_(std::move(options)),
      handler_(std::move(handler)),
      listen_fd_(std::move(listen_fd)),
      wake_fd_(std::move(wake_fd)) {}

CniServer::~CniServer() {
  stop();
}

void CniServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  const uint64_t one = 1;
  if (::write(wake_fd_.get(), &one, sizeof(one)) < 0) {
    spdlog::warn("cni server: cannot wake its thread: {}", std::strerror(errno));
  }
  if (thread_.joinable()) thread_.join();
  listen_fd_.reset();
  ::unlink(options_.socket_path.c_str());
}

void CniServer::run() {
  while (true) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    const int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("cni server: poll: {}", std::strerror(errno));
      return;
    }
    if ((fds[1].revents & POLLIN) != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    UniqueFd conn(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn.valid()) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        spdlog::warn("cni server: accept: {}", std::strerror(errno));
      }
      continue;
    }
    serve(conn.get());
  }
}

void CniServer::serve(int fd) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.io_timeout_ms);
  auto line = readLine(fd, kMaxMessageBytes, deadline);
  CniReply reply;
  if (!line) {
    if (line.error().code == ECONNRESET || line.error().code == ETIMEDOUT) {
      spdlog::warn("cni server: no request: {}", line.error().message);
      return;  // nobody to answer
    }
    reply = CniReply::failure(fmt::format("bad request: {}", line.error().message));
  } else if (auto request = decodeRequest(*line); !request) {
    reply = CniReply::failure(request.error().message);
  } else {
    try {
      reply = handler_(*request);
    } catch (const std::exception& e) {
      reply = CniReply::failure(fmt::format("the agent failed: {}", e.what()));
    }
  }
  served_.fetch_add(1, std::memory_order_relaxed);
  if (!reply.ok) spdlog::info("cni server: refusing a request: {}", reply.error);
  // The handler's time does not count against the reply.
  const auto write_deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.io_timeout_ms);
  if (auto s = writeAll(fd, encodeReply(reply), write_deadline); !s) {
    spdlog::warn("cni server: cannot send the reply: {}", s.error().message);
  }
}

}  // namespace nodemesh::cni
