// ClientCodec: request framing, response framing by request method and status, interim
// responses, pipelining, reuse and malformed responses.

#include <gtest/gtest.h>

#include "tests/unit/waypoint/http1/http1_test_util.h"

namespace nodemesh::waypoint::http1::test {
namespace {

RequestHead request(std::string_view method, std::string_view target, const Headers& extra = {}) {
  RequestHead head;
  head.method = std::string(method);
  head.target = std::string(target);
  head.version = Version::kHttp10;  // the codec sends its own version regardless
  head.headers.add("Host", "reviews:9080");
  for (const HeaderField& field : extra.fields()) {
    head.headers.add(field.name, field.value);
  }
  return head;
}

TEST(Http1ClientTest, RequestsAreFramedByLengthOrChunked) {
  ClientRecorder c;
  ASSERT_TRUE(c->sendRequestHead(request("GET", "/a"), 0).ok());
  ASSERT_TRUE(c->sendEnd().ok());
  ASSERT_TRUE(c->sendRequestHead(request("POST", "/b", Headers{{"Content-Length", "1"}}), 3).ok());
  ASSERT_TRUE(c->sendBody(asBytes("abc")).ok());
  ASSERT_TRUE(c->sendEnd().ok());
  ASSERT_TRUE(c->sendRequestHead(request("POST", "/c"), 0).ok());
  ASSERT_TRUE(c->sendEnd().ok());
  ASSERT_TRUE(c->sendRequestHead(request("PUT", "/d"), std::nullopt).ok());
  ASSERT_TRUE(c->sendBody(asBytes("xy")).ok());
  ASSERT_TRUE(c->sendEnd(Headers{{"X-Sum", "1"}}).ok());
  EXPECT_EQ(c.output(),
            "GET /a HTTP/1.1\r\nHost: reviews:9080\r\n\r\n"
            "POST /b HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 3\r\n\r\nabc"
            "POST /c HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 0\r\n\r\n"
            "PUT /d HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked\r\n\r\n"
            "2\r\nxy\r\n0\r\nX-Sum: 1\r\n\r\n");
  EXPECT_EQ(c->outstandingRequests(), 4u);
}

TEST(Http1ClientTest, ContentLengthResponse) {
  ClientRecorder c;
  c.get();
  EXPECT_TRUE(c->messageInProgress());
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: t\r\n\r\nhel").ok());
  ASSERT_EQ(c.responses.size(), 1u);
  EXPECT_EQ(c.responses[0].head.status, 200);
  EXPECT_EQ(c.responses[0].head.reason, "OK");
  EXPECT_EQ(c.responses[0].head.headers.get("server"), "t");
  EXPECT_EQ(c.responses[0].info.framing, BodyFraming::kContentLength);
  EXPECT_EQ(c.responses[0].body, "hel");
  EXPECT_FALSE(c.responses[0].complete);
  ASSERT_TRUE(c.feed("lo").ok());
  EXPECT_TRUE(c.responses[0].complete);
  EXPECT_FALSE(c->messageInProgress());
  EXPECT_TRUE(c->isReusable());
}

TEST(Http1ClientTest, ChunkedResponseWithTrailersByteAtATime) {
  ClientRecorder c;
  c.get();
  ASSERT_TRUE(
      c.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             "4\r\nwiki\r\n5;ext=1\r\npedia\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n",
             1)
          .ok());
  ASSERT_EQ(c.responses.size(), 1u);
  EXPECT_EQ(c.responses[0].body, "wikipedia");
  EXPECT_EQ(c.responses[0].trailers, (Headers{{"grpc-status", "0"}, {"grpc-message", "ok"}}));
  EXPECT_TRUE(c.responses[0].complete);
  EXPECT_TRUE(c->isReusable());
}

TEST(Http1ClientTest, HeadResponseHasNoBodyDespiteContentLength) {
  ClientRecorder c;
  c.get("HEAD");
  c.get("GET", "/next");
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                  .ok());
  ASSERT_EQ(c.responses.size(), 2u);
  EXPECT_EQ(c.responses[0].info.framing, BodyFraming::kNone);
  EXPECT_EQ(c.responses[0].info.content_length, 1234u);  // as declared
  EXPECT_TRUE(c.responses[0].complete);
  EXPECT_EQ(c.responses[1].body, "ok");
  EXPECT_TRUE(c->isReusable());
}

