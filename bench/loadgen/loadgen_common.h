#pragma once

// Internal to nm-loadgen: flags, the epoll wrapper, sockets and statistics helpers its modes
// share, and the modes' entry points (one file each).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/ip_address.h"

namespace nodemesh::bench::loadgen {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr size_t kIoBuffer = 64 * 1024;
inline constexpr int kMaxEvents = 256;

[[noreturn]] inline void usage(const std::string& why) {
  std::fprintf(stderr,
               "nm-loadgen: %s\n"
               "usage: nm-loadgen echo-server|http-server --port P [--body N]\n"
               "       nm-loadgen conn-rate --to IP:PORT --duration-ms D [--concurrency C] "
               "[--size N]\n"
               "       nm-loadgen http-load --to IP:PORT --rate R --duration-ms D "
               "[--connections C] [--warmup-ms W]\n"
               "       nm-loadgen hold --to IP:PORT --count N [--concurrency C] [--hold-ms H]\n"
               "       nm-loadgen probe --to IP:PORT [--timeout-ms T]\n",
               why.c_str());
  std::exit(kExitUsage);
}

inline void printJson(const nlohmann::json& j) {
  std::string line = j.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

class Flags {
 public:
  Flags(int argc, char** argv, const std::vector<std::string>& allowed) {
    for (int i = 2; i < argc; ++i) {
      std::string key = argv[i];
      if (key.rfind("--", 0) != 0) usage("unexpected argument '" + key + "'");
      key = key.substr(2);
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        usage("unknown flag --" + key);
      }
      if (i + 1 >= argc) usage("flag --" + key + " needs a value");
      values_[key] = argv[++i];
    }
  }

  uint64_t number(const std::string& key, std::optional<uint64_t> fallback = std::nullopt) const {
    auto it = values_.find(key);
    if (it == values_.end()) {
      if (!fallback) usage("--" + key + " is required");
      return *fallback;
    }
    uint64_t v = 0;
    const std::string& text = it->second;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size()) usage("bad number for --" + key);
    return v;
  }

  SocketAddress address(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) usage("--" + key + " IP:PORT is required");
    auto addr = SocketAddress::parse(it->second);
    if (!addr || !addr->ip.isV4()) usage("--" + key + ": not an IPv4 IP:PORT");
    return *addr;
  }

 private:
  std::map<std::string, std::string> values_;
};

inline sockaddr_in toSockaddr(const SocketAddress& a) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(a.port);
  sin.sin_addr = a.ip.v4();
  return sin;
}

// As many descriptors as the hard limit allows (hold and the servers keep thousands open).
inline void raiseFdLimit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

inline double percentile(std::vector<double>& sorted_values, double p) {
  if (sorted_values.empty()) return 0;
  auto idx =
      static_cast<size_t>(std::lround(p / 100.0 * static_cast<double>(sorted_values.size() - 1)));
  return sorted_values[std::min(idx, sorted_values.size() - 1)];
}

inline nlohmann::json latencySummary(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  return {{"p50_us", percentile(us, 50)},
          {"p99_us", percentile(us, 99)},
          {"p999_us", percentile(us, 99.9)},
          {"samples", us.size()}};
}

// A non-blocking connect; invalid fd with errno set on an immediate failure.
inline UniqueFd startConnect(const sockaddr_in& to) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof(to)) != 0 &&
      errno != EINPROGRESS) {
    return UniqueFd();
  }
  return fd;
}

inline int socketError(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

class Epoll {
 public:
  Epoll() : fd_(::epoll_create1(EPOLL_CLOEXEC)) {}
  bool valid() const { return fd_.valid(); }
  void add(int fd, uint32_t events, uint64_t key) { ctl(EPOLL_CTL_ADD, fd, events, key); }
  void mod(int fd, uint32_t events, uint64_t key) { ctl(EPOLL_CTL_MOD, fd, events, key); }
  void del(int fd) { ::epoll_ctl(fd_.get(), EPOLL_CTL_DEL, fd, nullptr); }
  // Waits up to `timeout` (sub-millisecond precision: http-load schedules at 1 ms spacing).
  int wait(epoll_event* events, int max, microseconds timeout) {
    timespec ts{};
    auto us = std::max<int64_t>(0, timeout.count());
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000;
    int n = ::epoll_pwait2(fd_.get(), events, max, &ts, nullptr);
    return n < 0 && errno == EINTR ? 0 : n;
  }

 private:
  void ctl(int op, int fd, uint32_t events, uint64_t key) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    ::epoll_ctl(fd_.get(), op, fd, &ev);
  }
  UniqueFd fd_;
};

// The modes (loadgen.cc's header comment describes them). Each returns the exit status.
int serve(const Flags& flags, bool http);  // echo-server, http-server
int connRate(const Flags& flags);
int httpLoad(const Flags& flags);
int hold(const Flags& flags);
int probe(const Flags& flags);

}  // namespace nodemesh::bench::loadgen
