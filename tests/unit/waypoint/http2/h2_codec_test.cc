// H2Codec: requests and responses between our client and server codecs, bodies larger than the
// windows, trailers, gRPC, interim responses, multiplexing and PING.

#include <gtest/gtest.h>

#include "tests/unit/waypoint/http2/h2_codec_test_util.h"
#include "waypoint/http2/grpc.h"

namespace nodemesh::waypoint::http2::test {
namespace {

TEST(H2CodecTest, RequestAndResponseWithBodiesAndTrailers) {
  Pair p;
  RequestHead head = grpcRequest();
  head.headers.push_back({"x-request-id", "abc"});
  auto id = p.client->submitRequest(head, /*end_stream=*/false);
  ASSERT_TRUE(id.ok()) << id.error().message;
  ASSERT_EQ(*p.client->sendData(*id, asBytes("request-body")), 12u);
  ASSERT_TRUE(p.client->endStream(*id).ok());
  p.run();

  ASSERT_EQ(p.server.requests, 1);
  const Recorder::StreamLog& at_server = p.server.streams[*id];
  ASSERT_TRUE(at_server.request.has_value());
  EXPECT_EQ(*at_server.request, head);
  EXPECT_FALSE(at_server.headers_end_stream);
  EXPECT_EQ(at_server.data, "request-body");
  EXPECT_TRUE(at_server.ended);

  ASSERT_TRUE(
      p.server->respond(*id, ResponseHead{200, {{"content-type", "application/grpc"}}}, false)
          .ok());
  ASSERT_EQ(*p.server->sendData(*id, asBytes("response-body")), 13u);
  ASSERT_TRUE(p.server->sendTrailers(*id, {{"grpc-status", "0"}, {"grpc-message", "ok"}}).ok());
  EXPECT_FALSE(p.server->sendData(*id, asBytes("late")).ok());
  p.run();

  const Recorder::StreamLog& at_client = p.client.streams[*id];
  ASSERT_TRUE(at_client.response.has_value());
  EXPECT_EQ(at_client.response->status, 200);
  EXPECT_EQ(at_client.response->headers, (HeaderList{{"content-type", "application/grpc"}}));
  EXPECT_EQ(at_client.data, "response-body");
  EXPECT_EQ(at_client.trailers, (HeaderList{{"grpc-status", "0"}, {"grpc-message", "ok"}}));
  EXPECT_TRUE(at_client.ended);
  ASSERT_TRUE(at_client.closed.has_value());
  EXPECT_EQ(at_client.closed->error_code, hbone::kH2NoError);
  EXPECT_FALSE(at_client.closed->retryable);
  EXPECT_EQ(p.server.streams[*id].closed->error_code, hbone::kH2NoError);
  EXPECT_EQ(p.client->stats().streams_active, 0u);
  EXPECT_EQ(p.server->stats().streams_active, 0u);
}

TEST(H2CodecTest, RequestTrailersReachTheServer) {
  Pair p;
  auto id = p.client->submitRequest(grpcRequest(), false);
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(*p.client->sendData(*id, asBytes("msg")), 3u);
  ASSERT_TRUE(p.client->sendTrailers(*id, {{"x-checksum", "42"}}).ok());
  p.run();
  EXPECT_EQ(p.server.streams[*id].data, "msg");
  EXPECT_EQ(p.server.streams[*id].trailers, (HeaderList{{"x-checksum", "42"}}));
  EXPECT_TRUE(p.server.streams[*id].ended);
}

TEST(H2CodecTest, BodiesLargerThanTheWindowsArriveIntact) {
  Pair p;
  const std::string up_body = pattern(6 * kMiB + 17, 1);  // > connection window (4 MiB)
  const std::string down_body = pattern(5 * kMiB + 3, 2);
  const std::string_view up = up_body;
  const std::string_view down = down_body;
  auto id = p.client->submitRequest(RequestHead{"PUT", "http", "a", "/upload", {}}, false);
  ASSERT_TRUE(id.ok());
  p.server.on_request = [&p](StreamId stream, const RequestHead&) {
    EXPECT_TRUE(p.server->respond(stream, ResponseHead{200, {}}, false).ok());
  };
  size_t up_off = 0;
  size_t down_off = 0;
  bool server_ended = false;
  for (int round = 0; round < 100000 && !server_ended; ++round) {
    if (up_off < up.size()) {
      auto n = p.client->sendData(*id, asBytes(up.substr(up_off, 50000)));
      ASSERT_TRUE(n.ok()) << n.error().message;
      up_off += *n;
      if (up_off == up.size()) {
        ASSERT_TRUE(p.client->endStream(*id).ok());
      }
    }
    if (p.server.requests == 1 && down_off < down.size()) {
      auto n = p.server->sendData(*id, asBytes(down.substr(down_off)));
      ASSERT_TRUE(n.ok()) << n.error().message;
      down_off += *n;
    }
    // The response ends after the whole request arrived: ending it earlier would stop the
    // upload with RST_STREAM NO_ERROR (RFC 9113 §8.1).
    if (down_off == down.size() && p.server.streams[*id].ended) {
      ASSERT_TRUE(p.server->endStream(*id).ok());
      server_ended = true;
    }
    p.run();
  }
  p.run();
  EXPECT_EQ(p.server.streams[*id].data.size(), up.size());
  EXPECT_TRUE(p.server.streams[*id].data == up);
  EXPECT_TRUE(p.client.streams[*id].data == down);
  EXPECT_TRUE(p.client.streams[*id].ended);
  EXPECT_EQ(p.client->stats().bytes_sent, up.size());
  EXPECT_EQ(p.server->stats().bytes_received, up.size());
}

TEST(H2CodecTest, UnconsumedBodyStopsTheSenderAtTheStreamWindow) {
  H2CodecOptions server_options;
  server_options.initial_stream_window = 64 * kKiB;
  Pair p({}, server_options);
  p.server.auto_consume = false;
  auto id = p.client->submitRequest(RequestHead{"POST", "http", "a", "/", {}}, false);
  ASSERT_TRUE(id.ok());
  const std::string chunk = pattern(32 * kKiB, 3);
  size_t accepted = 0;
  for (int round = 0; round < 100; ++round) {
    const size_t n = *p.client->sendData(*id, asBytes(chunk));
    accepted += n;
    p.run();
    if (n == 0) {
      break;
    }
  }
  // The server holds exactly one stream window; the rest waits in the bounded send queue.
  EXPECT_EQ(p.server.streams[*id].data.size(), 64 * kKiB);
  EXPECT_EQ(p.client->queuedBytes(*id), 256 * kKiB);
  EXPECT_EQ(accepted, 64 * kKiB + 256 * kKiB);
  EXPECT_EQ(p.client.streams[*id].writable, 0);

  EXPECT_FALSE(p.server->consumed(*id, 64 * kKiB + 1).ok());
  // The owner writes the bytes on: the window reopens and the queue drains.
  size_t given_back = 0;
  for (int round = 0; round < 20 && given_back < p.server.streams[*id].data.size(); ++round) {
    const size_t held = p.server.streams[*id].data.size() - given_back;
    ASSERT_TRUE(p.server->consumed(*id, held).ok());
    given_back += held;
    p.run();
  }
  EXPECT_EQ(p.server.streams[*id].data.size(), accepted);
  EXPECT_EQ(p.client->queuedBytes(*id), 0u);
  EXPECT_GE(p.client.streams[*id].writable, 1);  // the queue drained below half
}

TEST(H2CodecTest, ConsumedAfterCloseReopensTheConnectionWindow) {
  H2CodecOptions server_options;
  server_options.connection_window = 1 * kMiB;  // one stream can use all of it
  Pair p({}, server_options);
  p.server.auto_consume = false;
  auto a = p.client->submitRequest(RequestHead{"POST", "http", "a", "/a", {}}, false);
  auto b = p.client->submitRequest(RequestHead{"POST", "http", "a", "/b", {}}, false);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string chunk = pattern(128 * kKiB, 5);
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(p.client->sendData(*a, asBytes(chunk)).ok());
    p.run();
  }
  ASSERT_EQ(p.server.streams[*a].data.size(), 1 * kMiB);
  ASSERT_EQ(*p.client->sendData(*b, asBytes("stuck")), 5u);
  p.run();
  EXPECT_EQ(p.server.streams[*b].data, "");  // the connection window is used up by a

