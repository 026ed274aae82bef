// H2Session: rejected requests, malformed input and stream resets.

#include <gtest/gtest.h>

#include "hbone/h2_session.h"
#include "tests/unit/hbone/h2_session_test_util.h"

namespace nodemesh::hbone::h2_session_test {
namespace {

TEST(H2SessionTest, NonConnectMethodGets400) {
  RawClient raw;
  Recorder server(H2Role::kServer);
  const int32_t id = raw.request(
      {{":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {":authority", "10.0.0.1:8080"}},
      /*end_stream=*/true);
  pump(raw, server);
  EXPECT_EQ(raw.status[id], kStatusBadRequest);
  EXPECT_EQ(raw.closed[id], kH2NoError);
  EXPECT_EQ(server.requests, 0);
  EXPECT_EQ(server->stats().requests_rejected, 1u);
}

TEST(H2SessionTest, AuthorityThatIsNotAnAddressGets400) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto id = client->openConnect("not-an-address", {});
  ASSERT_TRUE(id.ok());
  pump(client, server);
  EXPECT_EQ(client.streams[*id].status, kStatusBadRequest);
  EXPECT_EQ(client.streams[*id].closed, kH2NoError);  // reset with NO_ERROR after the 400
  EXPECT_EQ(server.requests, 0);
  EXPECT_FALSE(client->send(*id, asBytes("x")).ok());
}

TEST(H2SessionTest, AuthorityWithPortZeroGets400WithoutReachingTheHandler) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto id = client->openConnect("10.0.0.1:0", {});
  ASSERT_TRUE(id.ok());
  pump(client, server);
  EXPECT_EQ(client.streams[*id].status, kStatusBadRequest);
  EXPECT_EQ(server.requests, 0);
  EXPECT_EQ(server->stats().requests_rejected, 1u);
}

TEST(H2SessionTest, DeniedAndUnavailableReachTheClient) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto denied = client->openConnect("10.0.0.1:8080", {});
  auto unavailable = client->openConnect("10.0.0.1:9090", {});
  ASSERT_TRUE(denied.ok() && unavailable.ok());
  pump(client, server);
  ASSERT_EQ(server.requests, 2);
  ASSERT_TRUE(server->respond(*denied, kStatusUnauthorized).ok());
  ASSERT_TRUE(server->respond(*unavailable, kStatusServiceUnavailable).ok());
  EXPECT_FALSE(server->send(*denied, asBytes("x")).ok());
  pump(client, server);
  EXPECT_EQ(client.streams[*denied].status, kStatusUnauthorized);
  EXPECT_EQ(client.streams[*unavailable].status, kStatusServiceUnavailable);
  EXPECT_EQ(client.streams[*denied].closed, kH2NoError);
  EXPECT_EQ(server.streams[*unavailable].closed, kH2NoError);
  EXPECT_FALSE(client->send(*denied, asBytes("x")).ok());
  EXPECT_EQ(client->stats().streams_active, 0u);
}

TEST(H2SessionTest, GarbageToServerIsAnErrorNotACrash) {
  Recorder server(H2Role::kServer);
  Status status = server->receive(asBytes("GET / HTTP/1.1\r\nHost: example\r\n\r\n"));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, EPROTO);
  EXPECT_FALSE(server->wantsRead());
  EXPECT_FALSE(server->receive(asBytes("more")).ok());
  server.takeOutput();
  EXPECT_TRUE(server->isClosed());
}

TEST(H2SessionTest, ProtocolErrorAfterThePrefaceSendsGoaway) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  pump(client, server);
  // A DATA frame on stream 0 is a connection error (RFC 9113 §6.1).
  const uint8_t frame[] = {0, 0, 1, 0x0, 0x0, 0, 0, 0, 0, 'x'};
  Status status = server->receive(frame);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("PROTOCOL_ERROR"), std::string::npos)
      << status.error().message;
  ASSERT_TRUE(transfer(server, client));  // the GOAWAY
  ASSERT_TRUE(client.goaway.has_value());
  EXPECT_EQ(client.goaway->second, kH2ProtocolError);
  EXPECT_EQ(client->availableStreams(), 0u);
  EXPECT_TRUE(server->isClosed());
}

TEST(H2SessionTest, GarbageToClientIsAnError) {
  Recorder client(H2Role::kClient);
  client.takeOutput();
  Status status = client->receive(asBytes("HTTP/1.1 400 Bad Request\r\n\r\n"));
  ASSERT_FALSE(status.ok());
  client.takeOutput();
  EXPECT_TRUE(client->isClosed());
}

TEST(H2SessionTest, ResetReachesThePeerWithItsCode) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  auto a = client->openConnect("10.0.0.1:8080", {});
  auto b = client->openConnect("10.0.0.1:8081", {});
  ASSERT_TRUE(a.ok() && b.ok());
  pump(client, server);

  ASSERT_TRUE(client->resetStream(*a, kH2Cancel).ok());
  ASSERT_TRUE(server->resetStream(*b, kH2ConnectError).ok());
  pump(client, server);
  EXPECT_EQ(server.streams[*a].closed, kH2Cancel);
  EXPECT_EQ(client.streams[*a].closed, kH2Cancel);  // the owner's own reset, reported once
  EXPECT_EQ(client.streams[*b].closed, kH2ConnectError);
  EXPECT_FALSE(client->send(*b, asBytes("late")).ok());
  EXPECT_FALSE(server->send(*a, asBytes("late")).ok());
  EXPECT_EQ(server->stats().resets_received, 1u);
  EXPECT_EQ(server->stats().resets_sent, 1u);
}

TEST(H2SessionTest, ResetBeforeTheRequestWentOut) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto id = client->openConnect("10.0.0.1:8080", {});
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(client->resetStream(*id, kH2Cancel).ok());
  pump(client, server);
  EXPECT_EQ(client.streams[*id].closed, kH2Cancel);
  EXPECT_EQ(server.requests, 0);
  EXPECT_EQ(client->stats().streams_active, 0u);
  EXPECT_EQ(client->availableStreams(), 100u);
}

}  // namespace
}  // namespace nodemesh::hbone::h2_session_test
