// H2Session: flow-control windows, stream limits and header list limits.

#include <gtest/gtest.h>

#include "hbone/h2_session.h"
#include "tests/unit/hbone/h2_session_test_util.h"

namespace nodemesh::hbone::h2_session_test {
namespace {

TEST(H2SessionTest, UnconsumedDataStopsTheSenderAtTheStreamWindow) {
  Tunnel t;
  t.server.auto_consume = false;
  const std::vector<uint8_t> chunk = pattern(64 * 1024, 3);
  size_t accepted = 0;
  for (int round = 0; round < 1000; ++round) {
    auto n = t.client->send(t.id, chunk);
    ASSERT_TRUE(n.ok());
    accepted += *n;
    pump(t.client, t.server);
    if (*n == 0) {
      break;
    }
  }
  // The peer holds exactly one stream window; the rest waits in the bounded send queue.
  EXPECT_EQ(t.server.streams[t.id].data.size(), kStreamWindow);
  EXPECT_EQ(t.client->queuedBytes(t.id), kSendQueue);
  EXPECT_EQ(accepted, kStreamWindow + kSendQueue);
  EXPECT_EQ(*t.client->send(t.id, chunk), 0u);
  EXPECT_EQ(t.client.streams[t.id].writable, 0);

  // The owner wrote the bytes on: the window reopens and the queue drains.
  EXPECT_FALSE(t.server->consumed(t.id, kStreamWindow + 1).ok());
  ASSERT_TRUE(t.server->consumed(t.id, kStreamWindow).ok());
  pump(t.client, t.server);
  EXPECT_EQ(t.server.streams[t.id].data.size(), kStreamWindow + kSendQueue);
  EXPECT_EQ(t.client->queuedBytes(t.id), 0u);
  EXPECT_GE(t.client.streams[t.id].writable, 1);
  EXPECT_EQ(*t.client->send(t.id, chunk), chunk.size());
}

TEST(H2SessionTest, ConnectionWindowBoundsAllStreams) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  server.auto_consume = false;
  std::vector<StreamId> ids;
  for (int i = 0; i < 5; ++i) {
    auto id = client->openConnect("10.0.0.1:8080", {});
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  pump(client, server);
  const std::vector<uint8_t> chunk = pattern(kSendQueue, 4);
  for (int round = 0; round < 40; ++round) {
    for (StreamId id : ids) {
      ASSERT_TRUE(client->send(id, chunk).ok());
    }
    pump(client, server);
  }
  size_t held = 0;
  for (StreamId id : ids) {
    held += server.streams[id].data.size();
    EXPECT_LE(server.streams[id].data.size(), kStreamWindow);
  }
  EXPECT_EQ(held, 16 * kMiB);
}

TEST(H2SessionTest, ConsumedAfterCloseReopensTheConnectionWindow) {
  H2Options small_connection;
  small_connection.connection_window = 4 * kMiB;  // one stream can use all of it
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer, small_connection);
  server.respond_with = kStatusOk;
  server.auto_consume = false;
  auto a = client->openConnect("10.0.0.1:8080", {});
  auto b = client->openConnect("10.0.0.1:8081", {});
  ASSERT_TRUE(a.ok() && b.ok());
  pump(client, server);
  const std::vector<uint8_t> chunk = pattern(kSendQueue, 5);
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(client->send(*a, chunk).ok());
    pump(client, server);
  }
  ASSERT_EQ(server.streams[*a].data.size(), 4 * kMiB);
  ASSERT_EQ(*client->send(*b, asBytes("stuck")), 5u);
  pump(client, server);
  EXPECT_EQ(server.streams[*b].data, "");  // the connection window is used up by stream a

  // Stream a closes with its bytes still held; once they are written on, b moves.
  ASSERT_TRUE(client->resetStream(*a, kH2Cancel).ok());
  pump(client, server);
  EXPECT_EQ(server.streams[*a].closed, kH2Cancel);
  EXPECT_EQ(server.streams[*b].data, "");
  ASSERT_TRUE(server->consumed(*a, 4 * kMiB).ok());
  pump(client, server);
  EXPECT_EQ(server.streams[*b].data, "stuck");
}

TEST(H2SessionTest, ClientOpensAtMostTheMaxConcurrentStreams) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  EXPECT_EQ(client->availableStreams(), 100u);
  std::vector<StreamId> ids;
  for (int i = 0; i < 100; ++i) {
    auto id = client->openConnect("10.0.0.1:8080", {});
    ASSERT_TRUE(id.ok()) << i;
    ids.push_back(*id);
  }
  EXPECT_EQ(client->availableStreams(), 0u);
  auto refused = client->openConnect("10.0.0.1:8080", {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, EAGAIN);
  pump(client, server);
  EXPECT_EQ(server.requests, 100);
  EXPECT_EQ(client->availableStreams(), 0u);

  ASSERT_TRUE(client->resetStream(ids[0], kH2Cancel).ok());
  pump(client, server);
  EXPECT_EQ(client->availableStreams(), 1u);
  EXPECT_TRUE(client->openConnect("10.0.0.1:8080", {}).ok());
}

