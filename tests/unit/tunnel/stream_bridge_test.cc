// The stream bridge's state machine (tunnel/stream_bridge.h) on a fake ring and a fake HBONE
// connection: flow control end to end, half-closes both ways, failures and retries.
#include "tunnel/stream_bridge.h"

#include <sys/socket.h>

#include <map>

#include <gtest/gtest.h>

#include "tests/unit/tunnel/fake_ring.h"

namespace nodemesh::tunnel {
namespace {

using testing::FakeOp;
using testing::socketFd;

// An HTTP/2 connection as the bridge sees it: takes at most `window` bytes per stream until the
// test reopens it, and records everything.
class FakeCarrier final : public StreamCarrier {
 public:
  Result<size_t> send(hbone::StreamId /*stream*/, std::span<const uint8_t> data) override {
    const size_t n = std::min(data.size(), window);
    window -= n;
    sent.append(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
    return n;
  }
  Status endStream(hbone::StreamId /*stream*/) override {
    ended = true;
    return okStatus();
  }
  Status consumed(hbone::StreamId /*stream*/, size_t n) override {
    consumed_bytes += n;
    return okStatus();
  }
  Status respond(hbone::StreamId /*stream*/, int status) override {
    responses.push_back(status);
    return okStatus();
  }
  void addStream(hbone::StreamId stream, StreamBridge* bridge) override {
    streams[stream] = bridge;
  }
  void removeStream(hbone::StreamId stream, bool closed) override {
    streams.erase(stream);
    if (!closed) ++resets;
  }
  void markDirty() override { ++dirty; }

  size_t window = 1 << 20;
  std::string sent;
  bool ended = false;
  size_t consumed_bytes = 0;
  std::vector<int> responses;
  std::map<hbone::StreamId, StreamBridge*> streams;
  int resets = 0;
  int dirty = 0;
};

// The buffer budget: 16 KiB, so shed floor 1 KiB, low-water 14,746 bytes.
class StreamBridgeTest : public testing::RelayTestBase {
 protected:
  StreamBridgeTest() : RelayTestBase(16 * 1024), bridges_(context()) {}

  // An outbound bridge whose CONNECT (stream 1) was answered 200.
  StreamBridge* streaming(int* tcp) {
    UniqueFd app = socketFd();
    *tcp = app.get();
    StreamBridge* b = bridges_.create(nullptr, std::move(app), Direction::kOutbound, "ns/pod");
    b->record.dst = SocketAddress::parse("10.0.0.2:80").value();
    b->attach(&carrier_, 1);
    EXPECT_EQ(carrier_.streams.count(1), 1u);
    EXPECT_EQ(b->state(), StreamBridge::State::kOpening);
    EXPECT_FALSE(ring_.has(FakeOp::kRecv, *tcp)) << "read before the stream is up";
    b->onConnectResponse(200);
    EXPECT_EQ(b->state(), StreamBridge::State::kStreaming);
    EXPECT_TRUE(ring_.has(FakeOp::kRecv, *tcp));
    return b;
  }

  StreamBridges bridges_;
  FakeCarrier carrier_;
};

TEST_F(StreamBridgeTest, CarriesBothWaysAndFinishesWhenBothSidesEnded) {
  int tcp = -1;
  StreamBridge* b = streaming(&tcp);

  // TCP -> stream.
  buffers_.deliver(ring_, tcp, "request");
  EXPECT_EQ(carrier_.sent, "request");
  EXPECT_EQ(buffers_.inUse(), 0u);
  buffers_.deliverEof(ring_, tcp);
  EXPECT_TRUE(carrier_.ended);
  EXPECT_EQ(b->toStream(), StreamBridge::ToStream::kEnded);

  // Stream -> TCP: the window reopens only for bytes written to the socket.
  b->onStreamData(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("response"), 8));
  EXPECT_EQ(ring_.find(FakeOp::kSend, tcp)->data, "response");
  EXPECT_EQ(carrier_.consumed_bytes, 0u);
  ring_.complete(FakeOp::kSend, tcp, 3);
  EXPECT_EQ(carrier_.consumed_bytes, 3u);
  EXPECT_EQ(ring_.find(FakeOp::kSend, tcp)->data, "ponse");
  b->onStreamEnd();
  EXPECT_FALSE(ring_.has(FakeOp::kShutdown, tcp)) << "SHUT_WR before the queued bytes";
  ring_.complete(FakeOp::kSend, tcp, 5);
  EXPECT_EQ(carrier_.consumed_bytes, 8u);
  ASSERT_TRUE(ring_.has(FakeOp::kShutdown, tcp));
  ring_.complete(FakeOp::kShutdown, tcp, 0);
  EXPECT_TRUE(events_.finished_records.empty()) << "finished before the stream closed";

