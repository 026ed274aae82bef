#include "agent/handoff.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace nodemesh::agent {
namespace {

constexpr std::string_view kHello = "nodemesh-handoff 1";
constexpr size_t kMaxMessage = 256;

std::string_view kindName(tunnel::ListenerKind kind) {
  switch (kind) {
    case tunnel::ListenerKind::kOutbound:
      return "outbound";
    case tunnel::ListenerKind::kInbound:
      return "inbound";
    case tunnel::ListenerKind::kHbone:
      return "hbone";
  }
  return "?";
}

std::optional<tunnel::ListenerKind> kindFromName(std::string_view name) {
  if (name == "outbound") return tunnel::ListenerKind::kOutbound;
  if (name == "inbound") return tunnel::ListenerKind::kInbound;
  if (name == "hbone") return tunnel::ListenerKind::kHbone;
  return std::nullopt;
}

Result<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Error{ENAMETOOLONG, "handoff socket path '" + path + "' is empty or too long"};
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// One message, with at most one descriptor attached.
Status sendMessage(int fd, std::string_view text, int attached = -1) {
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  if (attached >= 0) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &attached, sizeof(int));
  }
  while (::sendmsg(fd, &msg, MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) return Error::fromErrno("handoff: send");
  }
  return okStatus();
}

struct Message {
  std::string text;
  UniqueFd attached;
};

// Waits for readability of `fd` (and not `stop`) for at most `timeout` (negative: no limit).
Status waitReadable(int fd, int stop, int timeout_ms) {
  std::array<pollfd, 2> fds{pollfd{fd, POLLIN, 0}, pollfd{stop, POLLIN, 0}};
  const nfds_t count = stop >= 0 ? 2 : 1;
  while (true) {
    const int n = ::poll(fds.data(), count, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::fromErrno("handoff: poll");
    if (n == 0) return Error{ETIMEDOUT, "handoff: no answer in time"};
    if (count == 2 && fds[1].revents != 0) return Error{ECANCELED, "handoff: stopping"};
    return okStatus();
  }
}

// Empty text and no descriptor: the peer closed the connection.
Result<Message> receiveMessage(int fd, int stop, int timeout_ms) {
  if (auto st = waitReadable(fd, stop, timeout_ms); !st) return st.error();
  std::array<char, kMaxMessage> buf{};
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 4)> control{};
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n = 0;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Error::fromErrno("handoff: receive");
  Message out;
  out.text.assign(buf.data(), static_cast<size_t>(n));
  // Every descriptor that arrived is owned (and closed unless it is the one expected).
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received = -1;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.emplace_back(received);
    }
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    return Error{EPROTO, "handoff: message or its descriptors truncated"};
  }
  if (fds.size() > 1) return Error{EPROTO, "handoff: more than one descriptor in a message"};
  if (fds.size() == 1) out.attached = std::move(fds.front());
  return out;
}

// The peer must run as this process's user (root): nobody else gets the sockets.
Status checkPeer(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Error::fromErrno("handoff: SO_PEERCRED");
  }
  if (cred.uid != ::geteuid()) {
    return Error{EPERM, fmt::format("handoff: peer pid {} runs as uid {}, not {}", cred.pid,
                                    cred.uid, ::geteuid())};
  }
  return okStatus();
}

}  // namespace

Result<std::unique_ptr<HandoffServer>> HandoffServer::start(const std::string& path, Hooks hooks) {
  auto addr = unixAddress(path);
  if (!addr) return addr.error();
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::fromErrno("handoff: socket");
  // A socket file nobody listens on is a dead agent's: replace it. One somebody listens on is
  // a running agent's, which the caller asked first (requestHandoff) and took over from.
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Error::fromErrno("handoff: unlink " + path);
  }
  const mode_t old_mask = ::umask(0077);  // root only
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  ::umask(old_mask);
  if (rc != 0) return Error::fromErrno("handoff: bind " + path);
  if (::listen(fd.get(), 4) != 0) return Error::fromErrno("handoff: listen " + path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Error::fromErrno("handoff: stat " + path);
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC));
  if (!stop.valid()) return Error::fromErrno("handoff: eventfd");
  std::unique_ptr<HandoffServer> server(
      new HandoffServer(path, std::move(fd), std::move(stop), std::move(hooks), st.st_ino));
  server->thread_ = std::thread([s = server.get()] { s->serve(); });
  return server;
}

HandoffServer::HandoffServer(std::string path, UniqueFd listener, UniqueFd stop, Hooks hooks,
                             ino_t inode)
    : path_(std::move(path)),
      listener_(std::move(listener)),
      stop_(std::move(stop)),
      hooks_(std::move(hooks)),
      inode_(inode) {}

HandoffServer::~HandoffServer() {
  const uint64_t one = 1;
  if (::write(stop_.get(), &one, sizeof(one)) < 0) {
    spdlog::warn("handoff: waking the server thread: {}", std::strerror(errno));
  }
  if (thread_.joinable()) thread_.join();
  // The next agent binds the same path: its socket file is not ours to remove.
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(path_.c_str());
}

