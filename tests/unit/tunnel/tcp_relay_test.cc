// The plain TCP relay's state machine (tunnel/tcp_relay.h) on a fake ring: what it submits for
// each completion, when it finishes, and what it reports.
#include "tunnel/tcp_relay.h"

#include <sys/socket.h>

#include <gtest/gtest.h>

#include "tests/unit/tunnel/fake_ring.h"

namespace nodemesh::tunnel {
namespace {

using testing::FakeOp;
using testing::socketFd;

class TcpRelayTest : public testing::RelayTestBase {
 protected:
  TcpRelayTest() : relay_(context()) {}

  // An outbound connection to 10.0.0.2:80, connected; returns it with its two descriptors.
  TcpConnection* connected(int* down, int* up) {
    UniqueFd client = socketFd();
    *down = client.get();
    TcpConnection* c = relay_.create(Direction::kOutbound, "ns/pod", std::move(client));
    c->record.src = SocketAddress::parse("10.0.0.1:40000").value();
    c->record.dst = SocketAddress::parse("10.0.0.2:80").value();
    UniqueFd server = socketFd();
    *up = server.get();
    relay_.connect(c, std::move(server));
    EXPECT_EQ(c->state(), TcpConnection::State::kConnecting);
    ring_.complete(FakeOp::kConnect, *up, 0);
    EXPECT_EQ(c->state(), TcpConnection::State::kRelaying);
    return c;
  }

  // An outbound attempt of a service connection to 10.0.0.2:80, its connect in flight on `up`.
  TcpConnection* serviceAttempt(int* up) {
    UniqueFd client = socketFd();
    TcpConnection* c = relay_.create(Direction::kOutbound, "ns/pod", std::move(client));
    c->record.dst = SocketAddress::parse("10.0.0.2:80").value();
    c->service = std::make_unique<ServiceTarget>();
    UniqueFd server = socketFd();
    *up = server.get();
    relay_.connect(c, std::move(server));
    return c;
  }