  // The stream closes cleanly (the connection forgot it first, as HboneConnection does).
  carrier_.streams.erase(1);
  b->onStreamClosed(hbone::kH2NoError);
  ASSERT_EQ(events_.finished_records.size(), 1u);
  const ConnectionRecord& r = events_.finished_records[0];
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.bytes_to_dst, 7u);
  EXPECT_EQ(r.bytes_from_dst, 8u);
  EXPECT_EQ(r.transport, Transport::kHbone);
  EXPECT_EQ(counters_.completed.load(), 1u);
  EXPECT_EQ(counters_.active.load(), 0u);
  EXPECT_TRUE(bridges_.empty());
}

// Bytes from the stream count in the worker's gauge and the shared budget until the socket
// took them.
TEST_F(StreamBridgeTest, BufferedBytesCountUntilTheApplicationTookThem) {
  int tcp = -1;
  StreamBridge* b = streaming(&tcp);
  const std::string data(1000, 'x');
  b->onStreamData(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), 1000));
  EXPECT_EQ(budget_.used(), 1000u);
  EXPECT_EQ(counters_.buffered_bytes.load(), 1000u);
  b->onStreamData(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), 500));
  EXPECT_EQ(budget_.used(), 1500u) << "queued behind the send in flight";
  ring_.complete(FakeOp::kSend, tcp, 400);
  EXPECT_EQ(budget_.used(), 1100u);
  ring_.complete(FakeOp::kSend, tcp, 600);
  ring_.complete(FakeOp::kSend, tcp, 500);
  EXPECT_EQ(budget_.used(), 0u);
  EXPECT_EQ(counters_.buffered_bytes.load(), 0u);
  // A bridge that ends while holding bytes gives them all back.
  b->onStreamData(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), 700));
  b->abort("test");
  ring_.runCancels();
  EXPECT_TRUE(bridges_.empty());
  EXPECT_EQ(budget_.used(), 0u);
  EXPECT_EQ(counters_.buffered_bytes.load(), 0u);
}

// Over the budget the bridge holding the most is reset first, and only as many as bring the
// total under the low-water mark; bridges under the shed floor are never shed.
TEST_F(StreamBridgeTest, OverTheBudgetTheStreamsHoldingTheMostAreResetFirst) {
  int tcp_small = -1;
  StreamBridge* small = streaming(&tcp_small);
  FakeCarrier c2;
  FakeCarrier c3;
  auto open = [&](FakeCarrier& c, size_t bytes) {
    UniqueFd app = socketFd();
    StreamBridge* b = bridges_.create(nullptr, std::move(app), Direction::kOutbound, "ns/pod");
    b->attach(&c, 1);
    b->onConnectResponse(200);
    const std::vector<uint8_t> data(bytes, 0x5a);
    b->onStreamData(data);
    return b;
  };
  const std::vector<uint8_t> tiny(512, 1);
  small->onStreamData(tiny);  // under the 1 KiB floor
  StreamBridge* medium = open(c2, 6000);
  bridges_.shedOverBudget();
  EXPECT_EQ(counters_.overload_streams_shed.load(), 0u) << "under the budget";
  StreamBridge* large = open(c3, 10000);
  ASSERT_EQ(budget_.used(), 16512u);
  EXPECT_TRUE(budget_.over());
  bridges_.shedOverBudget();
  EXPECT_EQ(counters_.overload_streams_shed.load(), 1u);
  EXPECT_EQ(large->state(), StreamBridge::State::kAborting);
  EXPECT_EQ(c3.resets, 1) << "the shed stream is reset";
  EXPECT_EQ(medium->state(), StreamBridge::State::kStreaming) << "6,512 left is under low water";
  EXPECT_EQ(small->state(), StreamBridge::State::kStreaming);
  ring_.runCancels();
  EXPECT_EQ(budget_.used(), 6512u);
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_NE(events_.finished_records[0].error.find("overload: reset while holding 10000 bytes"),
            std::string::npos)
      << events_.finished_records[0].error;
}

// What queued up behind a send in flight goes out in one gathering send over its blocks, and a
// partial write resumes where it stopped.
TEST_F(StreamBridgeTest, QueuedBlocksGoOutInOneGatheringSend) {
  int tcp = -1;
  StreamBridge* b = streaming(&tcp);
  const std::vector<uint8_t> first(1000, 'a');
  b->onStreamData(first);
  std::string more;
  for (size_t i = 0; i < 200 * 1024; ++i) more.push_back(static_cast<char>('0' + i % 10));
  b->onStreamData(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(more.data()), more.size()));
  ring_.complete(FakeOp::kSend, tcp, 1000);
  ASSERT_TRUE(ring_.has(FakeOp::kSend, tcp));
  EXPECT_EQ(ring_.find(FakeOp::kSend, tcp)->data, more);
  EXPECT_EQ(ring_.gathered_sends, 1);
  ring_.complete(FakeOp::kSend, tcp, 70000);
  EXPECT_EQ(ring_.find(FakeOp::kSend, tcp)->data, more.substr(70000));
  EXPECT_EQ(carrier_.consumed_bytes, 71000u);
  ring_.complete(FakeOp::kSend, tcp, static_cast<int>(more.size() - 70000));
  EXPECT_FALSE(ring_.has(FakeOp::kSend, tcp));
  EXPECT_EQ(budget_.used(), 0u);
}

