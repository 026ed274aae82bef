// nm-loadgen echo-server and http-server.

#include "bench/loadgen/loadgen_common.h"
#include "bench/loadgen/loadgen_h2_server.h"

namespace nodemesh::bench::loadgen {

namespace {

struct ServerConn {
  UniqueFd fd;
  std::string in;   // http: request bytes not yet answered
  std::string out;  // bytes not yet written
  bool want_out = false;
  std::unique_ptr<H2Server> h2;  // http: the client sent the HTTP/2 preface
};

enum class Detected { kUnknown, kHttp1, kHttp2 };

// HTTP/2 with prior knowledge starts with the preface; anything else is HTTP/1.1.
Detected detect(const std::string& in) {
  const size_t n = std::min(in.size(), kH2Preface.size());
  if (std::string_view(in.data(), n) != kH2Preface.substr(0, n)) return Detected::kHttp1;
  return n == kH2Preface.size() ? Detected::kHttp2 : Detected::kUnknown;
}

}  // namespace

// Both servers: accept everything, read, answer, write with back-pressure.
int serve(const Flags& flags, bool http) {
  const uint64_t port = flags.number("port");
  const uint64_t body_size = flags.number("body", 1024);
  if (port > 65535) usage("--port out of range");
  raiseFdLimit();
  std::string response;
  const std::string body(body_size, 'x');
  if (http) {
    response = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
               std::to_string(body_size) + "\r\n\r\n" + body;
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
          if (c.h2) {
            alive = c.h2->receive(std::string_view(buf.data(), static_cast<size_t>(r)), c.out);
            continue;
          }
          c.in.append(buf.data(), static_cast<size_t>(r));
          if (const Detected d = detect(c.in); d != Detected::kHttp1) {
            if (d == Detected::kHttp2) {
              c.h2 = std::make_unique<H2Server>(body);
              alive = c.h2->receive(c.in, c.out);
              c.in.clear();
            }
            continue;
          }
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

}  // namespace nodemesh::bench::loadgen
