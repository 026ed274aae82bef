// Header list helpers, hop-by-hop stripping, protocol detection and MessageWriter framing.

#include <gtest/gtest.h>

#include "tests/unit/waypoint/http1/http1_test_util.h"
#include "waypoint/http1/detect.h"
#include "waypoint/http1/message.h"
#include "waypoint/http1/message_writer.h"

namespace nodemesh::waypoint::http1::test {
namespace {

TEST(Http1HeadersTest, LookupIgnoresCaseAndKeepsOrder) {
  Headers headers{{"Host", "a"}, {"X-Tag", "1"}, {"x-tag", "2"}, {"Set-Cookie", "c=1"}};
  EXPECT_EQ(headers.get("host"), "a");
  EXPECT_EQ(headers.get("X-TAG"), "1");
  EXPECT_EQ(headers.getAll("x-tag"), (std::vector<std::string_view>{"1", "2"}));
  EXPECT_EQ(headers.count("X-Tag"), 2u);
  EXPECT_FALSE(headers.get("missing").has_value());
  EXPECT_EQ(headers.remove("X-TAG"), 2u);
  EXPECT_EQ(headers.fields(), (std::vector<HeaderField>{{"Host", "a"}, {"Set-Cookie", "c=1"}}));
}

TEST(Http1HeadersTest, HasTokenSplitsLists) {
  Headers headers{{"Connection", "keep-alive, Upgrade"}, {"Connection", " close "}};
  EXPECT_TRUE(headers.hasToken("connection", "upgrade"));
  EXPECT_TRUE(headers.hasToken("connection", "CLOSE"));
  EXPECT_FALSE(headers.hasToken("connection", "keep"));
  EXPECT_EQ(splitList(" a ,, b,"), (std::vector<std::string_view>{"a", "b"}));
}

TEST(Http1HeadersTest, HopByHopIncludesNamesListedInConnection) {
  Headers headers{{"Connection", "X-Secret, close"},
                  {"Keep-Alive", "timeout=5"},
                  {"Proxy-Connection", "keep-alive"},
                  {"TE", "trailers"},
                  {"Transfer-Encoding", "chunked"},
                  {"Upgrade", "h2c"},
                  {"x-secret", "1"},
                  {"Host", "a"},
                  {"Content-Type", "text/plain"}};
  const std::vector<std::string> names = hopByHopNames(headers);
  EXPECT_NE(std::find(names.begin(), names.end(), "x-secret"), names.end());
  EXPECT_EQ(stripHopByHop(headers), 7u);
  EXPECT_EQ(headers.fields(),
            (std::vector<HeaderField>{{"Host", "a"}, {"Content-Type", "text/plain"}}));
}

DetectedProtocol detect(std::string_view s) {
  return detectProtocol(asBytes(s));
}

TEST(Http1DetectTest, MethodAndSpaceIsHttp1) {
  EXPECT_EQ(detect("GET / HTTP/1.1\r\n"), DetectedProtocol::kHttp1);
  EXPECT_EQ(detect("POST "), DetectedProtocol::kHttp1);
  EXPECT_EQ(detect("M-SEARCH * HTTP/1.1"), DetectedProtocol::kHttp1);
  EXPECT_EQ(detect("PROPFIND /x"), DetectedProtocol::kHttp1);
}

TEST(Http1DetectTest, PrefixesNeedMore) {
  EXPECT_EQ(detect(""), DetectedProtocol::kNeedMore);
  EXPECT_EQ(detect("G"), DetectedProtocol::kNeedMore);
  EXPECT_EQ(detect("GET"), DetectedProtocol::kNeedMore);
  EXPECT_EQ(detect("PR"), DetectedProtocol::kNeedMore);  // PROPFIND or the HTTP/2 preface
  EXPECT_EQ(detect("PRI * HTTP/2.0\r\n\r\nSM\r\n"), DetectedProtocol::kNeedMore);
}

TEST(Http1DetectTest, Http2PrefaceIsHttp2) {
  EXPECT_EQ(detect("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), DetectedProtocol::kHttp2);
  EXPECT_EQ(detect(std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", 28)),
            DetectedProtocol::kHttp2);
}

TEST(Http1DetectTest, EverythingElseIsOther) {
  EXPECT_EQ(detect("SSH-2.0-OpenSSH_9.2p1\r\n"), DetectedProtocol::kOther);
  EXPECT_EQ(detect("\x16\x03\x01\x02\x00"), DetectedProtocol::kOther);  // TLS ClientHello
  EXPECT_EQ(detect("get / HTTP/1.1"), DetectedProtocol::kOther);  // methods are case-sensitive
  EXPECT_EQ(detect("GET\t/"), DetectedProtocol::kOther);
  EXPECT_EQ(detect("GETX / HTTP/1.1"), DetectedProtocol::kOther);
  EXPECT_EQ(detect("PRI * HTTP/1.1\r\n"), DetectedProtocol::kOther);
  EXPECT_EQ(detect("FOO / HTTP/1.1"), DetectedProtocol::kOther);
  EXPECT_EQ(detect("*1\r\n$4\r\nPING\r\n"), DetectedProtocol::kOther);  // Redis
}

std::string taken(MessageWriter& writer) {
  std::string out = asString(writer.pendingOutput());
  writer.consumeOutput(out.size());
  return out;
}

TEST(Http1WriterTest, ReplacesFramingFieldsWithItsOwn) {
  MessageWriter writer;
  RequestHead head{"POST", "/upload", Version::kHttp11,
                   Headers{{"Host", "a"},
                           {"Content-Length", "99"},
                           {"Transfer-Encoding", "gzip"},
                           {"Connection", "keep-alive"},
                           {"X-A", "1"}}};
  OutgoingFraming framing;
  framing.framing = BodyFraming::kContentLength;
  framing.content_length = 3;
  ASSERT_TRUE(writer.writeRequestHead(head, framing).ok());
  ASSERT_TRUE(writer.writeBody(asBytes("abc")).ok());
  ASSERT_TRUE(writer.writeEnd({}).ok());
  EXPECT_EQ(taken(writer),
            "POST /upload HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc");
}

TEST(Http1WriterTest, ChunkedBodyAndTrailers) {
  MessageWriter writer;
  OutgoingFraming framing;
  framing.framing = BodyFraming::kChunked;
  ASSERT_TRUE(writer.writeResponseHead(ResponseHead{200, "", Version::kHttp11, {}}, framing).ok());
  ASSERT_TRUE(writer.writeBody(asBytes("hello world, sixteen+")).ok());
  ASSERT_TRUE(writer.writeBody({}).ok());  // no empty chunk: that would end the body
  ASSERT_TRUE(writer.writeEnd(Headers{{"grpc-status", "0"}}).ok());
  EXPECT_EQ(taken(writer),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "15\r\nhello world, sixteen+\r\n0\r\ngrpc-status: 0\r\n\r\n");
}

TEST(Http1WriterTest, EnforcesContentLength) {
  MessageWriter writer;
  OutgoingFraming framing;
  framing.framing = BodyFraming::kContentLength;
  framing.content_length = 2;
  ASSERT_TRUE(writer.writeResponseHead(ResponseHead{}, framing).ok());
  EXPECT_FALSE(writer.writeBody(asBytes("abc")).ok());
  ASSERT_TRUE(writer.writeBody(asBytes("a")).ok());
  EXPECT_FALSE(writer.writeEnd({}).ok());
  ASSERT_TRUE(writer.writeBody(asBytes("b")).ok());
  EXPECT_TRUE(writer.writeEnd({}).ok());
}

TEST(Http1WriterTest, RefusesResponseSplitting) {
  MessageWriter writer;
  ResponseHead head;
  head.headers.add("X-Evil", "a\r\nSet-Cookie: x=1");
  EXPECT_FALSE(writer.writeResponseHead(head, OutgoingFraming{}).ok());
  ResponseHead bad_name;
  bad_name.headers.add("X Evil", "1");
  EXPECT_FALSE(writer.writeResponseHead(bad_name, OutgoingFraming{}).ok());
  RequestHead bad_target{"GET", "/a b", Version::kHttp11, {}};
  EXPECT_FALSE(writer.writeRequestHead(bad_target, OutgoingFraming{}).ok());
  EXPECT_TRUE(writer.pendingOutput().empty());
  EXPECT_FALSE(writer.inMessage());
}

TEST(Http1WriterTest, NoBodyForBodylessFraming) {
  MessageWriter writer;
  OutgoingFraming framing;
  framing.declare_length = true;
  framing.declared_length = 1234;
  ASSERT_TRUE(writer.writeResponseHead(ResponseHead{}, framing).ok());
  EXPECT_FALSE(writer.writeBody(asBytes("x")).ok());
  ASSERT_TRUE(writer.writeEnd({}).ok());
  EXPECT_EQ(taken(writer), "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
}

TEST(Http1OptionsTest, OutOfRangeOptionsAreRefused) {
  ServerRecorder ok;  // defaults are valid
  CodecOptions options;
  options.max_header_bytes = 100 * 1024;  // above http-parser's own limit
  EXPECT_FALSE(validateCodecOptions(options).ok());
  options = {};
  options.max_request_line_bytes = options.max_header_bytes + 1;
  EXPECT_FALSE(validateCodecOptions(options).ok());
  options = {};
  options.max_header_count = 0;
  EXPECT_FALSE(validateCodecOptions(options).ok());
}

}  // namespace
}  // namespace nodemesh::waypoint::http1::test