  // a ends with its bytes still held; once they are written on, b moves.
  ASSERT_TRUE(p.client->resetStream(*a, hbone::kH2Cancel).ok());
  p.run();
  EXPECT_EQ(p.server.streams[*a].closed->error_code, hbone::kH2Cancel);
  EXPECT_EQ(p.server.streams[*b].data, "");
  ASSERT_TRUE(p.server->consumed(*a, 1 * kMiB).ok());
  p.run();
  EXPECT_EQ(p.server.streams[*b].data, "stuck");
}

TEST(H2CodecTest, BodyOfARejectedRequestDoesNotHoldTheConnectionWindow) {
  H2CodecOptions server_options;
  server_options.connection_window = 256 * kKiB;
  server_options.max_header_list_bytes = 4 * kKiB;
  RawClient raw;
  Recorder server(Role::kServer, server_options);
  RawClient::Fields big = rawGet();
  big[0].second = "POST";
  big.emplace_back("cookie", std::string(8 * kKiB, 'c'));
  const int32_t rejected = raw.request(big, pattern(1 * kMiB, 6));  // 4x the connection window
  RawClient::Fields fine = rawGet();
  fine[0].second = "POST";
  const int32_t ok = raw.request(fine, "after");
  pump(raw, server);
  EXPECT_EQ(raw.status[rejected], 431);
  EXPECT_EQ(server.streams[ok].data, "after");
  EXPECT_TRUE(server.streams[ok].ended);
}

TEST(H2CodecTest, GrpcTrailersOnlyResponse) {
  Pair p;
  auto id = p.client->submitRequest(grpcRequest(), false);
  ASSERT_TRUE(id.ok());
  p.run();
  ASSERT_TRUE(isGrpcRequest(*p.server.streams[*id].request));
  // The waypoint has no upstream: UNAVAILABLE, in one HEADERS frame with END_STREAM.
  ASSERT_TRUE(
      p.server->respond(*id, grpcErrorForHttpStatus(503, "no healthy upstream"), true).ok());
  p.run();
  const Recorder::StreamLog& log = p.client.streams[*id];
  ASSERT_TRUE(log.response.has_value());
  EXPECT_TRUE(log.headers_end_stream);
  EXPECT_EQ(log.response->status, 200);
  EXPECT_EQ(findHeader(log.response->headers, "grpc-status"), "14");
  EXPECT_EQ(findHeader(log.response->headers, "grpc-message"), "no healthy upstream");
  EXPECT_FALSE(log.trailers.has_value());
  EXPECT_TRUE(log.ended);
  // The client never finished its request: the server stopped it with NO_ERROR (§8.1).
  ASSERT_TRUE(log.closed.has_value());
  EXPECT_EQ(log.closed->error_code, hbone::kH2NoError);
  EXPECT_FALSE(p.client->sendData(*id, asBytes("x")).ok());
}

TEST(H2CodecTest, InformationalResponsesComeBeforeTheFinalOne) {
  Pair p;
  RequestHead head{"POST", "http", "a", "/", {{"expect", "100-continue"}}};
  auto id = p.client->submitRequest(head, false);
  ASSERT_TRUE(id.ok());
  p.run();
  ASSERT_TRUE(p.server->respond(*id, ResponseHead{100, {}}, false).ok());
  EXPECT_FALSE(p.server->respond(*id, ResponseHead{103, {}}, true).ok());  // 1xx cannot end
  EXPECT_FALSE(p.server->sendData(*id, asBytes("x")).ok());                // no final response yet
  p.run();
  EXPECT_EQ(p.client.streams[*id].informational, (std::vector<int>{100}));
  EXPECT_FALSE(p.client.streams[*id].response.has_value());
  ASSERT_TRUE(p.server->respond(*id, ResponseHead{204, {}}, true).ok());
  EXPECT_FALSE(p.server->respond(*id, ResponseHead{200, {}}, true).ok());  // answered already
  p.run();
  ASSERT_TRUE(p.client.streams[*id].response.has_value());
  EXPECT_EQ(p.client.streams[*id].response->status, 204);
}

TEST(H2CodecTest, ManyStreamsMultiplexOnOneConnection) {
  Pair p;
  p.server.on_request = [&p](StreamId stream, const RequestHead& head) {
    ASSERT_TRUE(p.server->respond(stream, ResponseHead{200, {}}, false).ok());
    ASSERT_TRUE(p.server->sendData(stream, asBytes(head.path)).ok());
  };
  std::map<StreamId, std::string> paths;
  for (int i = 0; i < 100; ++i) {
    const std::string path = "/item/" + std::to_string(i);
    auto id = p.client->submitRequest(getRequest(path), true);
    ASSERT_TRUE(id.ok()) << i;
    paths[*id] = path;
  }
  EXPECT_EQ(p.client->availableStreams(), 0u);
  EXPECT_EQ(p.client->submitRequest(getRequest(), true).error().code, EAGAIN);
  p.run();
  ASSERT_EQ(p.server.requests, 100);
  for (const auto& [id, path] : paths) {
    EXPECT_EQ(p.client.streams[id].data, path);  // no interleaving across streams
    ASSERT_TRUE(p.server->endStream(id).ok());
  }
  p.run();
  for (const auto& [id, path] : paths) {
    ASSERT_TRUE(p.client.streams[id].closed.has_value()) << path;
  }
  EXPECT_EQ(p.client->availableStreams(), 100u);
}

TEST(H2CodecTest, PingIsAcknowledged) {
  Pair p;
  auto opaque = p.client->ping();
  ASSERT_TRUE(opaque.ok());
  p.run();
  EXPECT_EQ(p.client.ping_acks, (std::vector<uint64_t>{*opaque}));
  EXPECT_EQ(p.client->stats().pings_acked, 1u);
}

TEST(H2CodecTest, HttpOneStyleHeadsAreCleanedBeforeSending) {
  Pair p;
  RequestHead head{"GET",
                   "http",
                   "",
                   "/",
                   {{"Host", "ratings:9080"},
                    {"Connection", "keep-alive, X-Hop"},
                    {"X-Hop", "1"},
                    {"Transfer-Encoding", "chunked"},
                    {"Accept", "*/*"}}};
  auto id = p.client->submitRequest(head, true);
  ASSERT_TRUE(id.ok()) << id.error().message;
  p.run();
  ASSERT_TRUE(p.server.streams[*id].request.has_value());
  EXPECT_EQ(p.server.streams[*id].request->authority, "ratings:9080");
  EXPECT_EQ(p.server.streams[*id].request->headers, (HeaderList{{"accept", "*/*"}}));
  EXPECT_TRUE(p.server.streams[*id].headers_end_stream);
  EXPECT_TRUE(p.server.streams[*id].ended);
}

}  // namespace
}  // namespace nodemesh::waypoint::http2::test
