// ServerCodec on valid input: parsing, bodies, keep-alive, pipelining, Expect, Upgrade,
// response framing and the request timeout.

#include <gtest/gtest.h>

#include "tests/unit/waypoint/http1/http1_test_util.h"

namespace nodemesh::waypoint::http1::test {
namespace {

constexpr std::string_view kGet =
    "GET /api/v1/items?id=7 HTTP/1.1\r\nHost: reviews.default:9080\r\nUser-Agent: t\r\n"
    "X-Multi: a\r\nx-multi: b\r\n\r\n";

TEST(Http1ServerTest, ParsesRequestHead) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed(kGet).ok());
  ASSERT_EQ(s.requests.size(), 1u);
  const RecordedRequest& r = s.requests[0];
  EXPECT_EQ(r.head.method, "GET");
  EXPECT_EQ(r.head.target, "/api/v1/items?id=7");
  EXPECT_EQ(r.head.version, Version::kHttp11);
  EXPECT_EQ(r.head.headers.fields(), (std::vector<HeaderField>{{"Host", "reviews.default:9080"},
                                                               {"User-Agent", "t"},
                                                               {"X-Multi", "a"},
                                                               {"x-multi", "b"}}));
  EXPECT_EQ(r.info.target_form, TargetForm::kOrigin);
  EXPECT_EQ(r.info.authority, "reviews.default:9080");
  EXPECT_EQ(r.info.path, "/api/v1/items?id=7");
  EXPECT_EQ(r.info.framing, BodyFraming::kNone);
  EXPECT_TRUE(r.info.keep_alive);
  EXPECT_FALSE(r.info.expect_continue);
  EXPECT_FALSE(r.info.upgrade);
  EXPECT_TRUE(r.complete);
  EXPECT_TRUE(s->messageInProgress() == false);
  EXPECT_FALSE(s->wantsRead());  // waiting for the response
}

TEST(Http1ServerTest, FieldValuesAreTrimmed) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nHost:a\r\nX-A: \t v 1 \t\r\nX-Empty:\r\n\r\n").ok());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_EQ(s.requests[0].head.headers.get("x-a"), "v 1");
  EXPECT_EQ(s.requests[0].head.headers.get("x-empty"), "");
}

TEST(Http1ServerTest, ContentLengthBodyIsStreamed) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello").ok());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_EQ(s.requests[0].info.framing, BodyFraming::kContentLength);
  EXPECT_EQ(s.requests[0].info.content_length, 11u);
  EXPECT_EQ(s.requests[0].body, "hello");  // handed out before the rest arrived
  EXPECT_FALSE(s.requests[0].complete);
  EXPECT_TRUE(s->messageInProgress());
  ASSERT_TRUE(s.feed(" world").ok());
  EXPECT_EQ(s.requests[0].body, "hello world");
  EXPECT_TRUE(s.requests[0].complete);
}

TEST(Http1ServerTest, ChunkedBodyWithExtensionsAndTrailers) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5;name=value;q=\"a \\\"b\\\"\"\r\nhello\r\n"
                     "a\r\n0123456789\r\n"
                     "0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n")
                  .ok());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_EQ(s.requests[0].info.framing, BodyFraming::kChunked);
  EXPECT_EQ(s.requests[0].body, "hello0123456789");
  EXPECT_EQ(s.requests[0].trailers, (Headers{{"X-Checksum", "abc"}, {"X-Other", "1"}}));
  EXPECT_TRUE(s.requests[0].complete);
}

TEST(Http1ServerTest, ChunkedWithoutTrailersReportsNone) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
                     "3\r\nabc\r\n0\r\n\r\n")
                  .ok());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_EQ(s.requests[0].body, "abc");
  EXPECT_TRUE(s.requests[0].trailers.empty());
  EXPECT_TRUE(s.requests[0].complete);
}

