// nm-loadgen: the benchmark's own traffic tools, for what iperf3 and sockperf do not measure.
// Single-threaded epoll loops, IPv4, one JSON line of results on stdout.
//
//   nm-loadgen echo-server --port P            echoes every byte back (conn-rate, hold, probe)
//   nm-loadgen http-server --port P [--body N] HTTP/1.1 keep-alive, N-byte 200 to any request
//   nm-loadgen conn-rate --to IP:PORT --duration-ms D [--concurrency C] [--size N]
//       short connections: connect, send N bytes, read the N-byte echo, close; C at a time.
//       Reports completed connections per second.
//   nm-loadgen http-load --to IP:PORT --rate R --duration-ms D [--connections C]
//       HTTP/1.1 GETs at a FIXED rate R (open loop: request i is due at start + i/R whatever
//       the responses do, and its latency counts from when it was due, so a slow server cannot
//       hide its queueing: no coordinated omission). wrk only runs closed loop (as fast as the
//       server answers) and wrk2, its fixed-rate fork, is not packaged in Debian.
//   nm-loadgen hold --to IP:PORT --count N [--concurrency C] [--hold-ms H]
//       opens N connections (C connecting at once), each sends one byte and reads its echo;
//       then prints {"event":"ready"} and keeps them open, idle, until SIGTERM or H ms.
//   nm-loadgen probe --to IP:PORT [--timeout-ms T]
//       retries one echo round trip until it works (a tunnel is ready end to end) or T.
//
// Exit status: 0 success, 1 failure, 2 usage error.

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
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr size_t kIoBuffer = 64 * 1024;
constexpr int kMaxEvents = 256;

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "nm-loadgen: %s\n"
               "usage: nm-loadgen echo-server|http-server --port P [--body N]\n"
               "       nm-loadgen conn-rate --to IP:PORT --duration-ms D [--concurrency C] "
               "[--size N]\n"
               "       nm-loadgen http-load --to IP:PORT --rate R --duration-ms D "
               "[--connections C]\n"
               "       nm-loadgen hold --to IP:PORT --count N [--concurrency C] [--hold-ms H]\n"
               "       nm-loadgen probe --to IP:PORT [--timeout-ms T]\n",
               why.c_str());
  std::exit(kExitUsage);
}

void printJson(const nlohmann::json& j) {
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

sockaddr_in toSockaddr(const SocketAddress& a) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(a.port);
  sin.sin_addr = a.ip.v4();
  return sin;
}

// As many descriptors as the hard limit allows (hold and the servers keep thousands open).
void raiseFdLimit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

double percentile(std::vector<double>& sorted_values, double p) {
  if (sorted_values.empty()) return 0;
  auto idx =
      static_cast<size_t>(std::lround(p / 100.0 * static_cast<double>(sorted_values.size() - 1)));
  return sorted_values[std::min(idx, sorted_values.size() - 1)];
}

nlohmann::json latencySummary(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  return {{"p50_us", percentile(us, 50)},
          {"p99_us", percentile(us, 99)},
          {"p999_us", percentile(us, 99.9)},
          {"samples", us.size()}};
}