TEST(Http1ClientTest, NoBodyFor204And304EvenWithFramingFields) {
  ClientRecorder c;
  c.get();
  c.get();
  c.get();
  ASSERT_TRUE(c.feed("HTTP/1.1 204 No Content\r\n\r\n"
                     "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz")
                  .ok());
  ASSERT_EQ(c.responses.size(), 3u);
  EXPECT_EQ(c.responses[0].head.status, 204);
  EXPECT_EQ(c.responses[1].head.status, 304);
  EXPECT_EQ(c.responses[1].body, "");
  EXPECT_EQ(c.responses[2].body, "z");
}

TEST(Http1ClientTest, CloseDelimitedResponseEndsAtEof) {
  ClientRecorder c;
  c.get();
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome").ok());
  ASSERT_TRUE(c.feed(" more").ok());
  ASSERT_EQ(c.responses.size(), 1u);
  EXPECT_EQ(c.responses[0].info.framing, BodyFraming::kUntilClose);
  EXPECT_FALSE(c.responses[0].info.keep_alive);
  EXPECT_FALSE(c.responses[0].complete);
  ASSERT_TRUE(c->receiveEof().ok());
  EXPECT_EQ(c.responses[0].body, "some more");
  EXPECT_TRUE(c.responses[0].complete);
  EXPECT_FALSE(c->isReusable());
  EXPECT_FALSE(c->shouldClose());  // the request is not written out yet
  c.output();
  EXPECT_TRUE(c->shouldClose());
}

TEST(Http1ClientTest, TransferCodingOtherThanChunkedIsCloseDelimited) {
  ClientRecorder c;
  c.get();
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz").ok());
  ASSERT_TRUE(c->receiveEof().ok());
  EXPECT_EQ(c.responses.at(0).body, "xyz");
}