  TcpRelay relay_;
};

TEST_F(TcpRelayTest, RelaysBothWaysAndPassesEachHalfCloseOn) {
  int down = -1;
  int up = -1;
  TcpConnection* c = connected(&down, &up);
  // Both sockets receive once connected.
  ASSERT_TRUE(ring_.has(FakeOp::kRecv, down));
  ASSERT_TRUE(ring_.has(FakeOp::kRecv, up));

  // Client -> destination: the chunk is sent to the other socket, one send at a time.
  buffers_.deliver(ring_, down, "hello");
  FakeOp* send = ring_.find(FakeOp::kSend, up);
  ASSERT_NE(send, nullptr);
  EXPECT_EQ(send->data, "hello");
  buffers_.deliver(ring_, down, "world");
  EXPECT_EQ(ring_.find(FakeOp::kSend, up)->data, "hello");  // still the first send
  // A short write sends the rest of the chunk next.
  ring_.complete(FakeOp::kSend, up, 2);
  EXPECT_EQ(ring_.find(FakeOp::kSend, up)->data, "llo");
  ring_.complete(FakeOp::kSend, up, 3);
  EXPECT_EQ(ring_.find(FakeOp::kSend, up)->data, "world");
  ring_.complete(FakeOp::kSend, up, 5);
  EXPECT_EQ(buffers_.inUse(), 0u);  // every buffer went back

  // The client's EOF becomes a shutdown of the destination's write side; the other half goes on.
  buffers_.deliverEof(ring_, down);
  ASSERT_TRUE(ring_.has(FakeOp::kShutdown, up));
  ring_.complete(FakeOp::kShutdown, up, 0);
  EXPECT_EQ(c->halfState(0), TcpConnection::HalfState::kDone);
  EXPECT_EQ(c->halfState(1), TcpConnection::HalfState::kIdle);
  EXPECT_TRUE(events_.finished_records.empty());

  buffers_.deliver(ring_, up, "reply");
  EXPECT_EQ(ring_.find(FakeOp::kSend, down)->data, "reply");
  ring_.complete(FakeOp::kSend, down, 5);
  buffers_.deliverEof(ring_, up);
  ring_.complete(FakeOp::kShutdown, down, 0);

  // Both halves closed: finished cleanly, with the byte counts.
  ASSERT_EQ(events_.finished_records.size(), 1u);
  const ConnectionRecord& r = events_.finished_records[0];
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.bytes_to_dst, 10u);
  EXPECT_EQ(r.bytes_from_dst, 5u);
  EXPECT_EQ(counters_.completed.load(), 1u);
  EXPECT_EQ(counters_.active.load(), 0u);
  EXPECT_EQ(counters_.bytes_to_dst.load(), 10u);
  EXPECT_TRUE(relay_.empty());
}

TEST_F(TcpRelayTest, AbortWaitsForTheSendInFlightBeforeFreeing) {
  int down = -1;
  int up = -1;
  TcpConnection* c = connected(&down, &up);
  buffers_.deliver(ring_, down, "data");
  ASSERT_TRUE(ring_.has(FakeOp::kSend, up));
  // A receive error on the other socket aborts the connection...
  ring_.complete(FakeOp::kRecv, up, -ECONNRESET);
  EXPECT_EQ(c->state(), TcpConnection::State::kAborting);
  // ...and every operation on both sockets is cancelled; nothing is freed before they complete.
  EXPECT_NE(std::find(ring_.cancelled_fds.begin(), ring_.cancelled_fds.end(), down),
            ring_.cancelled_fds.end());
  EXPECT_NE(std::find(ring_.cancelled_fds.begin(), ring_.cancelled_fds.end(), up),
            ring_.cancelled_fds.end());
  EXPECT_TRUE(events_.finished_records.empty()) << "freed with operations in flight";
  ring_.runCancels();
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "destination recv: Connection reset by peer");
  EXPECT_EQ(counters_.failed_io.load(), 1u);
  EXPECT_EQ(counters_.completed.load(), 0u);
  EXPECT_EQ(buffers_.inUse(), 0u);
  EXPECT_TRUE(relay_.empty());
}

TEST_F(TcpRelayTest, NotFreedWhileAnOperationIsStillInFlight) {
  int down = -1;
  int up = -1;
  TcpConnection* c = connected(&down, &up);
  buffers_.deliver(ring_, down, "data");
  // The send completes (it had already started) after the abort's cancels came back.
  FakeOp send = *ring_.find(FakeOp::kSend, up);
  ring_.pending.erase(std::find_if(ring_.pending.begin(), ring_.pending.end(),
                                   [&](const FakeOp& op) { return op.kind == FakeOp::kSend; }));
  relay_.abort(c, "test");
  ring_.runCancels();
  EXPECT_TRUE(events_.finished_records.empty()) << "freed with a send in flight";
  send.tag->handler->onCompletion(send.tag->op, 4, 0);
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "test");
}

TEST_F(TcpRelayTest, FailedConnectOfAServiceAttemptIsHandedToARetry) {
  int up = -1;
  serviceAttempt(&up);
  services_.accept_retry = true;
  ring_.complete(FakeOp::kConnect, up, -ECONNREFUSED);
  ASSERT_EQ(services_.retries.size(), 1u);
  EXPECT_EQ(services_.retries[0], "connect 10.0.0.2:80: Connection refused");
  // The client's socket went to the retry: no access log line, not counted as failed.
  EXPECT_TRUE(services_.retried_apps.at(0).valid());
  EXPECT_TRUE(events_.finished_records.empty());
  EXPECT_EQ(counters_.failed_connect.load(), 0u);
  EXPECT_TRUE(relay_.empty());
}

