// nm-loadgen probe: retries one echo round trip until a tunnel works end to end.

#include "bench/loadgen/loadgen_common.h"

namespace nodemesh::bench::loadgen {

namespace {

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

}  // namespace

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

}  // namespace nodemesh::bench::loadgen