// A non-blocking connect; invalid fd with errno set on an immediate failure.
UniqueFd startConnect(const sockaddr_in& to) {
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

int socketError(int fd) {
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

// ---- servers ----------------------------------------------------------------------------

struct ServerConn {
  UniqueFd fd;
  std::string in;   // http: request bytes not yet answered
  std::string out;  // bytes not yet written
  bool want_out = false;
};

// Both servers: accept everything, read, answer, write with back-pressure.
int serve(const Flags& flags, bool http) {
  const uint64_t port = flags.number("port");
  const uint64_t body_size = flags.number("body", 1024);
  if (port > 65535) usage("--port out of range");
  raiseFdLimit();
  std::string response;
  if (http) {
    response = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
               std::to_string(body_size) + "\r\n\r\n" + std::string(body_size, 'x');
  }
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listener.get(), 4096) != 0) {
    std::fprintf(stderr, "nm-loadgen: bind/listen %lu: %s\n", static_cast<unsigned long>(port),
                 std::strerror(errno));
    return kExitFailed;
  }
  Epoll ep;
  constexpr uint64_t kListenerKey = ~0ULL;
  ep.add(listener.get(), EPOLLIN, kListenerKey);
  std::unordered_map<uint64_t, std::unique_ptr<ServerConn>> conns;
  uint64_t next_key = 0;
  printJson({{"event", "listening"}, {"port", port}, {"http", http}});

  std::vector<char> buf(kIoBuffer);
  std::vector<epoll_event> events(kMaxEvents);
  auto close_conn = [&](uint64_t key) {
    ep.del(conns[key]->fd.get());
    conns.erase(key);
  };
  // Writes what is pending; false when the connection failed.
  auto flush = [&](uint64_t key, ServerConn& c) {
    while (!c.out.empty()) {
      ssize_t w = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) break;
      if (w < 0) return false;
      c.out.erase(0, static_cast<size_t>(w));
    }
    bool want = !c.out.empty();
    if (want != c.want_out) {
      c.want_out = want;
      ep.mod(c.fd.get(), want ? EPOLLIN | EPOLLOUT : EPOLLIN, key);
    }
    return true;
  };
  for (;;) {
    int n = ep.wait(events.data(), kMaxEvents, std::chrono::seconds(1));
    for (int i = 0; i < n; ++i) {
      uint64_t key = events[i].data.u64;
      if (key == kListenerKey) {
        for (;;) {
          int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          auto c = std::make_unique<ServerConn>();
          c->fd.reset(fd);
          uint64_t k = next_key++;
          ep.add(fd, EPOLLIN, k);
          conns.emplace(k, std::move(c));
        }
        continue;
      }
      auto it = conns.find(key);
      if (it == conns.end()) continue;
      ServerConn& c = *it->second;
      bool alive = true;
      if (events[i].events & EPOLLOUT) alive = flush(key, c);
      if (alive && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        // Back-pressure: do not read more while a large answer is still pending.
        while (alive && c.out.size() < kIoBuffer) {
          ssize_t r = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
          if (r < 0 && errno == EINTR) continue;
          if (r < 0 && errno == EAGAIN) break;
          if (r <= 0) {
            alive = false;
            break;
          }
          if (!http) {
            c.out.append(buf.data(), static_cast<size_t>(r));
            continue;
          }
          c.in.append(buf.data(), static_cast<size_t>(r));
          for (auto end = c.in.find("\r\n\r\n"); end != std::string::npos;
               end = c.in.find("\r\n\r\n")) {
            c.in.erase(0, end + 4);  // GETs only: no request body
            c.out += response;
          }
        }
        if (alive) alive = flush(key, c);
      }
      if (!alive) close_conn(key);
    }
  }
}

// ---- conn-rate --------------------------------------------------------------------------

struct RateSlot {
  UniqueFd fd;
  Clock::time_point start;
  size_t sent = 0;
  size_t got = 0;
  bool connected = false;
};

int connRate(const Flags& flags) {
  const sockaddr_in to = toSockaddr(flags.address("to"));
  const auto duration = milliseconds(flags.number("duration-ms"));
  const size_t concurrency = flags.number("concurrency", 16);
  const size_t size = flags.number("size", 64);
  if (concurrency == 0 || size == 0 || size > kIoBuffer) usage("bad --concurrency or --size");
  // Connections that complete during the first 20% (at most 500 ms) are not counted: the
  // loops are still ramping up.
  const auto warmup = std::min<Clock::duration>(duration / 5, milliseconds(500));
  const auto slot_timeout = std::chrono::seconds(5);
  const std::string payload(size, 'c');
  std::vector<char> buf(kIoBuffer);

  Epoll ep;
  std::vector<RateSlot> slots(concurrency);
  uint64_t completed = 0;
  uint64_t errors = 0;
  uint64_t counted = 0;
  std::string first_error;
  std::vector<double> latencies;
  const auto start = Clock::now();
  const auto window_start = start + warmup;
  const auto end = start + duration;

  auto fail = [&](size_t i, const std::string& why) {
    ++errors;
    if (first_error.empty()) first_error = why;
    slots[i].fd.reset();
  };
  auto launch = [&](size_t i) {
    RateSlot& s = slots[i];
    s = RateSlot{};
    s.start = Clock::now();
    s.fd = startConnect(to);
    if (!s.fd.valid()) return fail(i, std::string("connect: ") + std::strerror(errno));
    ep.add(s.fd.get(), EPOLLOUT, i);
  };
  for (size_t i = 0; i < concurrency; ++i) launch(i);

  std::vector<epoll_event> events(kMaxEvents);
  while (Clock::now() < end) {
    int n = ep.wait(events.data(), kMaxEvents, milliseconds(50));
    for (int e = 0; e < n; ++e) {
      size_t i = events[e].data.u64;
      RateSlot& s = slots[i];
      if (!s.fd.valid()) continue;
      if (!s.connected) {
        if (int err = socketError(s.fd.get()); err != 0) {
          fail(i, std::string("connect: ") + std::strerror(err));
          continue;
        }
        s.connected = true;
        ssize_t w = ::send(s.fd.get(), payload.data(), payload.size(), MSG_NOSIGNAL);
        if (w != static_cast<ssize_t>(payload.size())) {
          fail(i, "send");
          continue;
        }
        s.sent = payload.size();
        ep.mod(s.fd.get(), EPOLLIN, i);
        continue;
      }
      ssize_t r = ::recv(s.fd.get(), buf.data(), buf.size(), 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        fail(i, r == 0 ? "EOF before the echo" : std::string("recv: ") + std::strerror(errno));
        continue;
      }
      s.got += static_cast<size_t>(r);
      if (s.got < size) continue;
      auto now = Clock::now();
      ++completed;
      if (now >= window_start) {
        ++counted;
        latencies.push_back(
            static_cast<double>(duration_cast<microseconds>(now - s.start).count()));
      }
      s.fd.reset();  // close: FIN
      if (now < end) launch(i);
    }
    auto now = Clock::now();
    for (size_t i = 0; i < concurrency; ++i) {
      if (slots[i].fd.valid() && now - slots[i].start > slot_timeout) {
        fail(i, "connection timed out");
      }
      if (!slots[i].fd.valid() && now < end) launch(i);
    }
  }
  const double window_s = std::chrono::duration<double>(end - window_start).count();
  nlohmann::json out = {{"event", "done"},
                        {"completed", completed},
                        {"counted", counted},
                        {"errors", errors},
                        {"first_error", first_error},
                        {"window_s", window_s},
                        {"per_second", static_cast<double>(counted) / window_s},
                        {"latency", latencySummary(std::move(latencies))}};
  printJson(out);
  return counted > 0 && errors * 100 <= completed ? kExitOk : kExitFailed;
}

