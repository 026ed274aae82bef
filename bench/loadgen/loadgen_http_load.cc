// nm-loadgen http-load: HTTP/1.1 GETs at a fixed rate (open loop), latency percentiles of the
// requests due after the warm-up (--warmup-ms, default 0).

#include <cctype>
#include <functional>
#include <utility>

#include "bench/loadgen/loadgen_common.h"

namespace nodemesh::bench::loadgen {

namespace {

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
  if (in.rfind("HTTP/1.1 200 ", 0) != 0) return std::nullopt;
  // Field names are case-insensitive (RFC 9110 §5.1): HAProxy sends them lowercase.
  std::string head(in.data(), end);
  std::transform(head.begin(), head.end(), head.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto pos = head.find("\r\ncontent-length:");
  if (pos == std::string::npos) return std::nullopt;
  pos += std::string_view("\r\ncontent-length:").size();
  while (pos < head.size() && (head[pos] == ' ' || head[pos] == '\t')) ++pos;
  size_t length = 0;
  auto [p, ec] = std::from_chars(head.data() + pos, head.data() + head.size(), length);
  if (ec != std::errc()) return std::nullopt;
  size_t total = end + 4 + length;
  return in.size() >= total ? total : 0;
}

}  // namespace

int httpLoad(const Flags& flags) {
  const sockaddr_in to = toSockaddr(flags.address("to"));
  const uint64_t rate = flags.number("rate");
  const auto duration = milliseconds(flags.number("duration-ms"));
  const size_t connections = flags.number("connections", 16);
  const auto warmup = milliseconds(flags.number("warmup-ms", 0));
  if (rate == 0 || connections == 0) usage("--rate and --connections must be positive");
  if (warmup >= duration) usage("--warmup-ms must be shorter than --duration-ms");
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
  // The slowest requests, with when they were due (ms after the start): a tail that comes
  // from one stall shows as neighbours in time, a periodic one as a period.
  constexpr size_t kSlowest = 10;
  std::vector<std::pair<double, double>> slowest;  // (latency us, due ms)
  auto note_slow = [&](double us, Clock::time_point due) {
    const double due_ms = std::chrono::duration<double, std::milli>(due - start).count();
    if (slowest.size() < kSlowest) {
      slowest.emplace_back(us, due_ms);
    } else {
      auto min = std::min_element(slowest.begin(), slowest.end());
      if (us <= min->first) return;
      *min = {us, due_ms};
    }
  };
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
      const auto us =
          static_cast<double>(duration_cast<microseconds>(Clock::now() - c.due).count());
      if (c.due >= start + warmup) {
        latencies.push_back(us);
        note_slow(us, c.due);
      }
    }
  }
  std::sort(slowest.begin(), slowest.end(), std::greater<>());
  nlohmann::json slow = nlohmann::json::array();
  for (const auto& [us, due_ms] : slowest) slow.push_back({{"us", us}, {"due_ms", due_ms}});
  const double seconds = std::chrono::duration<double>(duration).count();
  printJson({{"event", "done"},
             {"scheduled", scheduled},
             {"completed", completed},
             {"errors", errors},
             {"first_error", first_error},
             {"achieved_rps", static_cast<double>(completed) / seconds},
             {"latency", latencySummary(std::move(latencies))},
             {"slowest", slow}});
  return completed > 0 && completed + errors >= static_cast<uint64_t>(scheduled) &&
                 errors * 100 <= static_cast<uint64_t>(scheduled)
             ? kExitOk
             : kExitFailed;
}

}  // namespace nodemesh::bench::loadgen