void HandoffServer::serve() {
  while (true) {
    if (auto st = waitReadable(listener_.get(), stop_.get(), -1); !st) return;  // stopping
    UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) {
      if (errno != EINTR && errno != ECONNABORTED) {
        spdlog::warn("handoff: accept: {}", std::strerror(errno));
      }
      continue;
    }
    if (handOver(std::move(conn))) return;  // one handoff per agent
  }
}

bool HandoffServer::handOver(UniqueFd conn) {
  if (auto st = checkPeer(conn.get()); !st) {
    spdlog::warn("{}", st.error().message);
    return false;
  }
  auto hello = receiveMessage(conn.get(), stop_.get(), 5000);
  if (!hello || hello->text != kHello) {
    spdlog::warn("handoff: unexpected greeting ({}), ignored",
                 hello ? "'" + hello->text + "'" : hello.error().message);
    return false;
  }
  spdlog::info("handoff: a new agent asks for the listening sockets; releasing the ports");
  hooks_.release_ports();
  auto listeners = hooks_.export_listeners();
  Status sent = okStatus();
  for (const auto& l : listeners) {
    sent = sendMessage(
        conn.get(),
        fmt::format("socket {} {} {}", l.netns_cookie, kindName(l.kind), l.ipv6 ? 6 : 4),
        l.fd.get());
    if (!sent) break;
  }
  const size_t count = listeners.size();
  if (sent) sent = sendMessage(conn.get(), fmt::format("end {}", count));
  listeners.clear();  // our duplicates: the workers keep theirs
  if (sent) {
    spdlog::info("handoff: sent {} listening sockets; waiting for the new agent", count);
    // No limit: the new agent answers after its first pass over the pods.
    auto ready = receiveMessage(conn.get(), stop_.get(), -1);
    if (ready && ready->text == "ready") {
      spdlog::info("handoff: the new agent accepts on the sockets: draining");
      hooks_.handed_over(std::move(conn));
      return true;
    }
    if (!ready && ready.error().code == ECANCELED) return false;  // this agent is stopping
    spdlog::warn(
        "handoff: the new agent went away before taking over ({}); serving on",
        ready ? (ready->text.empty() ? "closed" : "'" + ready->text + "'") : ready.error().message);
  } else {
    spdlog::warn("handoff: {}; serving on", sent.error().message);
  }
  hooks_.restore_ports();
  return false;
}

Result<std::optional<Handoff>> requestHandoff(const std::string& path,
                                              std::chrono::milliseconds timeout) {
  auto addr = unixAddress(path);
  if (!addr) return addr.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::fromErrno("handoff: socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) return std::optional<Handoff>();
    return Error::fromErrno("handoff: connect " + path);
  }
  if (auto st = checkPeer(fd.get()); !st) return st.error();
  if (auto st = sendMessage(fd.get(), kHello); !st) return st.error();
  Handoff handoff;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto msg = receiveMessage(fd.get(), -1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (!msg) return msg.error();
    if (msg->text.empty() && !msg->attached.valid()) {
      return Error{ECONNRESET, "handoff: the running agent closed the connection"};
    }
    std::istringstream words(msg->text);
    std::string verb;
    words >> verb;
    if (verb == "end") {
      size_t count = 0;
      words >> count;
      if (!words || count != handoff.listeners.size()) {
        return Error{EPROTO, fmt::format("handoff: '{}' after {} sockets", msg->text,
                                         handoff.listeners.size())};
      }
      break;
    }
    uint64_t cookie = 0;
    std::string kind;
    int family = 0;
    words >> cookie >> kind >> family;
    auto parsed_kind = kindFromName(kind);
    if (verb != "socket" || !words || !parsed_kind || (family != 4 && family != 6) ||
        !msg->attached.valid()) {
      return Error{EPROTO, "handoff: unexpected message '" + msg->text + "'"};
    }
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (::getsockopt(msg->attached.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        listening == 0) {
      return Error{EPROTO, "handoff: '" + msg->text + "' came with a socket that is not listening"};
    }
    handoff.listeners.push_back(
        tunnel::InheritedListener{cookie, *parsed_kind, family == 6, std::move(msg->attached)});
  }
  handoff.conn = std::move(fd);
  return std::optional<Handoff>(std::move(handoff));
}

Status confirmHandoff(Handoff& handoff) {
  Status st = sendMessage(handoff.conn.get(), "ready");
  if (!st) handoff.conn.reset();
  return st;
}

Result<bool> awaitAcceptsStopped(Handoff& handoff, int stop_fd, std::chrono::milliseconds timeout) {
  if (!handoff.conn.valid()) return false;
  auto msg = receiveMessage(handoff.conn.get(), stop_fd, static_cast<int>(timeout.count()));
  handoff.conn.reset();
  if (!msg) return msg.error();
  if (msg->text.empty() && !msg->attached.valid()) return false;  // closed
  if (msg->text != "stopped") {
    return Error{EPROTO, "handoff: unexpected message '" + msg->text + "' after ready"};
  }
  return true;
}

Status reportAcceptsStopped(UniqueFd& conn) {
  if (!conn.valid()) return okStatus();
  Status st = sendMessage(conn.get(), "stopped");
  conn.reset();
  return st;
}

}  // namespace nodemesh::agent