TEST(H2SessionTest, ServerRefusesStreamsBeyondItsLimit) {
  RawClient raw(/*assumed_peer_max_streams=*/1000);  // ignores what the server will say
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  std::vector<int32_t> ids;
  ids.reserve(101);
  for (int i = 0; i < 101; ++i) {
    ids.push_back(raw.request({{":method", "CONNECT"}, {":authority", "10.0.0.1:8080"}},
                              /*end_stream=*/false));
  }
  ASSERT_TRUE(transfer(raw, server));  // all 101 HEADERS before the server's SETTINGS
  pump(raw, server);
  EXPECT_EQ(server.requests, 100);
  EXPECT_EQ(raw.closed[ids.back()], kH2RefusedStream);
  EXPECT_EQ(raw.status[ids.front()], kStatusOk);
  EXPECT_FALSE(raw.goaway_error.has_value());
}

TEST(H2SessionTest, ServerRefusesAnExtraStreamAfterSettingsToo) {
  RawClient raw;
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  pump(raw, server);  // SETTINGS exchanged and acknowledged
  for (int i = 0; i < 100; ++i) {
    raw.request({{":method", "CONNECT"}, {":authority", "10.0.0.1:8080"}}, false);
  }
  pump(raw, server);
  ASSERT_EQ(server.requests, 100);
  // Stream 201 by hand, as a peer ignoring SETTINGS_MAX_CONCURRENT_STREAMS would send it. HPACK
  // literals without indexing (RFC 7541 §6.2.2): :method (index 2), :authority (index 1).
  std::vector<uint8_t> block = {0x02, 7, 'C', 'O', 'N', 'N', 'E', 'C', 'T', 0x01, 13};
  for (char c : std::string_view("10.0.0.1:8080")) {
    block.push_back(static_cast<uint8_t>(c));
  }
  std::vector<uint8_t> frame = {0, 0, static_cast<uint8_t>(block.size()), 0x1, 0x4, 0, 0, 0, 201};
  frame.insert(frame.end(), block.begin(), block.end());
  Status status = server->receive(frame);
  EXPECT_EQ(server.requests, 100);
  // Past the acknowledged limit nghttp2 treats it as a connection error (RFC 9113 §5.1.2
  // allows PROTOCOL_ERROR).
  EXPECT_FALSE(status.ok());
  ASSERT_TRUE(transfer(server, raw));
  EXPECT_EQ(raw.goaway_error, kH2ProtocolError);
}

TEST(H2SessionTest, OversizedHeaderListsAreRefused) {
  Recorder client(H2Role::kClient);
  ConnectHeaders big;
  big.baggage = std::string(20 * 1024, 'b');
  auto refused = client->openConnect("10.0.0.1:8080", big);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, EMSGSIZE);

  RawClient raw;
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  const int32_t id = raw.request(
      {{":method", "CONNECT"}, {":authority", "10.0.0.1:8080"}, {"baggage", big.baggage}},
      /*end_stream=*/false);
  pump(raw, server);
  EXPECT_EQ(raw.status[id], kStatusHeaderFieldsTooLarge);
  EXPECT_EQ(raw.closed[id], kH2NoError);
  EXPECT_EQ(server.requests, 0);

  // The connection survives (HPACK state intact): a normal request still works.
  const int32_t ok_id =
      raw.request({{":method", "CONNECT"}, {":authority", "10.0.0.1:8080"}}, false);
  pump(raw, server);
  EXPECT_EQ(raw.status[ok_id], kStatusOk);
}

TEST(H2SessionTest, OversizedResponseHeadersResetTheStream) {
  Recorder client(H2Role::kClient);
  RawServer raw(std::string(20 * 1024, 'r'));
  auto id = client->openConnect("10.0.0.1:8080", {});
  ASSERT_TRUE(id.ok());
  pump(client, raw);
  EXPECT_EQ(client.streams[*id].status, 0);  // never reported
  EXPECT_EQ(client.streams[*id].closed, kH2InternalError);

  RawServer small(std::string(100, 'r'));
  Recorder client2(H2Role::kClient);
  auto ok_id = client2->openConnect("10.0.0.1:8080", {});
  ASSERT_TRUE(ok_id.ok());
  pump(client2, small);
  EXPECT_EQ(client2.streams[*ok_id].status, kStatusOk);
}

TEST(H2SessionTest, InvalidExtraHeadersAreRefused) {
  Recorder client(H2Role::kClient);
  for (const char* name : {"X-Upper", ":path", "connection", "bad name", ""}) {
    ConnectHeaders headers;
    headers.extra.push_back(Header{name, "v"});
    EXPECT_FALSE(client->openConnect("10.0.0.1:8080", headers).ok()) << name;
  }
  ConnectHeaders bad_value;
  bad_value.extra.push_back(Header{"x-ok", "line\r\nbreak"});
  EXPECT_FALSE(client->openConnect("10.0.0.1:8080", bad_value).ok());
  EXPECT_FALSE(client->openConnect("", {}).ok());
  EXPECT_EQ(client->stats().streams_opened, 0u);
}

}  // namespace
}  // namespace nodemesh::hbone::h2_session_test
