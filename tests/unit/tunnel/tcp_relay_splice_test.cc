// The plain TCP relay in splice mode (TunnelOptions::splice, tunnel/tcp_relay.h): real TCP
// sockets on loopback so that splice(2) runs for real, readiness played by the fake ring.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/tunnel/fake_ring.h"
#include "tunnel/splice_pipes.h"
#include "tunnel/tcp_relay.h"

namespace nodemesh::tunnel {
namespace {

using testing::FakeOp;

// Both ends of a TCP connection on 127.0.0.1.
struct TcpPair {
  UniqueFd a;
  UniqueFd b;
};

TcpPair tcpPair() {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  EXPECT_EQ(::listen(listener.get(), 1), 0);
  EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  UniqueFd a(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(a.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  UniqueFd b(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(b.valid());
  return TcpPair{std::move(a), std::move(b)};
}

// Reads what `fd` has within `timeout_ms` (at most `max` bytes); "" when nothing came.
std::string readSome(int fd, size_t max = 1 << 20, int timeout_ms = 1000) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return "";
  std::string out(max, '\0');
  const ssize_t n = ::recv(fd, out.data(), out.size(), MSG_DONTWAIT);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

class TcpRelaySpliceTest : public testing::RelayTestBase {
 protected:
  TcpRelaySpliceTest() : relay_(context(&pipes_)) {}

  // client_ <-> down (the relay's accepted socket), up (the relay's) <-> server_; relaying.
  TcpConnection* connected() {
    TcpPair client = tcpPair();
    TcpPair server = tcpPair();
    client_ = std::move(client.a);
    server_ = std::move(server.b);
    down_ = client.b.get();
    up_ = server.a.get();
    TcpConnection* c = relay_.create(Direction::kOutbound, "ns/pod", std::move(client.b));
    c->record.dst = SocketAddress::parse("127.0.0.1:80").value();
    relay_.connect(c, std::move(server.a));
    ring_.complete(FakeOp::kConnect, up_, 0);
    EXPECT_EQ(c->state(), TcpConnection::State::kRelaying);
    return c;
  }

  SplicePipes pipes_{16 * 1024};
  TcpRelay relay_;
  UniqueFd client_;
  UniqueFd server_;
  int down_ = -1;
  int up_ = -1;
};

TEST_F(TcpRelaySpliceTest, SplicesBothWaysAndPassesEachHalfCloseOn) {
  TcpConnection* c = connected();
  // Each direction waits for its source to be readable; no receive buffers are used.
  ASSERT_NE(ring_.findPoll(down_, POLLIN), nullptr);
  ASSERT_NE(ring_.findPoll(up_, POLLIN), nullptr);
  EXPECT_FALSE(ring_.has(FakeOp::kRecv, down_));

  ASSERT_EQ(::send(client_.get(), "hello", 5, 0), 5);
  ring_.completePoll(down_, POLLIN);
  EXPECT_EQ(readSome(server_.get()), "hello");
  // Drained: polling again, and the pipe went back to the worker's pool.
  EXPECT_NE(ring_.findPoll(down_, POLLIN), nullptr);
  EXPECT_EQ(pipes_.kept(), 1u);
  EXPECT_EQ(counters_.bytes_to_dst.load(), 5u);

  // The client's EOF becomes a shutdown of the destination's write side; the other half goes on.
  ASSERT_EQ(::shutdown(client_.get(), SHUT_WR), 0);
  ring_.completePoll(down_, POLLIN);
  ASSERT_TRUE(ring_.has(FakeOp::kShutdown, up_));
  ring_.complete(FakeOp::kShutdown, up_, 0);
  EXPECT_EQ(c->halfState(0), TcpConnection::HalfState::kDone);
  EXPECT_TRUE(events_.finished_records.empty());

  ASSERT_EQ(::send(server_.get(), "reply!", 6, 0), 6);
  ring_.completePoll(up_, POLLIN);
  EXPECT_EQ(readSome(client_.get()), "reply!");
  ASSERT_EQ(::shutdown(server_.get(), SHUT_WR), 0);
  ring_.completePoll(up_, POLLIN);
  ring_.complete(FakeOp::kShutdown, down_, 0);

  ASSERT_EQ(events_.finished_records.size(), 1u);
  const ConnectionRecord& r = events_.finished_records[0];
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.bytes_to_dst, 5u);
  EXPECT_EQ(r.bytes_from_dst, 6u);
  EXPECT_EQ(counters_.completed.load(), 1u);
  EXPECT_TRUE(relay_.empty());
  EXPECT_TRUE(ring_.pending.empty());
}

TEST_F(TcpRelaySpliceTest, ASlowReaderStopsTheSourceAndEveryByteArrivesInOrder) {
  connected();
  // Small socket buffers, so that the destination fills up quickly.
  const int small = 16 * 1024;
  ASSERT_EQ(::setsockopt(server_.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  ASSERT_EQ(::setsockopt(up_, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  ASSERT_EQ(::fcntl(client_.get(), F_SETFL, O_NONBLOCK), 0);

  ASSERT_EQ(::setsockopt(down_, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  ASSERT_EQ(::setsockopt(client_.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);

  // The client sends a changing pattern; the server reads none of it.
  std::string sent;
  for (size_t i = 0; sent.size() < (64u << 20); ++i) {
    std::string block(1000, static_cast<char>('a' + i % 26));
    const ssize_t n = ::send(client_.get(), block.data(), block.size(), 0);
    if (n > 0) {
      sent.append(block, 0, static_cast<size_t>(n));
      continue;
    }
    // Full: the relay moves what it can, until it waits for the server.
    if (ring_.findPoll(up_, POLLOUT) != nullptr) break;
    ring_.completePoll(down_, POLLIN);
  }
  // The relay waits for the destination to drain and no longer reads the client.
  ASSERT_NE(ring_.findPoll(up_, POLLOUT), nullptr);
  EXPECT_EQ(ring_.findPoll(down_, POLLIN), nullptr);

  // The server reads; each time the destination turns writable the relay goes on.
  std::string received;
  while (received.size() < sent.size()) {
    const std::string got = readSome(server_.get(), 1 << 20, 2000);
    ASSERT_FALSE(got.empty()) << "stalled at " << received.size() << " of " << sent.size();
    received += got;
    if (ring_.findPoll(up_, POLLOUT) != nullptr) ring_.completePoll(up_, POLLOUT);
    if (ring_.findPoll(down_, POLLIN) != nullptr) ring_.completePoll(down_, POLLIN);
  }
  EXPECT_TRUE(received == sent) << "the bytes arrived altered or out of order";
  EXPECT_EQ(counters_.bytes_to_dst.load(), sent.size());
}

TEST_F(TcpRelaySpliceTest, AResetAbortsAndClosesAPipeThatStillHoldsBytes) {
  TcpConnection* c = connected();
  const int small = 16 * 1024;
  ASSERT_EQ(::setsockopt(server_.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  ASSERT_EQ(::setsockopt(up_, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  ASSERT_EQ(::fcntl(client_.get(), F_SETFL, O_NONBLOCK), 0);
  std::string block(64 * 1024, 'x');
  for (int i = 0; i < 200 && ring_.findPoll(up_, POLLOUT) == nullptr; ++i) {
    (void)::send(client_.get(), block.data(), block.size(), 0);
    if (ring_.findPoll(down_, POLLIN) != nullptr) ring_.completePoll(down_, POLLIN);
  }
  ASSERT_NE(ring_.findPoll(up_, POLLOUT), nullptr) << "the destination never filled up";
  EXPECT_EQ(c->halfState(0), TcpConnection::HalfState::kSending);

  // The server resets: the relay's reading of it fails, and the connection is aborted.
  const linger reset{1, 0};
  ASSERT_EQ(::setsockopt(server_.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
  server_.reset();
  ring_.completePoll(up_, POLLIN);
  EXPECT_EQ(c->state(), TcpConnection::State::kAborting);
  // Not freed while the other direction's poll is still in flight.
  EXPECT_TRUE(events_.finished_records.empty());
  ring_.runCancels();
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "destination recv: Connection reset by peer");
  EXPECT_EQ(counters_.failed_io.load(), 1u);
  // The pipe with bytes in it was closed with the connection, not kept for another one.
  EXPECT_EQ(pipes_.kept(), 0u);
  EXPECT_TRUE(relay_.empty());
}

}  // namespace
}  // namespace nodemesh::tunnel