TEST(Http1ClientTest, InterimResponsesPrecedeTheFinalOne) {
  ClientRecorder c;
  ASSERT_TRUE(
      c->sendRequestHead(request("PUT", "/x", Headers{{"Expect", "100-continue"}}), 2).ok());
  ASSERT_TRUE(c.feed("HTTP/1.1 100 Continue\r\n\r\n").ok());
  EXPECT_EQ(c.interims, std::vector<int>{100});
  EXPECT_TRUE(c.responses.empty());
  ASSERT_TRUE(c->sendBody(asBytes("hi")).ok());
  ASSERT_TRUE(c->sendEnd().ok());
  ASSERT_TRUE(c.feed("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                  .ok());
  EXPECT_EQ(c.interims, (std::vector<int>{100, 103}));
  ASSERT_EQ(c.responses.size(), 1u);
  EXPECT_EQ(c.responses[0].head.status, 201);
  EXPECT_TRUE(c->isReusable());
}

TEST(Http1ClientTest, ConnectionCloseFromEitherSideEndsReuse) {
  ClientRecorder c;
  c.get();
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok());
  EXPECT_FALSE(c->isReusable());
  EXPECT_FALSE(c->sendRequestHead(request("GET", "/"), 0).ok());
  c.output();
  EXPECT_TRUE(c->shouldClose());
  EXPECT_FALSE(c.feed("HTTP/1.1 200 OK\r\n").ok());  // nothing may follow the last response

  ClientRecorder d;
  ASSERT_TRUE(d->sendRequestHead(request("GET", "/", Headers{{"Connection", "close"}}), 0).ok());
  ASSERT_TRUE(d->sendEnd().ok());
  EXPECT_NE(d.output().find("Connection: close\r\n"), std::string::npos);
  EXPECT_FALSE(d->sendRequestHead(request("GET", "/"), 0).ok());
  ASSERT_TRUE(d.feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").ok());
  EXPECT_FALSE(d->isReusable());
}

TEST(Http1ClientTest, Http10ResponseIsNotKeptAliveUnlessItSaysSo) {
  ClientRecorder c;
  c.get();
  ASSERT_TRUE(c.feed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").ok());
  EXPECT_FALSE(c->isReusable());
  ClientRecorder d;
  d.get();
  ASSERT_TRUE(
      d.feed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n").ok());
  EXPECT_TRUE(d->isReusable());
}

TEST(Http1ClientTest, ResponseBeforeTheRequestBodyEndsReuse) {
  ClientRecorder c;
  ASSERT_TRUE(c->sendRequestHead(request("POST", "/up"), 100).ok());
  ASSERT_TRUE(c.feed("HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n").ok());
  EXPECT_TRUE(c.responses.at(0).complete);
  EXPECT_FALSE(c->isReusable());
}

TEST(Http1ClientTest, OutstandingRequestsAreBounded) {
  CodecOptions options;
  options.max_outstanding_requests = 2;
  ClientRecorder c(options);
  c.get();
  c.get();
  EXPECT_FALSE(c->sendRequestHead(request("GET", "/"), 0).ok());
}

TEST(Http1ClientTest, UpgradeAndConnectAreNotSent) {
  ClientRecorder c;
  EXPECT_FALSE(c->sendRequestHead(request("GET", "/", Headers{{"Upgrade", "websocket"}}), 0).ok());
  EXPECT_FALSE(c->sendRequestHead(request("CONNECT", "a:443"), 0).ok());
  EXPECT_EQ(c.output(), "");
}

TEST(Http1ClientTest, IdleCloseIsClean) {
  ClientRecorder c;
  c.get();
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").ok());
  ASSERT_TRUE(c->receiveEof().ok());
  EXPECT_TRUE(c.errors.empty());
  EXPECT_FALSE(c->isReusable());
}

struct BadResponse {
  const char* name;
  std::string input;
};

void PrintTo(const BadResponse& c, std::ostream* os) {
  *os << c.name;
}

class Http1ClientRejectTest : public testing::TestWithParam<BadResponse> {};

TEST_P(Http1ClientRejectTest, FailsTheConnection) {
  for (size_t step : {GetParam().input.size(), size_t{1}}) {
    ClientRecorder c;
    c.get();
    EXPECT_FALSE(c.feed(GetParam().input, step).ok());
    ASSERT_EQ(c.errors.size(), 1u);
    EXPECT_EQ(c.errors[0].status, 502);
    EXPECT_TRUE(c->shouldClose());
    EXPECT_FALSE(c->isReusable());
    EXPECT_FALSE(c->receive(asBytes("x")).ok());
    for (const RecordedResponse& r : c.responses) {
      EXPECT_FALSE(r.complete);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Responses, Http1ClientRejectTest,
    testing::Values(
        BadResponse{
            "ClAndTe",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        BadResponse{"DifferentContentLengths",
                    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
        BadResponse{"BadContentLength", "HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc"},
        BadResponse{"TeInHttp10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        BadResponse{"UnknownCodingBeforeChunked",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
        BadResponse{"ObsFold", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n"},
        BadResponse{"BareLf", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"},
        BadResponse{"SpaceBeforeColon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"},
        BadResponse{"NulInValue",
                    std::string("HTTP/1.1 200 OK\r\nX: \0\r\nContent-Length: 0\r\n\r\n", 44)},
        BadResponse{"BadStatusLine", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"},
        BadResponse{"StatusBelow100", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n"},
        BadResponse{"NotHttp", "SSH-2.0-OpenSSH_9.2\r\n\r\n"},
        BadResponse{"Http2Version", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"},
        BadResponse{"SwitchingProtocols",
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"},
        BadResponse{"BadChunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n"},
        BadResponse{"StatusLineTooLong",
                    "HTTP/1.1 200 " + std::string(17 * 1024, 'k') + "\r\n\r\n"},
        BadResponse{"HeadersTooLarge",
                    "HTTP/1.1 200 OK\r\nX: " + std::string(61 * 1024, 'v') + "\r\n\r\n"}));

TEST(Http1ClientRejectEofTest, EofMidResponseIsAnError) {
  ClientRecorder c;
  c.get();
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345").ok());
  EXPECT_FALSE(c->receiveEof().ok());
  EXPECT_EQ(c.errors.size(), 1u);
  EXPECT_FALSE(c.responses.at(0).complete);
  ClientRecorder d;
  d.get();
  EXPECT_FALSE(d->receiveEof().ok());  // no response at all
}

TEST(Http1ClientRejectEofTest, ResponseBeyondTheRequestsIsAnError) {
  // A second response to one request: a desynchronized (or smuggling) upstream.
  ClientRecorder c;
  c.get();
  EXPECT_FALSE(c.feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n").ok());
  ASSERT_EQ(c.responses.size(), 1u);
  EXPECT_TRUE(c.responses[0].complete);
  EXPECT_EQ(c.errors.size(), 1u);
  EXPECT_TRUE(c->shouldClose());
}

TEST(Http1ClientRejectEofTest, UnsolicitedBytesAreAnError) {
  ClientRecorder c;
  EXPECT_FALSE(c.feed("HTTP/1.1 200 OK\r\n\r\n").ok());
  EXPECT_EQ(c.errors.size(), 1u);
}

}  // namespace
}  // namespace nodemesh::waypoint::http1::test