// The same messages, fed whole and a byte at a time, give the same events.
TEST(Http1ServerTest, ByteAtATimeMatchesWhole) {
  const std::string input =
      "\r\nPOST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
      "PUT /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;x\r\nab\r\n0\r\nT: "
      "1\r\n\r\n"
      "GET /c HTTP/1.0\r\n\r\n";
  for (size_t step : {size_t{1}, size_t{2}, size_t{7}, input.size()}) {
    ServerRecorder s;
    s.on_complete = [&] { s.respond(200, "ok"); };
    ASSERT_TRUE(s.feed(input, step).ok()) << step;
    ASSERT_EQ(s.requests.size(), 3u) << step;
    EXPECT_EQ(s.requests[0].head.target, "/a");
    EXPECT_EQ(s.requests[0].body, "body");
    EXPECT_EQ(s.requests[1].body, "ab");
    EXPECT_EQ(s.requests[1].trailers, (Headers{{"T", "1"}}));
    EXPECT_EQ(s.requests[2].head.version, Version::kHttp10);
    EXPECT_FALSE(s.requests[2].info.keep_alive);
    EXPECT_FALSE(s->shouldClose());  // the last response is not written out yet
    s.output();
    EXPECT_TRUE(s->shouldClose());  // the HTTP/1.0 request ended the connection
    EXPECT_TRUE(s.backlog.empty());
  }
}

TEST(Http1ServerTest, PipelinedRequestsWaitForTheResponse) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                     "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
                  .ok());
  ASSERT_EQ(s.requests.size(), 1u);  // /2 and /3 stay with the owner
  EXPECT_EQ(s.backlog.size(), 2 * std::string_view("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n").size());
  EXPECT_FALSE(s->wantsRead());
  auto again = s->receive(asBytes(s.backlog));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);

  s.respond(200, "one");
  EXPECT_TRUE(s->wantsRead());
  ASSERT_TRUE(s.feed("").ok());
  ASSERT_EQ(s.requests.size(), 2u);
  EXPECT_EQ(s.requests[1].head.target, "/2");
  s.respond(404, "");
  ASSERT_TRUE(s.feed("").ok());
  ASSERT_EQ(s.requests.size(), 3u);
  EXPECT_EQ(s.requests[2].head.target, "/3");
  s.respond(200, "three");
  EXPECT_EQ(s.output(),
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthree");
  EXPECT_EQ(s->stats().requests, 3u);
  EXPECT_EQ(s->stats().responses, 3u);
  EXPECT_FALSE(s->isClosing());
}