TEST_F(StreamBridgeTest, AFullStreamStopsReadingUntilItIsWritable) {
  int tcp = -1;
  StreamBridge* b = streaming(&tcp);
  carrier_.window = 4;
  buffers_.deliver(ring_, tcp, "0123456789");
  EXPECT_EQ(carrier_.sent, "0123");
  EXPECT_EQ(buffers_.inUse(), 1u);  // the rest stays in its buffer
  carrier_.window = 100;
  b->onStreamWritable();
  EXPECT_EQ(carrier_.sent, "0123456789");
  EXPECT_EQ(buffers_.inUse(), 0u);
}

TEST_F(StreamBridgeTest, AStreamResetAbortsAndResetsTheSocket) {
  int tcp = -1;
  StreamBridge* b = streaming(&tcp);
  carrier_.streams.erase(1);
  b->onStreamClosed(hbone::kH2Cancel);
  EXPECT_EQ(b->state(), StreamBridge::State::kAborting);
  EXPECT_EQ(ring_.cancelled_fds, std::vector<int>{tcp});
  EXPECT_TRUE(events_.finished_records.empty()) << "freed with its receive armed";
  ring_.runCancels();
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "HBONE stream reset: CANCEL");
  EXPECT_EQ(carrier_.resets, 0) << "the stream was already closed";
}

TEST_F(StreamBridgeTest, AbortResetsTheStream) {
  int tcp = -1;
  StreamBridge* b = streaming(&tcp);
  b->abort("closed by policy change: denied");
  EXPECT_EQ(carrier_.resets, 1);
  EXPECT_TRUE(carrier_.streams.empty());
  ring_.runCancels();
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "closed by policy change: denied");
}

TEST_F(StreamBridgeTest, RefusedServiceAttemptIsRetriedElsewhere) {
  UniqueFd app = socketFd();
  StreamBridge* b = bridges_.create(nullptr, std::move(app), Direction::kOutbound, "ns/pod");
  b->service = std::make_unique<ServiceTarget>();
  b->attach(&carrier_, 1);
  services_.accept_retry = true;
  b->onConnectResponse(503);
  ASSERT_EQ(services_.retries.size(), 1u);
  EXPECT_EQ(services_.retries[0], "HBONE CONNECT answered 503");
  EXPECT_EQ(carrier_.resets, 1);  // the refused stream is reset
  EXPECT_TRUE(services_.retried_apps.at(0).valid());
  EXPECT_TRUE(events_.finished_records.empty()) << "a retried attempt has no log line";
  EXPECT_EQ(counters_.hbone_streams_rejected.load(), 1u);
  EXPECT_TRUE(bridges_.empty());
}

// A stream the peer refused unprocessed (a GOAWAY crossed the CONNECT) is opened again once,
// on another connection; the application never notices. A second refusal fails it.
TEST_F(StreamBridgeTest, RefusedStreamIsOpenedAgainOnceElsewhere) {
  UniqueFd app = socketFd();
  const int tcp = app.get();
  StreamBridge* b = bridges_.create(nullptr, std::move(app), Direction::kOutbound, "ns/pod");
  b->record.dst = SocketAddress::parse("10.0.0.2:80").value();
  b->attach(&carrier_, 1);
  FakeCarrier other;
  int reopens = 0;
  b->reopen = [&](StreamBridge& bridge) {
    ++reopens;
    bridge.attach(&other, 3);
    return true;
  };
  carrier_.streams.erase(1);  // the connection forgets the stream before telling the bridge
  b->onStreamClosed(hbone::kH2RefusedStream);
  EXPECT_EQ(reopens, 1);
  EXPECT_EQ(other.streams.count(3), 1u);
  EXPECT_EQ(counters_.hbone_streams_reopened.load(), 1u);
  EXPECT_TRUE(events_.finished_records.empty());
  b->onConnectResponse(200);
  EXPECT_EQ(b->state(), StreamBridge::State::kStreaming);
  EXPECT_TRUE(ring_.has(FakeOp::kRecv, tcp));
}

