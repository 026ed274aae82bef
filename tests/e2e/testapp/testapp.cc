// nm-testapp: a small blocking TCP tool for end-to-end tests. It plays the application in a
// pod: the server and the client each print JSON lines on stdout that tests parse, and the
// payload is a deterministic stream (stream.h) so any corruption or misdelivery is detected.
//
//   nm-testapp serve --port P [--bind IP] [--count N] [--timeout-ms T]
//   nm-testapp connect --to IP:PORT --send N --expect M [--seed S] [--bind IP] [--timeout-ms T]
//                      [--v4-mapped 1]   (IPv4 destination through an AF_INET6 socket)
//   nm-testapp connect-many --to IP:PORT --count N [--send N] [--expect M] [--seed S]
//                           [--timeout-ms T]
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

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/ip_address.h"
#include "tests/e2e/testapp/stream.h"

namespace nodemesh::e2e::testapp {
namespace {

constexpr size_t kBufferSize = 256 * 1024;
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

void printJson(const nlohmann::json& j) {
  std::string line = j.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "nm-testapp: %s\n"
               "usage:\n"
               "  nm-testapp serve --port P [--bind IP] [--count N (0: forever)] "
               "[--timeout-ms T]\n"
               "  nm-testapp connect --to IP:PORT --send N --expect M [--seed S] [--bind IP] "
               "[--timeout-ms T] [--v4-mapped 1]\n"
               "  nm-testapp connect-many --to IP:PORT --count N [--send N] [--expect M] "
               "[--seed S] [--timeout-ms T]\n",
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
uint64_t sendStream(int fd, PrngStream& stream, uint64_t count, std::vector<uint8_t>& buf,
                    std::string* error) {
  uint64_t sent = 0;
  while (sent < count) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(buf.size(), count - sent));
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

int serve(int argc, char** argv) {
  auto flags = parseFlags(argc, argv, 2, {"port", "bind", "count", "timeout-ms"});
  if (!flags.count("port")) usage("serve needs --port");
  uint32_t port = parseU32(flags, "port", 0);
  if (port > 65535) usage("--port out of range");
  uint32_t count = parseU32(flags, "count", 1);
  int timeout_ms = static_cast<int>(parseU32(flags, "timeout-ms", 60000));
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
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&ep.addr), ep.len) != 0 ||
      ::listen(listener.get(), 128) != 0) {
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

  std::vector<uint8_t> buf(kBufferSize);
  std::vector<uint8_t> scratch(kBufferSize);
  bool all_ok = true;
  uint32_t served = 0;
  while (count == 0 || served < count) {
    int c = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::fprintf(stderr, "nm-testapp: %s\n", errnoText("accept").c_str());
      return kExitFailed;
    }
    ++served;
    UniqueFd conn(c);
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
    } else {
      PrngStream expected(header->seed);
      rx = receiveStream(conn.get(), expected, buf, scratch);
      error = rx.error;
      if (error.empty() && rx.received != header->client_bytes) {
        error = "received " + std::to_string(rx.received) + " bytes, header announced " +
                std::to_string(header->client_bytes);
      }
    }
    bool received_ok = header.has_value() && error.empty();
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
    printJson(event);
    all_ok = all_ok && error.empty();
  }
  return all_ok ? kExitOk : kExitFailed;
}

struct ConnectOptions {
  Endpoint to;
  std::optional<Endpoint> bind;
  uint32_t send = 0;
  uint32_t expect = 0;
  uint32_t seed = 1;
  int timeout_ms = 10000;
};

struct ConnectResult {
  std::string local;
  std::string peer;
  uint64_t sent = 0;
  uint64_t received = 0;
  std::string error;
  bool ok() const { return error.empty(); }
};

