// nm-testapp serve: accepts connections, checks the client stream, replies with its own.

#include "tests/e2e/testapp/testapp_common.h"

namespace nodemesh::testapp {

namespace {

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

}  // namespace

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

}  // namespace nodemesh::testapp
