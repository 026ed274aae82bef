// H2Codec: malformed requests (RFC 9113 §8.1.1), requests the codec answers itself, resets both
// ways, GOAWAY with streams in flight and connection errors.

#include <gtest/gtest.h>

#include "tests/unit/waypoint/http2/h2_codec_test_util.h"

namespace nodemesh::waypoint::http2::test {
namespace {

using hbone::kH2Cancel;
using hbone::kH2ProtocolError;
using hbone::kH2RefusedStream;

RawClient::Fields with(RawClient::Fields fields, std::string name, std::string value) {
  fields.emplace_back(std::move(name), std::move(value));
  return fields;
}

RawClient::Fields without(RawClient::Fields fields, std::string_view name) {
  std::erase_if(fields, [name](const auto& field) { return field.first == name; });
  return fields;
}

TEST(H2CodecErrorsTest, MalformedRequestsAreResetWithProtocolError) {
  const std::vector<std::pair<std::string, RawClient::Fields>> cases = {
      {"no :path", without(rawGet(), ":path")},
      {"no :method", without(rawGet(), ":method")},
      {"no :scheme", without(rawGet(), ":scheme")},
      {"connection", with(rawGet(), "connection", "close")},
      {"keep-alive", with(rawGet(), "keep-alive", "timeout=5")},
      {"proxy-connection", with(rawGet(), "proxy-connection", "keep-alive")},
      {"transfer-encoding", with(rawGet(), "transfer-encoding", "chunked")},
      {"upgrade", with(rawGet(), "upgrade", "websocket")},
      {"te other than trailers", with(rawGet(), "te", "gzip")},
      {"invalid name character", with(rawGet(), "bad name", "1")},
      {"pseudo after regular", with(with(rawGet(), "accept", "*/*"), ":foo", "x")},
      {"unknown pseudo", with(rawGet(), ":foo", "bar")},
  };
  for (const auto& [what, fields] : cases) {
    RawClient raw;
    Recorder server(Role::kServer);
    const int32_t id = raw.request(fields);
    pump(raw, server);
    EXPECT_EQ(raw.closed[id], kH2ProtocolError) << what;
    EXPECT_EQ(raw.status.count(id), 0u) << what;
    EXPECT_EQ(server.requests, 0) << what;
    EXPECT_EQ(server->stats().requests_rejected, 1u) << what;
    EXPECT_EQ(server.streams[id].rejected_status, 0) << what;
    // Stream errors only: the connection still serves the next request.
    const int32_t next = raw.request(rawGet());
    pump(raw, server);
    EXPECT_EQ(server.requests, 1) << what;
    EXPECT_FALSE(raw.goaway_error.has_value()) << what;
    EXPECT_EQ(raw.closed.count(next), 0u) << what;
  }
}

TEST(H2CodecErrorsTest, UppercaseNameIsResetWithProtocolError) {
  // nghttp2 lowercases names on submit, so the block is built by hand (RFC 7541 §6.2.2:
  // literal without indexing, new name).
  Recorder server(Role::kServer);
  ASSERT_TRUE(
      server->receive(asBytes(std::string(kClientPreface) + frame(kSettings, 0, 0, ""))).ok());
  std::string block = getRequestBlock();
  block += hpackLiteral("X-Upper", "1");
  ASSERT_TRUE(server->receive(asBytes(frame(kHeaders, kEndHeaders | kEndStream, 1, block))).ok());
  std::string out = server.takeOutput();
  EXPECT_EQ(server.requests, 0);
  EXPECT_EQ(server.streams[1].rejected_status, 0);
  EXPECT_NE(out.find(frame(kRstStream, 0, 1, rstPayload(kH2ProtocolError))), std::string::npos);
  ASSERT_TRUE(
      server->receive(asBytes(frame(kHeaders, kEndHeaders | kEndStream, 3, getRequestBlock())))
          .ok());
  EXPECT_EQ(server.requests, 1);
}

TEST(H2CodecErrorsTest, TeTrailersIsAccepted) {
  RawClient raw;
  Recorder server(Role::kServer);
  const int32_t id = raw.request(with(rawGet(), "te", "trailers"));
  pump(raw, server);
  ASSERT_EQ(server.requests, 1);
  EXPECT_EQ(server.streams[id].request->headers, (HeaderList{{"te", "trailers"}}));
}

TEST(H2CodecErrorsTest, ContentLengthMustMatchTheData) {
  for (const std::string body : {"0123456789abcdefghij", "01234"}) {
    RawClient raw;
    Recorder server(Role::kServer);
    RawClient::Fields fields = with(rawGet(), "content-length", "10");
    fields[0].second = "POST";
    const int32_t id = raw.request(fields, body);
    pump(raw, server);
    EXPECT_EQ(raw.closed[id], kH2ProtocolError) << body.size();
    // The owner saw the request and learns that it ended badly.
    ASSERT_TRUE(server.streams[id].closed.has_value()) << body.size();
    EXPECT_EQ(server.streams[id].closed->error_code, kH2ProtocolError);
  }
}

TEST(H2CodecErrorsTest, HostMustAgreeWithAuthority) {
  RawClient raw;
  Recorder server(Role::kServer);
  const int32_t conflict = raw.request(with(rawGet(), "host", "b.test"));
  const int32_t host_only = raw.request(with(without(rawGet(), ":authority"), "host", "c.test"));
  pump(raw, server);
  EXPECT_EQ(raw.status[conflict], 400);
  EXPECT_EQ(server.streams[conflict].rejected_status, 400);
  ASSERT_EQ(server.requests, 1);
  EXPECT_EQ(server.streams[host_only].request->authority, "c.test");
  EXPECT_TRUE(server.streams[host_only].request->headers.empty());  // host became :authority
}

TEST(H2CodecErrorsTest, ConnectIsNotImplemented) {
  RawClient raw;
  Recorder server(Role::kServer);
  const int32_t id = raw.request({{":method", "CONNECT"}, {":authority", "10.0.0.1:80"}});
  pump(raw, server);
  EXPECT_EQ(raw.status[id], 501);
  EXPECT_EQ(server.requests, 0);
}

TEST(H2CodecErrorsTest, ResetsReachThePeerWithTheirCode) {
  Pair p;
  auto a = p.client->submitRequest(getRequest("/a"), false);
  auto b = p.client->submitRequest(getRequest("/b"), false);
  ASSERT_TRUE(a.ok() && b.ok());
  p.run();
  ASSERT_TRUE(p.server->respond(*a, ResponseHead{200, {}}, false).ok());
  p.run();
  ASSERT_TRUE(p.client->resetStream(*a, kH2Cancel).ok());
  ASSERT_TRUE(p.server->resetStream(*b, hbone::kH2InternalError).ok());
  p.run();
  EXPECT_EQ(p.server.streams[*a].closed->error_code, kH2Cancel);
  EXPECT_EQ(p.client.streams[*a].closed->error_code, kH2Cancel);  // the owner's own, once
  EXPECT_EQ(p.client.streams[*b].closed->error_code, hbone::kH2InternalError);
  EXPECT_FALSE(p.client.streams[*b].closed->retryable);  // the server saw it
  EXPECT_FALSE(p.server->sendData(*a, asBytes("late")).ok());
  EXPECT_FALSE(p.client->sendData(*b, asBytes("late")).ok());
  EXPECT_EQ(p.server->stats().resets_received, 1u);
  EXPECT_EQ(p.server->stats().resets_sent, 1u);
}

// The waypoint releases an upstream call when its response ends, from inside the END_STREAM
// event, before nghttp2 closes the stream: a reset then must not send RST_STREAM, or every
// request costs one and a peer's reset-flood limit (nghttp2: 1,000) ends the connection.
TEST(H2CodecErrorsTest, ResetOfAStreamBothSidesEndedSendsNothing) {
  Pair p;
  p.server.on_request = [&p](StreamId id, const RequestHead&) {
    EXPECT_TRUE(p.server->respond(id, ResponseHead{200, {}}, true).ok());
  };
  p.client.on_end_stream = [&p](StreamId id) {
    EXPECT_TRUE(p.client->resetStream(id, kH2Cancel).ok());
  };
  for (int i = 0; i < 3; ++i) {
    auto id = p.client->submitRequest(getRequest("/a"), true);
    ASSERT_TRUE(id.ok());
    p.run();
    ASSERT_TRUE(p.client.streams[*id].closed.has_value());
    EXPECT_EQ(p.client.streams[*id].closed->error_code, hbone::kH2NoError);
  }
  EXPECT_EQ(p.client->stats().resets_sent, 0u);
  EXPECT_EQ(p.server->stats().resets_received, 0u);

  // A stream the client still sends on is cancelled as before.
  auto open = p.client->submitRequest(getRequest("/b"), false);
  ASSERT_TRUE(open.ok());
  p.run();
  EXPECT_EQ(p.server->stats().resets_received, 1u);
}

TEST(H2CodecErrorsTest, GoawayMarksUnprocessedStreamsRetryable) {
  Pair p;
  auto a = p.client->submitRequest(getRequest("/a"), true);
  auto b = p.client->submitRequest(getRequest("/b"), true);
  ASSERT_TRUE(a.ok() && b.ok());
  p.run();
  ASSERT_EQ(p.server.requests, 2);
  ASSERT_TRUE(p.server->goaway().ok());
  const std::string goaway = p.server.takeOutput();  // in flight while the client sends more
  auto c = p.client->submitRequest(getRequest("/c"), true);
  auto d = p.client->submitRequest(getRequest("/d"), true);
  ASSERT_TRUE(c.ok() && d.ok());
  ASSERT_TRUE(transfer(p.client, p.server));
  EXPECT_EQ(p.server.requests, 2);  // nghttp2 ignores streams after its GOAWAY
  ASSERT_TRUE(p.client->receive(asBytes(goaway)).ok());
  ASSERT_TRUE(p.client.goaway.has_value());
  EXPECT_EQ(p.client.goaway->first, *b);
  for (StreamId id : {*c, *d}) {
    ASSERT_TRUE(p.client.streams[id].closed.has_value()) << id;
    EXPECT_EQ(p.client.streams[id].closed->error_code, kH2RefusedStream);
    EXPECT_TRUE(p.client.streams[id].closed->retryable);
  }
  EXPECT_EQ(p.client->availableStreams(), 0u);
  EXPECT_EQ(p.client->submitRequest(getRequest(), true).error().code, ESHUTDOWN);

  // The streams below last_stream_id still complete.
  for (StreamId id : {*a, *b}) {
    ASSERT_TRUE(p.server->respond(id, ResponseHead{200, {}}, true).ok());
  }
  p.run();
  for (StreamId id : {*a, *b}) {
    EXPECT_EQ(p.client.streams[id].response->status, 200);
    EXPECT_FALSE(p.client.streams[id].closed->retryable);
  }
  EXPECT_TRUE(p.client->isClosed());
  EXPECT_TRUE(p.server->isClosed());
}

TEST(H2CodecErrorsTest, RequestResetBeforeItLeftIsRetryable) {
  Pair p;
  auto id = p.client->submitRequest(getRequest(), false);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(p.client->resetStream(*id, kH2Cancel).ok());
  p.run();
  ASSERT_TRUE(p.client.streams[*id].closed.has_value());
  EXPECT_TRUE(p.client.streams[*id].closed->retryable);
  EXPECT_EQ(p.server.requests, 0);
}

TEST(H2CodecErrorsTest, GarbageIsAnErrorWithoutGoaway) {
  Recorder server(Role::kServer);
  server.takeOutput();  // our SETTINGS
  Status status = server->receive(asBytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, EPROTO);
  EXPECT_FALSE(goawayCode(server.takeOutput()).has_value());
  EXPECT_FALSE(server->wantsRead());
  EXPECT_TRUE(server->isClosed());
}

TEST(H2CodecErrorsTest, ConnectionErrorSendsGoawayAndCloses) {
  Pair p;
  p.run();
  // DATA on stream 0 is a connection error (RFC 9113 §6.1).
  Status status = p.server->receive(asBytes(frame(kData, 0, 0, "x")));
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("PROTOCOL_ERROR"), std::string::npos)
      << status.error().message;
  ASSERT_TRUE(transfer(p.server, p.client));
  ASSERT_TRUE(p.client.goaway.has_value());
  EXPECT_EQ(p.client.goaway->second, kH2ProtocolError);
  EXPECT_TRUE(p.server->isClosed());
  EXPECT_FALSE(p.server->receive(asBytes(frame(kPing, 0, 0, std::string(8, '\0')))).ok());
}

TEST(H2CodecErrorsTest, WrongRoleAndUnknownStreamsAreRefused) {
  Pair p;
  EXPECT_FALSE(p.server->submitRequest(getRequest(), true).ok());
  EXPECT_FALSE(p.client->respond(1, ResponseHead{200, {}}, true).ok());
  EXPECT_EQ(p.client->sendData(99, asBytes("x")).error().code, EPIPE);
  EXPECT_FALSE(p.client->consumed(99, 1).ok());
  EXPECT_FALSE(p.client->submitRequest(RequestHead{"GET", "http", "a", "", {}}, true).ok());
  EXPECT_FALSE(p.client->submitRequest(RequestHead{"GET", "http", "a b", "/", {}}, true).ok());
  EXPECT_FALSE(p.client->submitRequest(getRequest("/\r\n"), true).ok());
}

}  // namespace
}  // namespace nodemesh::waypoint::http2::test