// Non-blocking connect bounded by timeout_ms, then blocking I/O with per-call timeouts.
ConnectResult connectOnce(const ConnectOptions& opts) {
  ConnectResult res;
  UniqueFd sock(::socket(opts.to.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock.valid()) {
    res.error = errnoText("socket");
    return res;
  }
  if (opts.bind &&
      ::bind(sock.get(), reinterpret_cast<const sockaddr*>(&opts.bind->addr), opts.bind->len)) {
    res.error = errnoText("bind");
    return res;
  }
  if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&opts.to.addr), opts.to.len) != 0) {
    if (errno != EINPROGRESS) {
      res.error = errnoText("connect");
      return res;
    }
    pollfd pfd{sock.get(), POLLOUT, 0};
    int n;
    do {
      n = ::poll(&pfd, 1, opts.timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
      res.error = "connect timed out";
      return res;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      res.error = errnoText("connect", err);
      return res;
    }
  }
  int flags = ::fcntl(sock.get(), F_GETFL);
  ::fcntl(sock.get(), F_SETFL, flags & ~O_NONBLOCK);
  setIoTimeout(sock.get(), opts.timeout_ms);
  res.local = localAddress(sock.get());
  res.peer = peerAddress(sock.get());

  StreamHeader header{opts.seed, opts.send, opts.expect};
  auto raw = header.encode();
  if (::send(sock.get(), raw.data(), raw.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(raw.size())) {
    res.error = errnoText("send header");
    return res;
  }
  std::vector<uint8_t> buf(kBufferSize);
  std::vector<uint8_t> scratch(kBufferSize);
  PrngStream out(opts.seed);
  res.sent = sendStream(sock.get(), out, opts.send, buf, &res.error);
  if (!res.error.empty()) return res;
  if (::shutdown(sock.get(), SHUT_WR) != 0) {
    res.error = errnoText("shutdown");
    return res;
  }
  PrngStream in(static_cast<uint64_t>(opts.seed) + 1);
  ReceiveResult rx = receiveStream(sock.get(), in, buf, scratch);
  res.received = rx.received;
  res.error = rx.error;
  if (res.error.empty() && rx.received != opts.expect) {
    res.error = "received " + std::to_string(rx.received) + " bytes, expected " +
                std::to_string(opts.expect);
  }
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
  return opts;
}

int connectCommand(int argc, char** argv) {
  auto flags = parseFlags(argc, argv, 2,
                          {"to", "send", "expect", "seed", "bind", "timeout-ms", "v4-mapped"});
  if (!flags.count("send") || !flags.count("expect")) usage("connect needs --send and --expect");
  ConnectOptions opts = parseConnectOptions(flags, 0);
  ConnectResult res = connectOnce(opts);
  printJson({{"event", "done"},
             {"local", res.local},
             {"peer", res.peer},
             {"sent", res.sent},
             {"received", res.received},
             {"ok", res.ok()},
             {"error", res.error}});
  return res.ok() ? kExitOk : kExitFailed;
}

int connectMany(int argc, char** argv) {
  auto flags = parseFlags(argc, argv, 2, {"to", "count", "send", "expect", "seed", "timeout-ms"});
  if (!flags.count("count")) usage("connect-many needs --count");
  uint32_t count = parseU32(flags, "count", 0);
  ConnectOptions opts = parseConnectOptions(flags, 1024);
  uint32_t ok_count = 0;
  nlohmann::json errors = nlohmann::json::array();
  const uint32_t base_seed = opts.seed;
  for (uint32_t i = 0; i < count; ++i) {
    opts.seed = base_seed + 2 * i;  // +2: the reply stream of connection i uses seed + 1
    ConnectResult res = connectOnce(opts);
    if (res.ok()) {
      ++ok_count;
    } else if (errors.size() < 5) {
      errors.push_back("connection " + std::to_string(i) + ": " + res.error);
    }
  }
  printJson({{"event", "many"},
             {"count", count},
             {"ok_count", ok_count},
             {"failed", count - ok_count},
             {"errors", errors},
             {"ok", ok_count == count}});
  return ok_count == count ? kExitOk : kExitFailed;
}

}  // namespace
}  // namespace nodemesh::e2e::testapp

int main(int argc, char** argv) {
  using namespace nodemesh::e2e::testapp;  // NOLINT(google-build-using-namespace)
  ::signal(SIGPIPE, SIG_IGN);
  if (argc < 2) usage("missing command");
  std::string_view command = argv[1];
  if (command == "serve") return serve(argc, argv);
  if (command == "connect") return connectCommand(argc, argv);
  if (command == "connect-many") return connectMany(argc, argv);
  usage("unknown command '" + std::string(command) + "'");
}
