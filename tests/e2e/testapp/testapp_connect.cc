// nm-testapp connect and connect-many: one checked transfer, or many (waves or a steady pool).

#include "tests/e2e/testapp/testapp_common.h"

namespace nodemesh::testapp {

namespace {

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

}  // namespace

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

int connectMany(int argc, char** argv) {
  auto flags = parseFlags(
      argc, argv, 2,
      {"to", "count", "send", "expect", "seed", "timeout-ms", "parallel", "concurrency", "rate"});
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

}  // namespace nodemesh::testapp