TEST_F(StreamBridgeTest, ASecondRefusalOrOneAfterTheAnswerIsNotReopened) {
  UniqueFd app = socketFd();
  StreamBridge* b = bridges_.create(nullptr, std::move(app), Direction::kOutbound, "ns/pod");
  b->record.dst = SocketAddress::parse("10.0.0.2:80").value();
  b->attach(&carrier_, 1);
  FakeCarrier other;
  int reopens = 0;
  b->reopen = [&](StreamBridge& bridge) {
    ++reopens;
    bridge.attach(&other, 3);
    return true;
  };
  carrier_.streams.erase(1);
  b->onStreamClosed(hbone::kH2RefusedStream);
  other.streams.erase(3);
  b->onStreamClosed(hbone::kH2RefusedStream);
  EXPECT_EQ(reopens, 1);
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "HBONE stream reset: REFUSED_STREAM");

  // Once streaming, bytes may have gone: a refusal then is a failure, never a reopen.
  int tcp = -1;
  StreamBridge* c = streaming(&tcp);
  c->reopen = [&](StreamBridge& /*bridge*/) {
    ++reopens;
    return true;
  };
  carrier_.streams.erase(1);
  c->onStreamClosed(hbone::kH2RefusedStream);
  EXPECT_EQ(reopens, 1);
  EXPECT_EQ(c->state(), StreamBridge::State::kAborting);
}

TEST_F(StreamBridgeTest, LostConnectionBeforeTheAnswerFailsWithoutRetries) {
  UniqueFd app = socketFd();
  StreamBridge* b = bridges_.create(nullptr, std::move(app), Direction::kOutbound, "ns/pod");
  b->attach(&carrier_, 1);
  carrier_.streams.clear();
  b->onConnectionLost("TLS handshake timed out");
  ring_.runCancels();
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "TLS handshake timed out");
  EXPECT_TRUE(services_.retries.empty());
}

TEST_F(StreamBridgeTest, InboundAnswers200OnceTheApplicationAccepted) {
  UniqueFd delivery = socketFd();
  const int tcp = delivery.get();
  StreamBridge* b = bridges_.create(&carrier_, std::move(delivery), Direction::kInbound, "ns/pod");
  b->record.dst = SocketAddress::parse("10.0.0.2:80").value();
  b->attach(&carrier_, 3);
  b->connectApplication();
  EXPECT_FALSE(ring_.has(FakeOp::kConnect, tcp)) << "connected before the input batch ended";
  bridges_.startDeferredConnects();
  EXPECT_TRUE(carrier_.responses.empty());
  ring_.complete(FakeOp::kConnect, tcp, 0);
  EXPECT_EQ(carrier_.responses, std::vector<int>{200});
  EXPECT_EQ(b->state(), StreamBridge::State::kStreaming);
  EXPECT_EQ(counters_.hbone_streams_accepted.load(), 1u);
  EXPECT_TRUE(ring_.has(FakeOp::kRecv, tcp));
}

// Rapid reset: a stream reset in the input batch that carried its request never costs the
// application a connection.
TEST_F(StreamBridgeTest, InboundStreamResetBeforeTheBatchEndsIsNeverConnected) {
  UniqueFd delivery = socketFd();
  const int tcp = delivery.get();
  StreamBridge* b = bridges_.create(&carrier_, std::move(delivery), Direction::kInbound, "ns/pod");
  b->record.dst = SocketAddress::parse("10.0.0.2:80").value();
  b->attach(&carrier_, 3);
  b->connectApplication();
  b->onStreamClosed(hbone::kH2Cancel);  // the RST_STREAM, in the same batch
  bridges_.startDeferredConnects();
  EXPECT_FALSE(ring_.has(FakeOp::kConnect, tcp));
  EXPECT_TRUE(bridges_.empty());
  EXPECT_EQ(counters_.hbone_reset_before_connect.load(), 1u);
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "HBONE stream reset: CANCEL");
}

TEST_F(StreamBridgeTest, InboundAnswers503WhenTheApplicationRefuses) {
  UniqueFd delivery = socketFd();
  const int tcp = delivery.get();
  StreamBridge* b = bridges_.create(&carrier_, std::move(delivery), Direction::kInbound, "ns/pod");
  b->record.dst = SocketAddress::parse("10.0.0.2:80").value();
  b->attach(&carrier_, 3);
  b->connectApplication();
  bridges_.startDeferredConnects();
  ring_.complete(FakeOp::kConnect, tcp, -ECONNREFUSED);
  EXPECT_EQ(carrier_.responses, std::vector<int>{503});
  EXPECT_EQ(carrier_.resets, 0) << "answered, not reset";
  ring_.runCancels();
  ASSERT_EQ(events_.finished_records.size(), 1u);
  EXPECT_EQ(events_.finished_records[0].error, "connect 10.0.0.2:80: Connection refused");
  EXPECT_EQ(counters_.failed_connect.load(), 1u);
  EXPECT_EQ(counters_.hbone_streams_rejected.load(), 1u);
}

}  // namespace
}  // namespace nodemesh::tunnel