// ---- http-load --------------------------------------------------------------------------

struct HttpConn {
  UniqueFd fd;
  bool connected = false;
  bool busy = false;
  Clock::time_point due;  // when the request in flight was due
  std::string in;
};

// Length of a complete response at the front of `in` (headers + Content-Length body), 0 when
// incomplete, nullopt when malformed.
std::optional<size_t> completeResponse(const std::string& in) {
  auto end = in.find("\r\n\r\n");
  if (end == std::string::npos) return size_t{0};
  if (in.rfind("HTTP/1.1 200", 0) != 0) return std::nullopt;
  std::string_view head(in.data(), end);
  auto pos = head.find("Content-Length:");
  if (pos == std::string_view::npos) return std::nullopt;
  pos += std::string_view("Content-Length:").size();
  while (pos < head.size() && head[pos] == ' ') ++pos;
  size_t length = 0;
  auto [p, ec] = std::from_chars(head.data() + pos, head.data() + head.size(), length);
  if (ec != std::errc()) return std::nullopt;
  size_t total = end + 4 + length;
  return in.size() >= total ? total : 0;
}

int httpLoad(const Flags& flags) {
  const sockaddr_in to = toSockaddr(flags.address("to"));
  const uint64_t rate = flags.number("rate");
  const auto duration = milliseconds(flags.number("duration-ms"));
  const size_t connections = flags.number("connections", 16);
  if (rate == 0 || connections == 0) usage("--rate and --connections must be positive");
  const std::string request = "GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n";
  const auto interval = std::chrono::nanoseconds(static_cast<int64_t>(1000000000ULL / rate));
  std::vector<char> buf(kIoBuffer);

  Epoll ep;
  std::vector<HttpConn> conns(connections);
  uint64_t errors = 0;
  std::string first_error;
  auto open = [&](size_t i) {
    conns[i] = HttpConn{};
    conns[i].fd = startConnect(to);
    if (!conns[i].fd.valid()) return;
    ep.add(conns[i].fd.get(), EPOLLOUT, i);
  };
  auto fail = [&](size_t i, const std::string& why) {
    ++errors;
    if (first_error.empty()) first_error = why;
    ep.del(conns[i].fd.get());
    open(i);  // the request it carried is lost (counted as an error)
  };
  for (size_t i = 0; i < connections; ++i) open(i);

  // Connect first, so that connection setup is not in the measured latencies.
  std::vector<epoll_event> events(kMaxEvents);
  const auto connect_deadline = Clock::now() + std::chrono::seconds(10);
  size_t connected = 0;
  while (connected < connections && Clock::now() < connect_deadline) {
    int n = ep.wait(events.data(), kMaxEvents, milliseconds(50));
    for (int e = 0; e < n; ++e) {
      size_t i = events[e].data.u64;
      if (conns[i].connected) continue;
      if (socketError(conns[i].fd.get()) != 0) {
        fail(i, "connect failed");
        continue;
      }
      conns[i].connected = true;
      ep.mod(conns[i].fd.get(), EPOLLIN, i);
      ++connected;
    }
  }
  if (connected < connections) {
    printJson({{"event", "done"}, {"error", "could not connect"}});
    return kExitFailed;
  }

  const auto start = Clock::now();
  printJson({{"event", "started"}});
  const auto end = start + duration;
  int64_t scheduled = 0;
  uint64_t completed = 0;
  std::deque<Clock::time_point> backlog;  // due, waiting for a free connection
  std::vector<double> latencies;
  auto dispatch = [&]() {
    for (size_t i = 0; i < connections && !backlog.empty(); ++i) {
      HttpConn& c = conns[i];
      if (!c.connected || c.busy) continue;
      c.due = backlog.front();
      backlog.pop_front();
      ssize_t w = ::send(c.fd.get(), request.data(), request.size(), MSG_NOSIGNAL);
      if (w != static_cast<ssize_t>(request.size())) {
        fail(i, "send");
        continue;
      }
      c.busy = true;
    }
  };
  const auto drain_deadline = end + std::chrono::seconds(5);
  for (;;) {
    auto now = Clock::now();
    while (now < end && start + interval * scheduled <= now) {
      backlog.push_back(start + interval * scheduled);
      ++scheduled;
    }
    dispatch();
    bool busy = !backlog.empty() ||
                std::any_of(conns.begin(), conns.end(), [](const HttpConn& c) { return c.busy; });
    if (now >= end && (!busy || now >= drain_deadline)) break;
    auto next = now < end ? start + interval * scheduled : now + milliseconds(50);
    int n = ep.wait(events.data(), kMaxEvents, duration_cast<microseconds>(next - now));
    for (int e = 0; e < n; ++e) {
      size_t i = events[e].data.u64;
      HttpConn& c = conns[i];
      if (!c.connected) {  // a reconnect after a failure
        if (socketError(c.fd.get()) != 0) {
          fail(i, "reconnect failed");
          continue;
        }
        c.connected = true;
        ep.mod(c.fd.get(), EPOLLIN, i);
        continue;
      }
      ssize_t r = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        fail(i, "connection closed");
        continue;
      }
      c.in.append(buf.data(), static_cast<size_t>(r));
      auto len = completeResponse(c.in);
      if (!len) {
        fail(i, "malformed response");
        continue;
      }
      if (*len == 0) continue;
      c.in.erase(0, *len);
      if (!c.busy) {
        fail(i, "unsolicited response");
        continue;
      }
      c.busy = false;
      ++completed;
      latencies.push_back(
          static_cast<double>(duration_cast<microseconds>(Clock::now() - c.due).count()));
    }
  }
  const double seconds = std::chrono::duration<double>(duration).count();
  printJson({{"event", "done"},
             {"scheduled", scheduled},
             {"completed", completed},
             {"errors", errors},
             {"first_error", first_error},
             {"achieved_rps", static_cast<double>(completed) / seconds},
             {"latency", latencySummary(std::move(latencies))}});
  return completed > 0 && completed + errors >= static_cast<uint64_t>(scheduled) &&
                 errors * 100 <= static_cast<uint64_t>(scheduled)
             ? kExitOk
             : kExitFailed;
}

