// nm-loadgen hold: opens N idle connections and keeps them open.

#include "bench/loadgen/loadgen_common.h"

namespace nodemesh::bench::loadgen {

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

}  // namespace nodemesh::bench::loadgen
