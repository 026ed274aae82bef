// H2Session: CONNECT tunnels, data both ways, half-close, PING and GOAWAY.

#include <gtest/gtest.h>

#include "hbone/h2_session.h"
#include "tests/unit/hbone/h2_session_test_util.h"

namespace nodemesh::hbone::h2_session_test {
namespace {

TEST(H2SessionTest, ConnectCarriesAuthorityAndMeshHeaders) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  ConnectHeaders headers = meshHeaders();
  headers.extra.push_back(Header{"x-istio-extra", "1"});
  auto id = client->openConnect("10.0.0.1:8080", headers);
  ASSERT_TRUE(id.ok()) << id.error().message;
  pump(client, server);

  ASSERT_EQ(server.requests, 1);
  const auto& request = server.streams[*id].request;
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->authority, "10.0.0.1:8080");
  EXPECT_EQ(request->target.toString(), "10.0.0.1:8080");
  EXPECT_EQ(request->forwarded, "for=\"10.0.0.2:43210\"");
  EXPECT_EQ(request->baggage, "k8s.namespace.name=default,k8s.deployment.name=client");
  EXPECT_EQ(request->traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(request->other_headers, (std::vector<Header>{{"x-istio-extra", "1"}}));
  EXPECT_EQ(client.streams[*id].status, 0);  // no answer yet

  ASSERT_TRUE(server->respond(*id, kStatusOk).ok());
  pump(client, server);
  EXPECT_EQ(client.streams[*id].status, kStatusOk);
  EXPECT_EQ(client->stats().streams_opened, 1u);
  EXPECT_EQ(server->stats().streams_active, 1u);
}

TEST(H2SessionTest, ForwardedQuotesIpv6) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  ConnectHeaders headers;
  headers.forwarded_for = SocketAddress::parse("[fd00::2]:5000").value();
  auto id = client->openConnect("[fd00::1]:8080", headers);
  ASSERT_TRUE(id.ok());
  pump(client, server);
  ASSERT_TRUE(server.streams[*id].request.has_value());
  EXPECT_EQ(server.streams[*id].request->forwarded, "for=\"[fd00::2]:5000\"");
  EXPECT_EQ(server.streams[*id].request->target.port, 8080);
}

TEST(H2SessionTest, DataFlowsBothWaysByteExact) {
  Tunnel t;
  const std::vector<uint8_t> up = pattern(5 * kMiB + 123, 1);
  const std::vector<uint8_t> down = pattern(3 * kMiB + 7, 2);
  size_t up_offset = 0;
  size_t down_offset = 0;
  for (int round = 0; up_offset < up.size() || down_offset < down.size(); ++round) {
    ASSERT_LT(round, 100000);
    if (up_offset < up.size()) {
      auto n = t.client->send(
          t.id, std::span(up).subspan(up_offset, std::min<size_t>(7777, up.size() - up_offset)));
      ASSERT_TRUE(n.ok());
      up_offset += *n;
    }
    if (down_offset < down.size()) {
      auto n = t.server->send(
          t.id,
          std::span(down).subspan(down_offset, std::min<size_t>(65536, down.size() - down_offset)));
      ASSERT_TRUE(n.ok());
      down_offset += *n;
    }
    if (round % 8 == 0) {
      pump(t.client, t.server);
    }
  }
  pump(t.client, t.server);
  EXPECT_EQ(t.server.streams[t.id].data, std::string(up.begin(), up.end()));
  EXPECT_EQ(t.client.streams[t.id].data, std::string(down.begin(), down.end()));
  EXPECT_EQ(t.client->stats().bytes_sent, up.size());
  EXPECT_EQ(t.server->stats().bytes_received, up.size());
  EXPECT_EQ(t.server->stats().bytes_sent, down.size());
}

TEST(H2SessionTest, OutputViewSurvivesReceiveAndShortWrites) {
  Tunnel t;
  const std::vector<uint8_t> up = pattern(2 * kMiB + 11, 6);
  const std::vector<uint8_t> down = pattern(2 * kMiB + 13, 7);
  size_t up_offset = 0;
  size_t down_offset = 0;
  for (int round = 0; round < 200000; ++round) {
    if (up_offset < up.size()) {
      up_offset += *t.client->send(t.id, std::span(up).subspan(up_offset));
    }
    if (down_offset < down.size()) {
      down_offset += *t.server->send(t.id, std::span(down).subspan(down_offset));
    }
    // The client's write is "in flight" while it processes what the server wrote, and both
    // writes come up short.
    const std::span<const uint8_t> in_flight = t.client->pendingOutput();
    const std::vector<uint8_t> snapshot(in_flight.begin(), in_flight.end());
    const std::span<const uint8_t> from_server = t.server->pendingOutput();
    const size_t n_server = std::min<size_t>(from_server.size(), 1000 + round % 7000);
    ASSERT_TRUE(t.client->receive(from_server.first(n_server)).ok());
    t.server->consumeOutput(n_server);
    ASSERT_TRUE(std::equal(snapshot.begin(), snapshot.end(), in_flight.begin()));
    const size_t n_client = std::min<size_t>(in_flight.size(), 3000 + round % 5000);
    ASSERT_TRUE(t.server->receive(in_flight.first(n_client)).ok());
    t.client->consumeOutput(n_client);
    if (up_offset == up.size() && down_offset == down.size() && !t.client->wantsWrite() &&
        !t.server->wantsWrite()) {
      break;
    }
  }
  EXPECT_EQ(t.server.streams[t.id].data, std::string(up.begin(), up.end()));
  EXPECT_EQ(t.client.streams[t.id].data, std::string(down.begin(), down.end()));
}

