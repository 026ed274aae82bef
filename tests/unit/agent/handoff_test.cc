// The upgrade handoff's exchange (agent/handoff.h) between two objects of this process, over a
// real unix socket: the sockets arrive as the same sockets, "ready" hands over, "stopped" comes
// back once the old agent's accepts are gone, a new agent that goes away before "ready" gives
// the ports back, and a bad peer gets a clear error.

#include "agent/handoff.h"

#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace nodemesh::agent {
namespace {

using std::chrono::milliseconds;

// A listening TCP socket on 127.0.0.1, any port.
UniqueFd listening() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::listen(fd.get(), 8), 0);
  return fd;
}

uint16_t portOf(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

bool waitFor(const std::atomic<bool>& flag) {
  for (int i = 0; i < 500 && !flag; ++i) std::this_thread::sleep_for(milliseconds(10));
  return flag;
}

class HandoffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nm-handoff-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/agent.handoff";
    outbound_ = listening();
    inbound_ = listening();
  }
  void TearDown() override {
    server_.reset();
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  void startServer() {
    HandoffServer::Hooks hooks;
    hooks.release_ports = [this] { released_ = true; };
    hooks.restore_ports = [this] { restored_ = true; };
    hooks.handed_over = [this](UniqueFd conn) {
      std::lock_guard<std::mutex> lock(mu_);
      conn_ = std::move(conn);
      handed_over_ = true;
    };
    hooks.export_listeners = [this] {
      std::vector<tunnel::InheritedListener> out;
      out.push_back({11, tunnel::ListenerKind::kOutbound, false, UniqueFd(::dup(outbound_.get()))});
      out.push_back({11, tunnel::ListenerKind::kInbound, true, UniqueFd(::dup(inbound_.get()))});
      return out;
    };
    auto server = HandoffServer::start(path_, std::move(hooks));
    ASSERT_TRUE(server.ok()) << server.error().message;
    server_ = std::move(*server);
  }

  // A new agent that took over: the sockets arrived and "ready" was sent and seen.
  std::optional<Handoff> takeOver() {
    startServer();
    auto handoff = requestHandoff(path_, milliseconds(5000));
    if (!handoff.ok() || !handoff->has_value()) {
      ADD_FAILURE() << (handoff.ok() ? "no running agent" : handoff.error().message);
      return std::nullopt;
    }
    EXPECT_TRUE(confirmHandoff(**handoff).ok());
    EXPECT_TRUE(waitFor(handed_over_));
    return std::move(**handoff);
  }

  std::string dir_;
  std::string path_;
  UniqueFd outbound_;
  UniqueFd inbound_;
  std::unique_ptr<HandoffServer> server_;
  std::atomic<bool> released_{false};
  std::atomic<bool> restored_{false};
  std::atomic<bool> handed_over_{false};
  std::mutex mu_;
  UniqueFd conn_;  // the old agent's end after the handover
};

TEST_F(HandoffTest, NoRunningAgentIsAPlainStart) {
  auto handoff = requestHandoff(path_, milliseconds(1000));
  ASSERT_TRUE(handoff.ok()) << handoff.error().message;
  EXPECT_FALSE(handoff->has_value());
}

TEST_F(HandoffTest, TheSameSocketsArriveAndReadyHandsOver) {
  startServer();
  auto handoff = requestHandoff(path_, milliseconds(5000));
  ASSERT_TRUE(handoff.ok()) << handoff.error().message;
  ASSERT_TRUE(handoff->has_value());
  EXPECT_TRUE(released_);
  auto& listeners = (**handoff).listeners;
  ASSERT_EQ(listeners.size(), 2u);
  EXPECT_EQ(listeners[0].netns_cookie, 11u);
  EXPECT_EQ(listeners[0].kind, tunnel::ListenerKind::kOutbound);
  EXPECT_FALSE(listeners[0].ipv6);
  EXPECT_EQ(listeners[1].kind, tunnel::ListenerKind::kInbound);
  EXPECT_TRUE(listeners[1].ipv6);
  // The same sockets: same port, and a connection queued on one is accepted through the other.
  EXPECT_EQ(portOf(listeners[0].fd.get()), portOf(outbound_.get()));
  EXPECT_EQ(portOf(listeners[1].fd.get()), portOf(inbound_.get()));
  EXPECT_FALSE(handed_over_);
  ASSERT_TRUE(confirmHandoff(**handoff).ok());
  EXPECT_TRUE(waitFor(handed_over_));
  EXPECT_FALSE(restored_);
}

