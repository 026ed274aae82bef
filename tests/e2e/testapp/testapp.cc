// nm-testapp: a small blocking TCP tool for end-to-end tests. It plays the application in a
// pod: the server and the client each print JSON lines on stdout that tests parse, and the
// payload is a deterministic stream (stream.h) so any corruption or misdelivery is detected.
//
//   nm-testapp serve --port P [--bind IP] [--count N] [--timeout-ms T] [--parallel N]
//                    [--delay-ms D]   (wait D ms before replying: a slow endpoint)
//   nm-testapp connect --to IP:PORT --send N --expect M [--seed S] [--bind IP] [--timeout-ms T]
//                      [--v4-mapped 1]   (IPv4 destination through an AF_INET6 socket)
//                      [--rate BYTES]    (pace the upload at BYTES per second)
//   nm-testapp connect-many --to IP:PORT --count N [--send N] [--expect M] [--seed S]
//                           [--timeout-ms T] [--parallel P | --concurrency C]
//
// serve --parallel N handles up to N connections at once (a thread each); the default, 1,
// serves them one after the other. Either way it prints one "conn" line per connection.
// connect-many --parallel P runs the connections in waves of P threads: every connection of a
// wave is established before any of them transfers (a barrier), so P connections are truly
// open at the same time; "connected_together" reports the largest such wave.
// connect-many --concurrency C instead keeps C connections going: C threads each run
// connections back to back until N have been made (no waves, like a steady client pool;
// "connected_together" is then 0).
//
// Sizes accept K/M/G suffixes (binary). Exit status: 0 success, 1 a transfer failed,
// 2 usage error.

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
namespace {

constexpr size_t kBufferSize = 256 * 1024;
constexpr size_t kMinBufferSize = 16 * 1024;
// serve --parallel and connect-many --parallel: a thread per connection, so keep it sane.
constexpr uint32_t kMaxParallel = 1024;
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Buffers no larger than the transfer needs: with hundreds of connections in parallel,
// 512 KiB of zeroed buffers each would be most of the memory a small test machine has.
size_t bufferSizeFor(uint64_t bytes) {
  return static_cast<size_t>(std::clamp<uint64_t>(bytes, kMinBufferSize, kBufferSize));
}

// Lines from concurrent connections must not interleave.
std::mutex print_mutex;

void printJson(const nlohmann::json& j) {
  std::lock_guard lock(print_mutex);
  std::string line = j.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

[[noreturn]] void usage(const std::string& why) {
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

std::string errnoText(const std::string& what, int err = errno) {
  return what + ": " + std::strerror(err);
}

// "--key value" pairs after the subcommand.
std::map<std::string, std::string> parseFlags(int argc, char** argv, int first,
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

uint64_t parseSize(const std::string& flag, const std::string& text) {
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

uint32_t parseU32(const std::map<std::string, std::string>& flags, const std::string& flag,
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
Endpoint makeEndpoint(const IpAddress& ip, uint16_t port, bool v4_mapped = false) {
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

std::string formatSockaddr(const sockaddr_storage& ss) {
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

std::string localAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return formatSockaddr(ss);
}

std::string peerAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return formatSockaddr(ss);
}

void setIoTimeout(int fd, int timeout_ms) {
  timeval tv{};
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// Reads up to n bytes; 0 on EOF, -1 with errno on error (EAGAIN means the timeout expired).
ssize_t readSome(int fd, uint8_t* buf, size_t n) {
  for (;;) {
    ssize_t r = ::recv(fd, buf, n, 0);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

// Reads exactly n bytes unless EOF comes first; returns the count read, or -1 on error.
ssize_t readFull(int fd, uint8_t* buf, size_t n) {
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
uint64_t sendStream(int fd, PrngStream& stream, uint64_t count, std::vector<uint8_t>& buf,
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
ReceiveResult receiveStream(int fd, PrngStream& stream, std::vector<uint8_t>& buf,
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

// One accepted connection: reads the header and the client's stream, checks it, replies, and
// returns the "conn" event (error empty when everything matched).
nlohmann::json handleConnection(UniqueFd conn, int timeout_ms, uint32_t delay_ms) {
  setIoTimeout(conn.get(), timeout_ms);
  nlohmann::json event = {
      {"event", "conn"}, {"local", localAddress(conn.get())}, {"peer", peerAddress(conn.get())}};
  std::string error;
  uint8_t raw_header[kHeaderSize];
  ssize_t got = readFull(conn.get(), raw_header, kHeaderSize);
  std::optional<StreamHeader> header;
  ReceiveResult rx;
  if (got < 0) {
    error = errnoText("read header");
  } else if (static_cast<size_t>(got) < kHeaderSize) {
    error = "EOF after " + std::to_string(got) + " header bytes";
  } else if (!(header = StreamHeader::decode(raw_header))) {
    error = "bad magic in header";
  }
  std::vector<uint8_t> buf;
  if (header.has_value()) {
    buf.resize(bufferSizeFor(std::max(header->client_bytes, header->server_bytes)));
    std::vector<uint8_t> scratch(buf.size());
    PrngStream expected(header->seed);
    rx = receiveStream(conn.get(), expected, buf, scratch);
    error = rx.error;
    if (error.empty() && rx.received != header->client_bytes) {
      error = "received " + std::to_string(rx.received) + " bytes, header announced " +
              std::to_string(header->client_bytes);
    }
  }
  bool received_ok = header.has_value() && error.empty();
  if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  uint64_t sent = 0;
  if (header.has_value()) {
    PrngStream reply(static_cast<uint64_t>(header->seed) + 1);
    std::string send_error;
    sent = sendStream(conn.get(), reply, header->server_bytes, buf, &send_error);
    if (error.empty()) error = send_error;
  }
  conn.reset();
  event["received"] = rx.received;
  event["received_ok"] = received_ok;
  event["sent"] = sent;
  event["seed"] = header ? header->seed : 0;
  event["error"] = error;
  return event;
}

// Bounds the connections handled at once by serve --parallel and waits for the last one.
class HandlerPool {
 public:
  explicit HandlerPool(uint32_t limit) : limit_(limit) {}
  ~HandlerPool() { waitIdle(); }
  HandlerPool(const HandlerPool&) = delete;
  HandlerPool& operator=(const HandlerPool&) = delete;
  HandlerPool(HandlerPool&&) = delete;
  HandlerPool& operator=(HandlerPool&&) = delete;

  // Blocks while `limit` handlers run, then runs fn on a new detached thread.
  template <typename Fn>
  void run(Fn fn) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return active_ < limit_; });
    ++active_;
    lock.unlock();
    std::thread([this, fn = std::move(fn)]() mutable {
      fn();
      std::lock_guard guard(mu_);
      --active_;
      cv_.notify_all();
    }).detach();
  }

  void waitIdle() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return active_ == 0; });
  }

 private:
  const uint32_t limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint32_t active_ = 0;
};

int serve(int argc, char** argv) {
  auto flags =
      parseFlags(argc, argv, 2, {"port", "bind", "count", "timeout-ms", "parallel", "delay-ms"});
  if (!flags.count("port")) usage("serve needs --port");
  uint32_t port = parseU32(flags, "port", 0);
  if (port > 65535) usage("--port out of range");
  uint32_t count = parseU32(flags, "count", 1);
  int timeout_ms = static_cast<int>(parseU32(flags, "timeout-ms", 60000));
  uint32_t parallel = parseU32(flags, "parallel", 1);
  if (parallel == 0 || parallel > kMaxParallel) {
    usage("--parallel must be 1.." + std::to_string(kMaxParallel));
  }
  const uint32_t delay_ms = parseU32(flags, "delay-ms", 0);
  std::string bind_text = flags.count("bind") ? flags["bind"] : "0.0.0.0";
  auto bind_ip = IpAddress::parse(bind_text);
  if (!bind_ip) usage(bind_ip.error().message);

  Endpoint ep = makeEndpoint(*bind_ip, static_cast<uint16_t>(port));
  UniqueFd listener(::socket(ep.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener.valid()) {
    std::fprintf(stderr, "nm-testapp: %s\n", errnoText("socket").c_str());
    return kExitFailed;
  }
  int one = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // A backlog for bursts of parallel clients (the kernel caps it at net.core.somaxconn).
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&ep.addr), ep.len) != 0 ||
      ::listen(listener.get(), 1024) != 0) {
    std::fprintf(stderr, "nm-testapp: %s\n",
                 errnoText("bind/listen " + bind_text + ":" + std::to_string(port)).c_str());
    return kExitFailed;
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len);
  uint16_t bound_port = bound.ss_family == AF_INET
                            ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                            : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  printJson({{"event", "listening"}, {"port", bound_port}, {"bind", bind_text}});

  std::atomic<bool> all_ok = true;
  auto handle = [&all_ok, timeout_ms, delay_ms](UniqueFd conn) {
    nlohmann::json event = handleConnection(std::move(conn), timeout_ms, delay_ms);
    if (!event["error"].get<std::string>().empty()) all_ok = false;
    printJson(event);
  };
  HandlerPool pool(parallel);
  uint32_t served = 0;
  while (count == 0 || served < count) {
    int c = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::fprintf(stderr, "nm-testapp: %s\n", errnoText("accept").c_str());
      pool.waitIdle();
      return kExitFailed;
    }
    ++served;
    if (parallel == 1) {
      handle(UniqueFd(c));
    } else {
      pool.run([&handle, c] { handle(UniqueFd(c)); });
    }
  }
  pool.waitIdle();
  return all_ok ? kExitOk : kExitFailed;
}

struct ConnectOptions {
  Endpoint to;
  std::optional<Endpoint> bind;
  uint32_t send = 0;
  uint32_t expect = 0;
  uint32_t seed = 1;
  int timeout_ms = 10000;
  uint64_t rate = 0;  // upload bytes per second, 0: as fast as possible
};

struct ConnectResult {
  std::string local;
  std::string peer;
  uint64_t sent = 0;
  uint64_t received = 0;
  std::string error;
  bool ok() const { return error.empty(); }
};

// Non-blocking connect bounded by timeout_ms, then back to blocking with per-call timeouts.
// Returns an invalid fd with res->error set on failure.
UniqueFd openConnection(const ConnectOptions& opts, ConnectResult* res) {
  UniqueFd sock(::socket(opts.to.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock.valid()) {
    res->error = errnoText("socket");
    return UniqueFd();
  }
  if (opts.bind &&
      ::bind(sock.get(), reinterpret_cast<const sockaddr*>(&opts.bind->addr), opts.bind->len)) {
    res->error = errnoText("bind");
    return UniqueFd();
  }
  if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&opts.to.addr), opts.to.len) != 0) {
    if (errno != EINPROGRESS) {
      res->error = errnoText("connect");
      return UniqueFd();
    }
    pollfd pfd{sock.get(), POLLOUT, 0};
    int n;
    do {
      n = ::poll(&pfd, 1, opts.timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
      res->error = "connect timed out";
      return UniqueFd();
    }
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      res->error = errnoText("connect", err);
      return UniqueFd();
    }
  }
  int flags = ::fcntl(sock.get(), F_GETFL);
  ::fcntl(sock.get(), F_SETFL, flags & ~O_NONBLOCK);
  setIoTimeout(sock.get(), opts.timeout_ms);
  res->local = localAddress(sock.get());
  res->peer = peerAddress(sock.get());
  return sock;
}

// The header, `send` bytes of the client stream, FIN, then checks the reply until EOF.
void transfer(int fd, const ConnectOptions& opts, ConnectResult* res) {
  StreamHeader header{opts.seed, opts.send, opts.expect};
  auto raw = header.encode();
  if (::send(fd, raw.data(), raw.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(raw.size())) {
    res->error = errnoText("send header");
    return;
  }
  std::vector<uint8_t> buf(bufferSizeFor(std::max(opts.send, opts.expect)));
  std::vector<uint8_t> scratch(buf.size());
  PrngStream out(opts.seed);
  res->sent = sendStream(fd, out, opts.send, buf, &res->error, opts.rate);
  if (!res->error.empty()) return;
  if (::shutdown(fd, SHUT_WR) != 0) {
    res->error = errnoText("shutdown");
    return;
  }
  PrngStream in(static_cast<uint64_t>(opts.seed) + 1);
  ReceiveResult rx = receiveStream(fd, in, buf, scratch);
  res->received = rx.received;
  res->error = rx.error;
  if (res->error.empty() && rx.received != opts.expect) {
    res->error = "received " + std::to_string(rx.received) + " bytes, expected " +
                 std::to_string(opts.expect);
  }
}

ConnectResult connectOnce(const ConnectOptions& opts) {
  ConnectResult res;
  UniqueFd sock = openConnection(opts, &res);
  if (sock.valid()) transfer(sock.get(), opts, &res);
  return res;
}

ConnectOptions parseConnectOptions(std::map<std::string, std::string>& flags,
                                   uint64_t default_size) {
  if (!flags.count("to")) usage("--to IP:PORT is required");
  auto to = SocketAddress::parse(flags["to"]);
  if (!to) usage(to.error().message);
  ConnectOptions opts;
  opts.to = makeEndpoint(to->ip, to->port, flags.count("v4-mapped") && flags["v4-mapped"] == "1");
  if (flags.count("bind")) {
    auto ip = IpAddress::parse(flags["bind"]);
    if (!ip) usage(ip.error().message);
    opts.bind = makeEndpoint(*ip, 0);
  }
  opts.send = parseU32(flags, "send", default_size);
  opts.expect = parseU32(flags, "expect", default_size);
  opts.seed = parseU32(flags, "seed", 1);
  opts.timeout_ms = static_cast<int>(parseU32(flags, "timeout-ms", 10000));
  if (flags.count("rate")) opts.rate = parseSize("rate", flags["rate"]);
  return opts;
}

int connectCommand(int argc, char** argv) {
  auto flags = parseFlags(
      argc, argv, 2, {"to", "send", "expect", "seed", "bind", "timeout-ms", "v4-mapped", "rate"});
  if (!flags.count("send") || !flags.count("expect")) usage("connect needs --send and --expect");
  ConnectOptions opts = parseConnectOptions(flags, 0);
  const auto start = std::chrono::steady_clock::now();
  ConnectResult res = connectOnce(opts);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  printJson(
      {{"event", "done"},
       {"local", res.local},
       {"peer", res.peer},
       {"sent", res.sent},
       {"received", res.received},
       {"ok", res.ok()},
       {"error", res.error},
       {"elapsed_ms", std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()}});
  return res.ok() ? kExitOk : kExitFailed;
}

// One wave of connect-many --parallel: n threads connect, wait until every one of them has
// connected (or failed to), then all transfer at once. Returns how many were connected
// together at the barrier.
uint32_t runWave(const ConnectOptions& base, uint32_t first, uint32_t n,
                 std::vector<ConnectResult>& results) {
  std::barrier all_connected(static_cast<std::ptrdiff_t>(n));
  std::atomic<uint32_t> connected = 0;
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (uint32_t k = 0; k < n; ++k) {
    threads.emplace_back([&, k] {
      ConnectOptions opts = base;
      opts.seed = base.seed + 2 * (first + k);  // +2: the reply of connection i uses seed + 1
      ConnectResult& res = results[first + k];
      UniqueFd sock = openConnection(opts, &res);
      if (sock.valid()) connected.fetch_add(1);
      all_connected.arrive_and_wait();
      if (sock.valid()) transfer(sock.get(), opts, &res);
    });
  }
  for (auto& t : threads) t.join();
  return connected.load();
}

int connectMany(int argc, char** argv) {
  auto flags = parseFlags(
      argc, argv, 2,
      {"to", "count", "send", "expect", "seed", "timeout-ms", "parallel", "concurrency"});
  if (!flags.count("count")) usage("connect-many needs --count");
  uint32_t count = parseU32(flags, "count", 0);
  uint32_t parallel = parseU32(flags, "parallel", 1);
  if (parallel == 0 || parallel > kMaxParallel) {
    usage("--parallel must be 1.." + std::to_string(kMaxParallel));
  }
  const uint32_t concurrency = parseU32(flags, "concurrency", 0);
  if (concurrency > kMaxParallel) {
    usage("--concurrency must be 1.." + std::to_string(kMaxParallel));
  }
  if (concurrency > 0 && flags.count("parallel")) {
    usage("--parallel and --concurrency exclude each other");
  }
  ConnectOptions opts = parseConnectOptions(flags, 1024);
  const auto start = std::chrono::steady_clock::now();
  std::vector<ConnectResult> results(count);
  uint32_t connected_together = 0;
  if (concurrency > 0) {
    std::atomic<uint32_t> next = 0;
    std::vector<std::thread> threads;
    for (uint32_t t = 0; t < std::min(concurrency, count); ++t) {
      threads.emplace_back([&] {
        for (uint32_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) {
          ConnectOptions one = opts;
          one.seed = opts.seed + 2 * i;
          results[i] = connectOnce(one);
        }
      });
    }
    for (auto& t : threads) t.join();  // connected_together stays 0: there are no waves
  } else if (parallel == 1) {
    for (uint32_t i = 0; i < count; ++i) {
      ConnectOptions one = opts;
      one.seed = opts.seed + 2 * i;  // +2: the reply stream of connection i uses seed + 1
      results[i] = connectOnce(one);
    }
    connected_together = count > 0 ? 1 : 0;
  } else {
    for (uint32_t first = 0; first < count; first += parallel) {
      uint32_t n = std::min(parallel, count - first);
      connected_together = std::max(connected_together, runWave(opts, first, n, results));
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  uint32_t ok_count = 0;
  nlohmann::json errors = nlohmann::json::array();
  for (uint32_t i = 0; i < count; ++i) {
    if (results[i].ok()) {
      ++ok_count;
    } else if (errors.size() < 5) {
      errors.push_back("connection " + std::to_string(i) + ": " + results[i].error);
    }
  }
  printJson(
      {{"event", "many"},
       {"count", count},
       {"parallel", parallel},
       {"ok_count", ok_count},
       {"failed", count - ok_count},
       {"connected_together", connected_together},
       {"errors", errors},
       {"ok", ok_count == count},
       {"elapsed_ms", std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()}});
  return ok_count == count ? kExitOk : kExitFailed;
}

}  // namespace
}  // namespace nodemesh::testapp

int main(int argc, char** argv) {
  using namespace nodemesh::testapp;  // NOLINT(google-build-using-namespace)
  ::signal(SIGPIPE, SIG_IGN);
  try {
    if (argc < 2) usage("missing command");
    std::string_view command = argv[1];
    if (command == "serve") return serve(argc, argv);
    if (command == "connect") return connectCommand(argc, argv);
    if (command == "connect-many") return connectMany(argc, argv);
    usage("unknown command '" + std::string(command) + "'");
  } catch (const std::exception& e) {
    // Errors are reported as JSON events; this is for what a library still throws
    // (std::bad_alloc, std::system_error, a JSON error), which would otherwise abort.
    std::fprintf(stderr, "nm-testapp: %s\n", e.what());
    return kExitFailed;
  }
}