// ---- hold -------------------------------------------------------------------------------

int hold(const Flags& flags) {
  const sockaddr_in to = toSockaddr(flags.address("to"));
  const size_t count = flags.number("count");
  const size_t concurrency = flags.number("concurrency", 128);
  const auto hold_for = milliseconds(flags.number("hold-ms", 600000));
  if (count == 0 || concurrency == 0) usage("--count and --concurrency must be positive");
  raiseFdLimit();
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd sigfd(::signalfd(-1, &mask, SFD_CLOEXEC));

  struct Slot {
    UniqueFd fd;
    bool connected = false;
    bool done = false;
    Clock::time_point start;
  };
  std::vector<Slot> slots(count);
  Epoll ep;
  size_t next = 0;
  size_t in_progress = 0;
  size_t open = 0;
  uint64_t errors = 0;
  std::string first_error;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(120);
  char byte = 'h';
  std::vector<epoll_event> events(kMaxEvents);
  auto fail = [&](size_t i, const std::string& why) {
    ++errors;
    if (first_error.empty()) first_error = why;
    ep.del(slots[i].fd.get());
    slots[i].fd.reset();
    --in_progress;
  };
  while ((open + errors < count) && Clock::now() < deadline) {
    while (next < count && in_progress < concurrency) {
      Slot& s = slots[next];
      s.start = Clock::now();
      s.fd = startConnect(to);
      ++in_progress;
      if (!s.fd.valid()) {
        fail(next++, std::string("connect: ") + std::strerror(errno));
        continue;
      }
      ep.add(s.fd.get(), EPOLLOUT, next);
      ++next;
    }
    int n = ep.wait(events.data(), kMaxEvents, milliseconds(50));
    for (int e = 0; e < n; ++e) {
      size_t i = events[e].data.u64;
      Slot& s = slots[i];
      if (!s.fd.valid() || s.done) continue;
      if (!s.connected) {
        if (int err = socketError(s.fd.get()); err != 0) {
          fail(i, std::string("connect: ") + std::strerror(err));
          continue;
        }
        s.connected = true;
        if (::send(s.fd.get(), &byte, 1, MSG_NOSIGNAL) != 1) {
          fail(i, "send");
          continue;
        }
        ep.mod(s.fd.get(), EPOLLIN, i);
        continue;
      }
      char echo = 0;
      ssize_t r = ::recv(s.fd.get(), &echo, 1, 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r != 1) {
        fail(i, "no echo");
        continue;
      }
      s.done = true;
      ep.del(s.fd.get());  // idle from now on; nobody polls it
      --in_progress;
      ++open;
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  printJson({{"event", "ready"},
             {"open", open},
             {"errors", errors},
             {"first_error", first_error},
             {"open_seconds", elapsed}});
  pollfd pfd{sigfd.get(), POLLIN, 0};
  ::poll(&pfd, 1, static_cast<int>(hold_for.count()));
  slots.clear();  // closes every connection (FIN)
  printJson({{"event", "done"}, {"open", open}});
  return open == count ? kExitOk : kExitFailed;
}

// ---- probe ------------------------------------------------------------------------------

bool echoOnce(const sockaddr_in& to, milliseconds timeout) {
  UniqueFd fd = startConnect(to);
  if (!fd.valid()) return false;
  pollfd pfd{fd.get(), POLLOUT, 0};
  if (::poll(&pfd, 1, static_cast<int>(timeout.count())) != 1 || socketError(fd.get()) != 0) {
    return false;
  }
  char byte = 'p';
  if (::send(fd.get(), &byte, 1, MSG_NOSIGNAL) != 1) return false;
  pfd = {fd.get(), POLLIN, 0};
  if (::poll(&pfd, 1, static_cast<int>(timeout.count())) != 1) return false;
  char echo = 0;
  return ::recv(fd.get(), &echo, 1, 0) == 1 && echo == byte;
}

int probe(const Flags& flags) {
  const sockaddr_in to = toSockaddr(flags.address("to"));
  const auto deadline = Clock::now() + milliseconds(flags.number("timeout-ms", 10000));
  int attempts = 0;
  while (Clock::now() < deadline) {
    ++attempts;
    if (echoOnce(to, milliseconds(2000))) {
      printJson({{"event", "done"}, {"ok", true}, {"attempts", attempts}});
      return kExitOk;
    }
    ::usleep(50 * 1000);
  }
  printJson({{"event", "done"}, {"ok", false}, {"attempts", attempts}});
  return kExitFailed;
}

int run(int argc, char** argv) {
  if (argc < 2) usage("missing command");
  std::string cmd = argv[1];
  ::signal(SIGPIPE, SIG_IGN);
  if (cmd == "echo-server") return serve(Flags(argc, argv, {"port"}), false);
  if (cmd == "http-server") return serve(Flags(argc, argv, {"port", "body"}), true);
  if (cmd == "conn-rate") {
    return connRate(Flags(argc, argv, {"to", "duration-ms", "concurrency", "size"}));
  }
  if (cmd == "http-load") {
    return httpLoad(Flags(argc, argv, {"to", "rate", "duration-ms", "connections"}));
  }
  if (cmd == "hold") return hold(Flags(argc, argv, {"to", "count", "concurrency", "hold-ms"}));
  if (cmd == "probe") return probe(Flags(argc, argv, {"to", "timeout-ms"}));
  usage("unknown command '" + cmd + "'");
}

}  // namespace
}  // namespace nodemesh::bench::loadgen

int main(int argc, char** argv) {
  try {
    return nodemesh::bench::loadgen::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nm-loadgen: %s\n", e.what());
    return 1;
  }
}