TEST(Http1ServerTest, ResponseFromInsideOnRequestHeadKeepsTheConnection) {
  ServerRecorder s;
  s.on_head = [&] { s.respond(403, "denied"); };
  ASSERT_TRUE(s.feed("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  EXPECT_EQ(s.requests.size(), 2u);
  EXPECT_FALSE(s->isClosing());
}

TEST(Http1ServerTest, ConnectionCloseEndsAfterTheResponse) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").ok());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_FALSE(s.requests[0].info.keep_alive);
  EXPECT_FALSE(s->shouldClose());
  s.respond(200, "x");
  EXPECT_EQ(s.output(), "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
  EXPECT_TRUE(s->shouldClose());
  EXPECT_FALSE(s->receive(asBytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).ok());
}

TEST(Http1ServerTest, OwnerConnectionCloseEndsAfterTheResponse) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  s.respond(503, "", Headers{{"Connection", "close"}});
  EXPECT_EQ(s.output(),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(s->shouldClose());
}

TEST(Http1ServerTest, Http10KeepAliveIsOptIn) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").ok());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_TRUE(s.requests[0].info.keep_alive);
  EXPECT_EQ(s.requests[0].info.authority, "");  // HTTP/1.0 may omit Host
  s.respond(200, "a");
  EXPECT_EQ(s.output(), "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\na");
  EXPECT_FALSE(s->isClosing());
  ASSERT_TRUE(s.feed("GET /b HTTP/1.0\r\n\r\n").ok());
  ASSERT_EQ(s.requests.size(), 2u);
  EXPECT_FALSE(s.requests[1].info.keep_alive);
}

TEST(Http1ServerTest, UnknownLengthIsChunkedForHttp11AndCloseDelimitedForHttp10) {
  ServerRecorder s11;
  ASSERT_TRUE(s11.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  ASSERT_TRUE(s11->sendResponseHead(ResponseHead{}, std::nullopt).ok());
  ASSERT_TRUE(s11->sendBody(asBytes("abc")).ok());
  ASSERT_TRUE(s11->sendEnd(Headers{{"X-T", "1"}}).ok());
  EXPECT_EQ(s11.output(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n");
  EXPECT_FALSE(s11->isClosing());

  ServerRecorder s10;
  ASSERT_TRUE(s10.feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").ok());
  ASSERT_TRUE(s10->sendResponseHead(ResponseHead{}, std::nullopt).ok());
  ASSERT_TRUE(s10->sendBody(asBytes("abc")).ok());
  ASSERT_TRUE(s10->sendEnd(Headers{{"X-T", "1"}}).ok());
  EXPECT_EQ(s10.output(), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc");
  EXPECT_TRUE(s10->shouldClose());
}

TEST(Http1ServerTest, HeadAnd304DeclareLengthWithoutBody204NeitherDoes) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("HEAD /f HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  ASSERT_TRUE(s->sendResponseHead(ResponseHead{}, 5000).ok());
  EXPECT_FALSE(s->sendBody(asBytes("x")).ok());
  ASSERT_TRUE(s->sendEnd().ok());
  EXPECT_EQ(s.output(), "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n");

  ASSERT_TRUE(s.feed("GET /f HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n").ok());
  ASSERT_TRUE(s->sendResponseHead(ResponseHead{304, "", Version::kHttp11, {}}, 5000).ok());
  ASSERT_TRUE(s->sendEnd().ok());
  EXPECT_EQ(s.output(), "HTTP/1.1 304 Not Modified\r\nContent-Length: 5000\r\n\r\n");

  ASSERT_TRUE(s.feed("DELETE /f HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  ASSERT_TRUE(s->sendResponseHead(ResponseHead{204, "", Version::kHttp11, {}}, 0).ok());
  ASSERT_TRUE(s->sendEnd().ok());
  EXPECT_EQ(s.output(), "HTTP/1.1 204 No Content\r\n\r\n");
  EXPECT_EQ(s.requests.size(), 3u);
  EXPECT_FALSE(s->isClosing());
}

TEST(Http1ServerTest, ExpectContinueIsReportedAndAnsweredByTheOwner) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("PUT /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                     "Content-Length: 3\r\n\r\n")
                  .ok());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_TRUE(s.requests[0].info.expect_continue);
  EXPECT_EQ(s.output(), "");  // the codec does not answer by itself
  ASSERT_TRUE(s->sendContinue().ok());
  EXPECT_FALSE(s->sendContinue().ok());  // once
  EXPECT_EQ(s.output(), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(s.feed("abc").ok());
  EXPECT_TRUE(s.requests[0].complete);
  s.respond(201, "");
  EXPECT_EQ(s.output(), "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
}

TEST(Http1ServerTest, ContinueWithoutExpectationIsRefused) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n").ok());
  EXPECT_FALSE(s->sendContinue().ok());
  ServerRecorder s10;
  ASSERT_TRUE(
      s10.feed("PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n").ok());
  EXPECT_FALSE(s10.requests[0].info.expect_continue);  // RFC 9110 §10.1.1: ignored in 1.0
}

TEST(Http1ServerTest, FinalResponseBeforeTheBodyClosesAfterIt) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("PUT /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                     "Content-Length: 100000\r\n\r\n")
                  .ok());
  s.respond(413, "");
  // The head cannot announce the close (a head may go out while the body still streams), but
  // the rest of the body is never read.
  EXPECT_EQ(s.output(), "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(s->shouldClose());
  EXPECT_FALSE(s->receive(asBytes("abc")).ok());
}

TEST(Http1ServerTest, UpgradeIsReportedWithItsRawBytes) {
  const std::string request =
      "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  ServerRecorder s;
  auto consumed = s->receive(asBytes(request + "\x81\x05hello"));
  ASSERT_TRUE(consumed.ok());
  EXPECT_EQ(*consumed, request.size());  // the websocket frame stays with the owner
  ASSERT_EQ(s.upgrades.size(), 1u);
  EXPECT_TRUE(s.requests.empty());
  EXPECT_TRUE(s.upgrades[0].info.upgrade);
  EXPECT_EQ(s.upgrades[0].head.headers.get("upgrade"), "websocket");
  EXPECT_EQ(s->upgradeBytes(), request);
  EXPECT_FALSE(s->wantsRead());
  EXPECT_EQ(s.output(), "");
}

TEST(Http1ServerTest, H2cUpgradeIsReported) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
                  .ok());
  ASSERT_EQ(s.upgrades.size(), 1u);
  EXPECT_EQ(s.upgrades[0].head.headers.get("upgrade"), "h2c");
}

TEST(Http1ServerTest, UpgradeWithoutConnectionUpgradeIsAPlainRequest) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n").ok());
  EXPECT_TRUE(s.upgrades.empty());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_FALSE(s.requests[0].info.upgrade);
}

TEST(Http1ServerTest, AbsoluteFormTargetGivesAuthorityAndPath) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET http://Reviews.default:9080?x=1 HTTP/1.1\r\nHost: other\r\n\r\n").ok());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_EQ(s.requests[0].info.target_form, TargetForm::kAbsolute);
  EXPECT_EQ(s.requests[0].info.scheme, "http");
  EXPECT_EQ(s.requests[0].info.authority, "Reviews.default:9080");  // Host is ignored
  EXPECT_EQ(s.requests[0].info.path, "/?x=1");
  s.respond(200, "");
  ASSERT_TRUE(s.feed("GET https://a/b/c HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  EXPECT_EQ(s.requests[1].info.path, "/b/c");
}

TEST(Http1ServerTest, AsteriskFormForOptions) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_EQ(s.requests[0].info.target_form, TargetForm::kAsterisk);
}

TEST(Http1ServerTest, TimeoutMidRequestAnswers408AndCloses) {
  ServerRecorder s;
  EXPECT_FALSE(s->messageInProgress());
  ASSERT_TRUE(s.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345").ok());
  EXPECT_TRUE(s->messageInProgress());
  s->timeout();
  EXPECT_EQ(s.output(),
            "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(s->shouldClose());
  EXPECT_FALSE(s->receive(asBytes("67890")).ok());
  EXPECT_EQ(s->stats().timeouts, 1u);
}

TEST(Http1ServerTest, TimeoutInAPartialHeadAnswers408) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nHo").ok());
  EXPECT_TRUE(s->messageInProgress());
  s->timeout();
  EXPECT_EQ(s.output().substr(0, 29), "HTTP/1.1 408 Request Timeout\r");
  EXPECT_TRUE(s->shouldClose());
}

TEST(Http1ServerTest, IdleTimeoutClosesSilently) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  s.respond(200, "");
  s.output();
  s->timeout();
  EXPECT_EQ(s.output(), "");
  EXPECT_TRUE(s->shouldClose());
}

TEST(Http1ServerTest, TimeoutWhileWaitingForTheUpstreamLetsTheResponseFinish) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  s->timeout();
  EXPECT_FALSE(s->shouldClose());
  s.respond(504, "");
  EXPECT_NE(s.output().find("Connection: close"), std::string::npos);
  EXPECT_TRUE(s->shouldClose());
}

TEST(Http1ServerTest, EofBetweenRequestsClosesCleanly) {
  ServerRecorder s;
  ASSERT_TRUE(s->receiveEof().ok());
  EXPECT_TRUE(s->shouldClose());
  EXPECT_EQ(s.output(), "");
}

TEST(Http1ServerTest, EofAfterACompleteRequestStillGetsTheResponse) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  ASSERT_TRUE(s->receiveEof().ok());
  EXPECT_FALSE(s->shouldClose());
  s.respond(200, "late");
  EXPECT_NE(s.output().find("Connection: close"), std::string::npos);
  EXPECT_TRUE(s->shouldClose());
}

TEST(Http1ServerTest, ResponseOnlyAfterARequest) {
  ServerRecorder s;
  EXPECT_FALSE(s->sendResponseHead(ResponseHead{}, 0).ok());
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  EXPECT_FALSE(s->sendResponseHead(ResponseHead{100, "", Version::kHttp11, {}}, 0).ok());
  ASSERT_TRUE(s->sendInterim(103, Headers{{"Link", "</s.css>; rel=preload"}}).ok());
  s.respond(200, "");
  EXPECT_FALSE(s->sendBody(asBytes("x")).ok());
  EXPECT_FALSE(s->sendEnd().ok());
  EXPECT_EQ(s.output(),
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

TEST(Http1ServerTest, ZeroContentLengthIsNoBody) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").ok());
  ASSERT_EQ(s.requests.size(), 1u);
  EXPECT_EQ(s.requests[0].info.framing, BodyFraming::kNone);
  EXPECT_TRUE(s.requests[0].complete);
  EXPECT_EQ(s->bufferedBytes(), 0u);  // the parsed head is not kept
}

TEST(Http1ServerTest, NoInterimResponsesToHttp10) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.0\r\n\r\n").ok());
  EXPECT_FALSE(s->sendInterim(103, {}).ok());  // RFC 9110 §15.2
  s.respond(200, "");
  EXPECT_EQ(s.output(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

TEST(Http1ServerTest, LeadingEmptyLinesAreIgnored) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  EXPECT_EQ(s.requests.size(), 1u);
}

}  // namespace
}  // namespace nodemesh::waypoint::http1::test
