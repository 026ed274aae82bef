// Two agents on one listening socket during an upgrade (agent/handoff.h, "stopped"), with real
// io_uring rings and loopback sockets: the old agent's accept is woken by a connection while it
// is being cancelled, so it completes cancelled without taking it; the new agent's accept, the
// second exclusive waiter, is never woken and the connection stays queued. restartAccepts()
// takes it at once. The first test pins down the kernel's behaviour the fix rests on: if it
// ever fails, a cancelled accept no longer strands a connection and the fix is not needed.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "common/sockets.h"
#include "io/uring_ring.h"
#include "tunnel/pod_listeners.h"

namespace nodemesh::tunnel {
namespace {

// The agents' own kind of listener, on 127.0.0.1 (any port).
UniqueFd listening() {
  auto fd = listenTcp(SocketAddress{IpAddress::parse("127.0.0.1").value(), 0}, /*mark=*/0);
  EXPECT_TRUE(fd.ok()) << fd.error().message;
  return fd.ok() ? std::move(*fd) : UniqueFd();
}

// A connection to `listener`, established by the kernel (queued until accepted).
UniqueFd connectTo(int listener) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len), 0);
  return fd;
}

class Accepted final : public PodHandler {
 public:
  void onAccepted(Listener& /*listener*/, UniqueFd fd) override { fds.push_back(std::move(fd)); }
  void onRetiring(Pod& /*pod*/) override {}
  std::vector<UniqueFd> fds;
};

// One agent's side: a ring, its listeners, what they accepted.
struct Agent : io::CompletionHandler {
  explicit Agent(int shared_listener) {
    auto created = io::UringRing::create(64, std::chrono::milliseconds(1000), false);
    EXPECT_TRUE(created.ok());
    ring = std::move(*created);
    listeners = std::make_unique<PodListeners>(*ring, options, accepted);
    auto pod = std::make_unique<Pod>();
    pod->cookie = 7;
    pod->name = "shop/cart";
    auto l = std::make_unique<Listener>();
    l->fd = UniqueFd(::dup(shared_listener));
    l->pod = pod.get();
    l->kind = ListenerKind::kHbone;
    pod->listeners.push_back(std::move(l));
    listeners->add(std::move(pod));
  }
  ~Agent() override { listeners.reset(); }
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Submits what is queued and runs the completions of the next 20 ms (the ring is
  // DEFER_TASKRUN: its completion work runs only here).
  void turn() {
    ring->timeout(__kernel_timespec{0, 20 * 1000 * 1000}, &tick);
    ring->submitAndDispatch();
  }
  void onCompletion(uint8_t /*op*/, int /*res*/, unsigned /*flags*/) override {}

  TunnelOptions options;
  Accepted accepted;
  std::unique_ptr<io::UringRing> ring;
  std::unique_ptr<PodListeners> listeners;
  io::OpTag tick{this, 0};
};

TEST(PodListenersHandoff, AConnectionThatWokeACancelledAcceptStaysQueuedUntilARestart) {
  UniqueFd shared = listening();
  Agent old_agent(shared.get());
  old_agent.turn();  // its accept waits first
  Agent new_agent(shared.get());
  new_agent.turn();  // then the new agent's

  // The old agent decides to stop (its cancel is queued), and a connection arrives before the
  // cancel reaches the kernel: it wakes the old agent's accept only.
  old_agent.listeners->drain();
  UniqueFd client = connectTo(shared.get());
  old_agent.turn();
  EXPECT_TRUE(old_agent.accepted.fds.empty());
  EXPECT_TRUE(old_agent.listeners->acceptsStopped());
  for (int i = 0; i < 5; ++i) new_agent.turn();
  EXPECT_TRUE(new_agent.accepted.fds.empty()) << "the kernel woke the second accept after all";

  new_agent.listeners->restartAccepts();
  for (int i = 0; i < 5 && new_agent.accepted.fds.empty(); ++i) new_agent.turn();
  EXPECT_EQ(new_agent.accepted.fds.size(), 1u);
}

TEST(PodListenersHandoff, ARestartKeepsAcceptingNewConnections) {
  UniqueFd shared = listening();
  Agent agent(shared.get());
  agent.turn();
  agent.listeners->restartAccepts();
  agent.turn();
  UniqueFd a = connectTo(shared.get());
  UniqueFd b = connectTo(shared.get());
  for (int i = 0; i < 5 && agent.accepted.fds.size() < 2; ++i) agent.turn();
  EXPECT_EQ(agent.accepted.fds.size(), 2u);
  EXPECT_TRUE(agent.listeners->acceptsStopped());  // nothing stopped: nothing pending
}

TEST(PodListenersHandoff, DrainedListenersReportWhenTheirAcceptsAreGone) {
  UniqueFd shared = listening();
  Agent agent(shared.get());
  agent.turn();
  agent.listeners->drain();
  EXPECT_FALSE(agent.listeners->acceptsStopped());  // the cancel has not completed
  agent.turn();
  EXPECT_TRUE(agent.listeners->acceptsStopped());
  // A drained agent restarts nothing.
  agent.listeners->restartAccepts();
  agent.turn();
  UniqueFd client = connectTo(shared.get());
  agent.turn();
  EXPECT_TRUE(agent.accepted.fds.empty());
}

}  // namespace
}  // namespace nodemesh::tunnel
