// nm-loadgen conn-rate: short connections, completed per second.

#include "bench/loadgen/loadgen_common.h"

namespace nodemesh::bench::loadgen {

namespace {

struct RateSlot {
  UniqueFd fd;
  Clock::time_point start;
  size_t sent = 0;
  size_t got = 0;
  bool connected = false;
};

}  // namespace

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

}  // namespace nodemesh::bench::loadgen