TEST(H2SessionTest, BytesQueuedBeforeTheResponseFollowIt) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto id = client->openConnect("10.0.0.1:8080", {});
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(*client->send(*id, asBytes("early")), 5u);
  ASSERT_TRUE(client->endStream(*id).ok());
  pump(client, server);
  EXPECT_EQ(server.streams[*id].data, "");  // nothing before the tunnel is up
  ASSERT_TRUE(server->respond(*id, kStatusOk).ok());
  pump(client, server);
  EXPECT_EQ(server.streams[*id].data, "early");
  EXPECT_TRUE(server.streams[*id].ended);
}

TEST(H2SessionTest, HalfCloseEachDirectionIndependently) {
  Tunnel t;
  ASSERT_EQ(*t.client->send(t.id, asBytes("request")), 7u);
  ASSERT_TRUE(t.client->endStream(t.id).ok());
  pump(t.client, t.server);
  EXPECT_EQ(t.server.streams[t.id].data, "request");
  EXPECT_TRUE(t.server.streams[t.id].ended);
  EXPECT_FALSE(t.client.streams[t.id].ended);
  EXPECT_FALSE(t.client->send(t.id, asBytes("more")).ok());  // our side is done

  // The server still talks after the client's FIN, then closes its side too.
  ASSERT_EQ(*t.server->send(t.id, asBytes("response")), 8u);
  pump(t.client, t.server);
  EXPECT_EQ(t.client.streams[t.id].data, "response");
  EXPECT_FALSE(t.client.streams[t.id].ended);
  EXPECT_FALSE(t.server.streams[t.id].closed.has_value());
  ASSERT_TRUE(t.server->endStream(t.id).ok());
  pump(t.client, t.server);
  EXPECT_TRUE(t.client.streams[t.id].ended);
  EXPECT_EQ(t.client.streams[t.id].closed, kH2NoError);
  EXPECT_EQ(t.server.streams[t.id].closed, kH2NoError);
  EXPECT_EQ(t.client->stats().streams_active, 0u);
  EXPECT_EQ(t.server->stats().streams_active, 0u);
}

TEST(H2SessionTest, EndStreamWithEmptyQueueSendsEmptyFin) {
  Tunnel t;
  ASSERT_TRUE(t.server->endStream(t.id).ok());
  pump(t.client, t.server);
  EXPECT_TRUE(t.client.streams[t.id].ended);
  EXPECT_EQ(t.client.streams[t.id].data, "");
}

TEST(H2SessionTest, PingIsAcked) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto first = client->ping();
  auto second = client->ping();
  auto from_server = server->ping();
  ASSERT_TRUE(first.ok() && second.ok() && from_server.ok());
  pump(client, server);
  EXPECT_EQ(client.ping_acks, (std::vector<uint64_t>{*first, *second}));
  EXPECT_EQ(server.ping_acks, (std::vector<uint64_t>{*from_server}));
  EXPECT_EQ(client->stats().pings_acked, 2u);
}

TEST(H2SessionTest, GoawayDrainsThenCloses) {
  Tunnel t;
  ASSERT_TRUE(t.server->goaway().ok());
  pump(t.client, t.server);
  ASSERT_TRUE(t.client.goaway.has_value());
  EXPECT_EQ(t.client.goaway->second, kH2NoError);
  EXPECT_EQ(t.client->availableStreams(), 0u);
  EXPECT_FALSE(t.client->openConnect("10.0.0.1:8080", {}).ok());

  // The stream in flight finishes normally.
  ASSERT_EQ(*t.client->send(t.id, asBytes("bye")), 3u);
  ASSERT_TRUE(t.client->endStream(t.id).ok());
  ASSERT_TRUE(t.server->endStream(t.id).ok());
  pump(t.client, t.server);
  EXPECT_EQ(t.server.streams[t.id].data, "bye");
  EXPECT_EQ(t.client.streams[t.id].closed, kH2NoError);
  EXPECT_TRUE(t.server->isClosed());
  EXPECT_TRUE(t.client->isClosed());
}

TEST(H2SessionTest, RoleSpecificCallsAreRefused) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  EXPECT_FALSE(server->openConnect("10.0.0.1:8080", {}).ok());
  EXPECT_EQ(server->availableStreams(), 0u);
  EXPECT_FALSE(client->respond(1, kStatusOk).ok());
  EXPECT_FALSE(server->respond(1, kStatusOk).ok());  // no such request
  EXPECT_FALSE(client->send(1, asBytes("x")).ok());
  EXPECT_FALSE(client->consumed(1, 1).ok());
  EXPECT_EQ(h2ErrorName(kH2ConnectError), "CONNECT_ERROR");
}

}  // namespace
}  // namespace nodemesh::hbone::h2_session_test
