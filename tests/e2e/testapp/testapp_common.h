#pragma once

// Internal to nm-testapp: flags, sockets, printing and the checked stream transfer that serve and
// the connect commands share, and the commands' entry points.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/ip_address.h"
#include "tests/e2e/testapp/stream.h"

namespace nodemesh::testapp {

inline constexpr size_t kBufferSize = 256 * 1024;
inline constexpr size_t kMinBufferSize = 16 * 1024;
// serve --parallel and connect-many --parallel: a thread per connection, so keep it sane.
inline constexpr uint32_t kMaxParallel = 1024;
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// Buffers no larger than the transfer needs: with hundreds of connections in parallel,
// 512 KiB of zeroed buffers each would be most of the memory a small test machine has.
inline size_t bufferSizeFor(uint64_t bytes) {
  return static_cast<size_t>(std::clamp<uint64_t>(bytes, kMinBufferSize, kBufferSize));
}

// Lines from concurrent connections must not interleave.
inline std::mutex print_mutex;

inline void printJson(const nlohmann::json& j) {
  std::lock_guard lock(print_mutex);
  std::string line = j.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

[[noreturn]] inline void usage(const std::string& why) {
  std::fprintf(stderr,
               "nm-testapp: %s\n"
               "usage:\n"
               "  nm-testapp serve --port P [--bind IP] [--count N (0: forever)] "
               "[--timeout-ms T] [--parallel N] [--delay-ms D]\n"
               "  nm-testapp connect --to IP:PORT --send N --expect M [--seed S] [--bind IP] "
               "[--timeout-ms T] [--v4-mapped 1] [--rate BYTES_PER_S]\n"
               "  nm-testapp connect-many --to IP:PORT --count N [--send N] [--expect M] "
               "[--seed S] [--timeout-ms T] [--parallel P | --concurrency C]\n",
               why.c_str());
  std::exit(kExitUsage);
}

inline std::string errnoText(const std::string& what, int err = errno) {
  return what + ": " + std::strerror(err);
}

// "--key value" pairs after the subcommand.
inline std::map<std::string, std::string> parseFlags(int argc, char** argv, int first,
                                                     const std::vector<std::string>& allowed) {
  std::map<std::string, std::string> flags;
  for (int i = first; i < argc; ++i) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0) usage("unexpected argument '" + key + "'");
    key = key.substr(2);
    bool known = false;
    for (const auto& a : allowed) known = known || a == key;
    if (!known) usage("unknown flag --" + key);
    if (i + 1 >= argc) usage("flag --" + key + " needs a value");
    flags[key] = argv[++i];
  }
  return flags;
}

inline uint64_t parseSize(const std::string& flag, const std::string& text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) usage("invalid number for --" + flag);
  std::string_view suffix(end, text.data() + text.size() - end);
  uint64_t scale = 1;
  if (suffix == "K" || suffix == "k") {
    scale = 1ULL << 10;
  } else if (suffix == "M" || suffix == "m") {
    scale = 1ULL << 20;
  } else if (suffix == "G" || suffix == "g") {
    scale = 1ULL << 30;
  } else if (!suffix.empty()) {
    usage("invalid suffix for --" + flag);
  }
  return value * scale;
}

inline uint32_t parseU32(const std::map<std::string, std::string>& flags, const std::string& flag,
                         uint64_t fallback) {
  auto it = flags.find(flag);
  uint64_t v = it == flags.end() ? fallback : parseSize(flag, it->second);
  if (v > UINT32_MAX) usage("--" + flag + " is larger than 4 GiB - 1");
  return static_cast<uint32_t>(v);
}

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

// v4_mapped: an IPv4 address as ::ffff:a.b.c.d on an AF_INET6 socket (what dual-stack
// applications do), which the kernel connects over IPv4 through the connect6 hook.
inline Endpoint makeEndpoint(const IpAddress& ip, uint16_t port, bool v4_mapped = false) {
  Endpoint ep;
  if (ip.isV4() && !v4_mapped) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ep.addr);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr = ip.v4();
    ep.len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr = ip.v6();
    ep.len = sizeof(sockaddr_in6);
  }
  return ep;
}

inline std::string formatSockaddr(const sockaddr_storage& ss) {
  SocketAddress sa;
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    sa.ip = IpAddress::fromV4(sin->sin_addr);
    sa.port = ntohs(sin->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    sa.ip = IpAddress::fromV6(sin6->sin6_addr);
    sa.port = ntohs(sin6->sin6_port);
  } else {
    return "";
  }
  return sa.toString();
}

inline std::string localAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return formatSockaddr(ss);
}

inline std::string peerAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return formatSockaddr(ss);
}

inline void setIoTimeout(int fd, int timeout_ms) {
  timeval tv{};
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// Reads up to n bytes; 0 on EOF, -1 with errno on error (EAGAIN means the timeout expired).
inline ssize_t readSome(int fd, uint8_t* buf, size_t n) {
  for (;;) {
    ssize_t r = ::recv(fd, buf, n, 0);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

// Reads exactly n bytes unless EOF comes first; returns the count read, or -1 on error.
inline ssize_t readFull(int fd, uint8_t* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = readSome(fd, buf + got, n - got);
    if (r < 0) return -1;
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

// Sends `count` bytes of `stream`; returns the number sent, stops at the first error (errno).
// rate > 0: at most `rate` bytes per second (chunks of at most 1/32 s), so that a transfer
// lasts at least count / rate seconds whatever the machine's speed.
inline uint64_t sendStream(int fd, PrngStream& stream, uint64_t count, std::vector<uint8_t>& buf,
                           std::string* error, uint64_t rate = 0) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const size_t max_chunk =
      rate == 0 ? buf.size() : static_cast<size_t>(std::clamp<uint64_t>(rate / 32, 1, buf.size()));
  uint64_t sent = 0;
  while (sent < count) {
    if (rate > 0) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(sent * 1000000 / rate));
    }
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(max_chunk, count - sent));
    stream.fill(buf.data(), chunk);
    size_t off = 0;
    while (off < chunk) {
      ssize_t w = ::send(fd, buf.data() + off, chunk - off, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        *error = errnoText("send after " + std::to_string(sent + off) + " bytes");
        return sent + off;
      }
      off += static_cast<size_t>(w);
    }
    sent += chunk;
  }
  return sent;
}

struct ReceiveResult {
  uint64_t received = 0;
  bool matched = true;  // every byte received so far equals the stream
  std::string error;    // read error or first mismatch
};

// Reads until EOF, checking every byte against `stream`.
inline ReceiveResult receiveStream(int fd, PrngStream& stream, std::vector<uint8_t>& buf,
                                   std::vector<uint8_t>& scratch) {
  ReceiveResult res;
  for (;;) {
    ssize_t r = readSome(fd, buf.data(), buf.size());
    if (r == 0) return res;
    if (r < 0) {
      res.error = errno == EAGAIN
                      ? "read timed out after " + std::to_string(res.received) + " bytes"
                      : errnoText("read after " + std::to_string(res.received) + " bytes");
      return res;
    }
    if (res.matched) {
      auto bad = stream.verify(buf.data(), static_cast<size_t>(r), scratch.data());
      if (bad) {
        res.matched = false;
        res.error = "data mismatch at byte " + std::to_string(res.received + *bad);
      }
    }
    res.received += static_cast<uint64_t>(r);
  }
}

// The commands (testapp.cc's header comment describes them). Each returns the exit status.
int serve(int argc, char** argv);
int connectCommand(int argc, char** argv);
int connectMany(int argc, char** argv);

}  // namespace nodemesh::testapp