TEST_F(TcpRelayTest, FailedConnectWithoutRetryFailsTheConnection) {
  UniqueFd client = socketFd();
  TcpConnection* c = relay_.create(Direction::kOutbound, "ns/pod", std::move(client));
  c->record.dst = SocketAddress::parse("10.0.0.2:80").value();
  UniqueFd server = socketFd();
  const int up = server.get();
  relay_.connect(c, std::move(server));
  // The ring's connect timeout expired.
  ring_.complete(FakeOp::kConnect, up, -ECANCELED);
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "connect 10.0.0.2:80: timed out after 10000 ms");
  EXPECT_EQ(counters_.failed_connect.load(), 1u);
  EXPECT_EQ(counters_.connect_timeouts.load(), 1u);
}

TEST_F(TcpRelayTest, AbortDuringConnectWaitsForTheConnect) {
  UniqueFd client = socketFd();
  TcpConnection* c = relay_.create(Direction::kInbound, "ns/pod", std::move(client));
  c->record.dst = SocketAddress::parse("10.0.0.2:80").value();
  UniqueFd server = socketFd();
  const int up = server.get();
  relay_.connect(c, std::move(server));
  relay_.abort(c, "closed by policy change");
  EXPECT_TRUE(events_.finished_records.empty());
  // The connect had completed before the cancel reached it.
  ring_.complete(FakeOp::kConnect, up, 0);
  EXPECT_TRUE(ring_.pending.empty()) << "nothing started after the abort";
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "closed by policy change");
  EXPECT_TRUE(relay_.empty());
}

// The same-node fast path: the server pod's inbound record rides on the client's connection
// and is finished with it, with the same bytes and, unless it has its own, the same error.
TEST_F(TcpRelayTest, ADeliveryRecordIsFinishedWithTheConnection) {
  int down = -1;
  int up = -1;
  TcpConnection* c = connected(&down, &up);
  c->delivery = std::make_unique<ConnectionRecord>();
  c->delivery->direction = Direction::kInbound;
  c->delivery->pod = "ns/server";
  // Listed for re-authorization and in /connections as the server pod's.
  const std::vector<TcpConnection*> inbound = relay_.openInbound();
  ASSERT_EQ(inbound.size(), 1u);
  EXPECT_EQ(inbound[0], c);
  std::vector<ConnectionInfo> infos;
  relay_.describe(infos, Clock::now());
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_EQ(infos[1].direction, Direction::kInbound);
  EXPECT_EQ(infos[1].pod, "ns/server");

  buffers_.deliver(ring_, down, "0123456789");
  ring_.complete(FakeOp::kSend, up, 10);
  relay_.abort(c, "closed by policy change: denied");
  ring_.runCancels();
  ASSERT_EQ(events_.finished_records.size(), 2u);
  const ConnectionRecord& client_side = events_.finished_records[0];
  const ConnectionRecord& server_side = events_.finished_records[1];
  EXPECT_EQ(client_side.direction, Direction::kOutbound);
  EXPECT_EQ(server_side.direction, Direction::kInbound);
  EXPECT_EQ(server_side.pod, "ns/server");
  EXPECT_EQ(server_side.bytes_to_dst, 10u);
  EXPECT_EQ(server_side.error, "closed by policy change: denied");
  EXPECT_TRUE(relay_.empty());
}

TEST_F(TcpRelayTest, ADeliveryRecordEndsWithAFailedAttemptHandedToARetry) {
  int up = -1;
  TcpConnection* c = serviceAttempt(&up);
  c->delivery = std::make_unique<ConnectionRecord>();
  c->delivery->direction = Direction::kInbound;
  services_.accept_retry = true;
  ring_.complete(FakeOp::kConnect, up, -ECONNREFUSED);
  ASSERT_EQ(services_.retries.size(), 1u);
  // The client's side goes on with the retry (no line yet); the server pod's attempt ended.
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].direction, Direction::kInbound);
  EXPECT_EQ(events_.finished_records[0].error, "connect 10.0.0.2:80: Connection refused");
  EXPECT_TRUE(relay_.empty());
}

}  // namespace
}  // namespace nodemesh::tunnel