// The old agent reports when its accepts are gone; the new one waits for that (an old agent that
// closes without it, or says something else, ends the wait too; so does this agent stopping).
TEST_F(HandoffTest, WithoutStoppedTheWaitTimesOut) {
  auto handoff = takeOver();
  ASSERT_TRUE(handoff.has_value());
  // Nothing yet: the wait times out.
  auto early = awaitAcceptsStopped(*handoff, -1, milliseconds(50));
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().code, ETIMEDOUT);
}

TEST_F(HandoffTest, StoppedEndsTheNewAgentsWait) {
  auto handoff = takeOver();
  ASSERT_TRUE(handoff.has_value());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_TRUE(conn_.valid());
    ASSERT_TRUE(reportAcceptsStopped(conn_).ok());
    EXPECT_FALSE(conn_.valid());  // closed after the message
  }
  auto stopped = awaitAcceptsStopped(*handoff, -1, milliseconds(5000));
  ASSERT_TRUE(stopped.ok()) << stopped.error().message;
  EXPECT_TRUE(*stopped);
  EXPECT_FALSE(handoff->conn.valid());
}

TEST_F(HandoffTest, APreviousAgentThatClosesWithoutStoppedEndsTheWait) {
  auto handoff = takeOver();
  ASSERT_TRUE(handoff.has_value());
  {
    std::lock_guard<std::mutex> lock(mu_);
    conn_.reset();
  }
  auto stopped = awaitAcceptsStopped(*handoff, -1, milliseconds(5000));
  ASSERT_TRUE(stopped.ok()) << stopped.error().message;
  EXPECT_FALSE(*stopped);
}

TEST_F(HandoffTest, AnotherWordThanStoppedIsAProtocolError) {
  auto handoff = takeOver();
  ASSERT_TRUE(handoff.has_value());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_GT(::send(conn_.get(), "stopped?", 8, 0), 0);
  }
  auto stopped = awaitAcceptsStopped(*handoff, -1, milliseconds(5000));
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.error().code, EPROTO);
  EXPECT_NE(stopped.error().message.find("stopped?"), std::string::npos);
}

TEST_F(HandoffTest, TheStopDescriptorEndsTheWait) {
  auto handoff = takeOver();
  ASSERT_TRUE(handoff.has_value());
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC));
  const uint64_t one = 1;
  ASSERT_EQ(::write(stop.get(), &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  auto stopped = awaitAcceptsStopped(*handoff, stop.get(), milliseconds(5000));
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.error().code, ECANCELED);
}

TEST_F(HandoffTest, ANewAgentThatGoesAwayBeforeReadyGivesThePortsBack) {
  startServer();
  {
    auto handoff = requestHandoff(path_, milliseconds(5000));
    ASSERT_TRUE(handoff.ok() && handoff->has_value());
  }  // closed without "ready"
  EXPECT_TRUE(waitFor(restored_));
  EXPECT_FALSE(handed_over_);
  // And the running agent still serves the next one.
  auto again = requestHandoff(path_, milliseconds(5000));
  ASSERT_TRUE(again.ok()) << again.error().message;
  ASSERT_TRUE(again->has_value());
  ASSERT_TRUE(confirmHandoff(**again).ok());
  EXPECT_TRUE(waitFor(handed_over_));
}

TEST_F(HandoffTest, AGreetingOfAnotherProtocolIsIgnored) {
  startServer();
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path_.c_str());
  ASSERT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_GT(::send(fd.get(), "GET / HTTP/1.1", 14, 0), 0);
  char buf[16];
  EXPECT_EQ(::recv(fd.get(), buf, sizeof(buf), 0), 0);  // closed, nothing sent
  EXPECT_FALSE(released_);
  // A real new agent is served afterwards.
  auto handoff = requestHandoff(path_, milliseconds(5000));
  ASSERT_TRUE(handoff.ok() && handoff->has_value());
}

TEST_F(HandoffTest, TheSocketFileIsRemovedOnlyWhileItIsOurs) {
  startServer();
  server_.reset();
  EXPECT_NE(::access(path_.c_str(), F_OK), 0);
  startServer();
  // A next agent bound the path meanwhile: the old server leaves its file alone.
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  UniqueFd other(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path_.c_str());
  ASSERT_EQ(::bind(other.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  server_.reset();
  EXPECT_EQ(::access(path_.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace nodemesh::agent
