// ServerCodec on bad input: every class docs/waypoint.md lists is answered with its status and
// "Connection: close", whole or fed a byte at a time, and later input is refused.

#include <gtest/gtest.h>

#include "tests/unit/waypoint/http1/http1_test_util.h"

namespace nodemesh::waypoint::http1::test {
namespace {

struct BadCase {
  const char* name;
  std::string input;
  int status;
  // Part of the reason, where a later check would also refuse the input: proves that the
  // check meant for this shape is the one that fired.
  const char* reason = "";
};

std::string get(std::string_view fields) {
  return "GET / HTTP/1.1\r\nHost: a\r\n" + std::string(fields) + "\r\n";
}

std::string post(std::string_view fields, std::string_view body = "") {
  return "POST / HTTP/1.1\r\nHost: a\r\n" + std::string(fields) + "\r\n" + std::string(body);
}

std::string chunked(std::string_view body) {
  return post("Transfer-Encoding: chunked\r\n", body);
}

void PrintTo(const BadCase& c, std::ostream* os) {
  *os << c.name;
}

class Http1RejectTest : public testing::TestWithParam<BadCase> {};

TEST_P(Http1RejectTest, AnsweredWithStatusAndClose) {
  const BadCase& c = GetParam();
  for (size_t step : {c.input.size(), size_t{1}}) {
    ServerRecorder s;
    Status status = s.feed(c.input, step);
    ASSERT_FALSE(status.ok()) << "accepted, fed in steps of " << step;
    ASSERT_EQ(s.errors.size(), 1u);
    EXPECT_EQ(s.errors[0].status, c.status) << s.errors[0].reason;
    EXPECT_NE(s.errors[0].reason.find(c.reason), std::string::npos) << s.errors[0].reason;
    const std::string out = s.output();
    const std::string status_line = "HTTP/1.1 " + std::to_string(c.status) + " ";
    EXPECT_EQ(out.substr(0, status_line.size()), status_line) << out;
    EXPECT_NE(out.find("\r\nConnection: close\r\n"), std::string::npos) << out;
    EXPECT_TRUE(s->shouldClose());
    EXPECT_FALSE(s->receive(asBytes(get(""))).ok());  // refuses further input
    EXPECT_EQ(s->stats().rejected, 1u);
    for (const RecordedRequest& r : s.requests) {
      EXPECT_FALSE(r.complete);  // a refused message is never reported complete
    }
  }
}

const std::string kLongHeader = "X-Pad: " + std::string(1000, 'p') + "\r\n";

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += s;
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    Smuggling, Http1RejectTest,
    testing::Values(
        BadCase{"ClThenTe",
                post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400,
                "both Content-Length and Transfer-Encoding"},
        BadCase{"TeThenCl",
                post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"), 400,
                "both Content-Length and Transfer-Encoding"},
        BadCase{"DifferentContentLengths",
                post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400,
                "repeated Content-Length"},
        BadCase{"RepeatedContentLength",
                post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), 400,
                "repeated Content-Length"},
        BadCase{"ContentLengthList", post("Content-Length: 5, 5\r\n", "hello"), 400},
        BadCase{"ContentLengthNotDigits", post("Content-Length: 5a\r\n", "hello"), 400},
        BadCase{"ContentLengthNegative", post("Content-Length: -1\r\n"), 400},
        BadCase{"ContentLengthPlus", post("Content-Length: +5\r\n", "hello"), 400},
        BadCase{"ContentLengthEmpty", post("Content-Length:\r\n"), 400},
        BadCase{"ContentLengthHex", post("Content-Length: 0x5\r\n", "hello"), 400},
        BadCase{"ContentLengthOverflow", post("Content-Length: 99999999999999999999\r\n"), 400},
        BadCase{"TeNotChunked", post("Transfer-Encoding: gzip\r\n", "abc"), 400},
        BadCase{"TeChunkedNotFinal", post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"),
                400},
        BadCase{"TeChunkedTwice", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
                400},
        BadCase{"TeChunkedInTwoFields",
                post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
                400},
        BadCase{"TeUnknownCoding", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501},
        BadCase{"TeIdentity", post("Transfer-Encoding: identity\r\n"), 400},
        BadCase{"TeLookalike", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), 400},
        BadCase{"TeEmpty", post("Transfer-Encoding:\r\n"), 400},
        BadCase{"TeInHttp10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400}));

INSTANTIATE_TEST_SUITE_P(
    FieldSyntax, Http1RejectTest,
    testing::Values(
        BadCase{"ObsFoldSpace", get("X-A: 1\r\n 2\r\n"), 400, "obs-fold"},
        BadCase{"ObsFoldTab", get("X-A: 1\r\n\t2\r\n"), 400, "obs-fold"},
        BadCase{"ObsFoldIntoContentLength", post("Content-Length: 1\r\n 0\r\n", "0123456789"), 400,
                "obs-fold"},
        BadCase{"SpaceBeforeColon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400,
                "whitespace between"},
        BadCase{"TabBeforeColon", get("Transfer-Encoding\t: chunked\r\n"), 400,
                "whitespace between"},
        BadCase{"SpaceBeforeFirstField", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obs-fold"},
        BadCase{"BareLfEverywhere", "GET / HTTP/1.1\nHost: a\n\n", 400, "bare LF"},
        BadCase{"BareLfInAField", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400, "bare LF"},
        BadCase{"BareLfAtTheEnd", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF"},
        BadCase{"BareCrInAValue", get("X-A: a\rb\r\n"), 400, "CR not followed by LF"},
        BadCase{"NulInAValue", get(std::string("X-A: a\0b\r\n", 10)), 400, "NUL"},
        BadCase{"NulInAName", get(std::string("X\0A: b\r\n", 8)), 400, "NUL"},
        BadCase{"ControlInAValue",
                get("X-A: a\x01"
                    "b\r\n"),
                400, "control character"},
        BadCase{"EscapeInAValue", get("X-A: a\x1b[31m\r\n"), 400, "control character"},
        BadCase{"DelInAValue", get("X-A: a\x7f\r\n"), 400, "control character"},
        BadCase{"ControlInAName",
                get("X\x01"
                    "A: b\r\n"),
                400},
        BadCase{"SpaceInAName", get("X A: b\r\n"), 400},
        BadCase{"NonAsciiInAName", get("X-\xc3\xa9: b\r\n"), 400},
        BadCase{"NoColon", get("garbage\r\n"), 400}, BadCase{"EmptyName", get(": v\r\n"), 400}));

INSTANTIATE_TEST_SUITE_P(
    RequestLine, Http1RejectTest,
    testing::Values(
        BadCase{"MissingHost", "GET / HTTP/1.1\r\nX: 1\r\n\r\n", 400},
        BadCase{"TwoHosts", get("Host: b\r\n"), 400},
        BadCase{"EmptyHost", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
        BadCase{"HostWithUserinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
        BadCase{"HostWithPath", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
        BadCase{"Connect", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400, "CONNECT"},
        BadCase{"AuthorityFormWithGet", "GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"AsteriskWithGet", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"AbsoluteWithUserinfo", "GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"AbsoluteFtp", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"AbsoluteEmptyAuthority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"Fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"DoubleSpace", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"TrailingSpace", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
        BadCase{"LeadingSpace", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"TabAsSeparator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"NoVersion", "GET /\r\nHost: a\r\n\r\n", 400},
        BadCase{"LowercaseVersion", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"Http2Version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        BadCase{"Http12Version", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
        BadCase{"Http09Version", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
        BadCase{"UnknownMethod", "FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 501},
        BadCase{"LowercaseMethod", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 501},
        BadCase{"MethodNotAToken", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"NonAsciiTarget", "GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"ControlInTarget", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"UnsupportedExpectation", get("Expect: 200-ok\r\n"), 417}));

INSTANTIATE_TEST_SUITE_P(
    Chunked, Http1RejectTest,
    testing::Values(
        BadCase{"NotHex", chunked("zz\r\nabc\r\n0\r\n\r\n"), 400},
        BadCase{"EmptySize", chunked("\r\nabc\r\n0\r\n\r\n"), 400},
        BadCase{"TooManyDigits", chunked("00000000000000001\r\na\r\n0\r\n\r\n"), 400},
        BadCase{"Negative", chunked("-5\r\nhello\r\n0\r\n\r\n"), 400},
        BadCase{"HexPrefix", chunked("0x5\r\nhello\r\n0\r\n\r\n"), 400},
        BadCase{"GarbageAfterSize", chunked("5 garbage\r\nhello\r\n0\r\n\r\n"), 400,
                "chunk extension"},
        BadCase{"TrailingSpaceAfterSize", chunked("5 \r\nhello\r\n0\r\n\r\n"), 400,
                "chunk extension"},
        BadCase{"ExtensionWithoutName", chunked("5;\r\nhello\r\n0\r\n\r\n"), 400},
        BadCase{"ExtensionControlChar", chunked("5;a=\x01\r\nhello\r\n0\r\n\r\n"), 400,
                "chunk extension"},
        BadCase{"ExtensionUnterminatedQuote", chunked("5;a=\"x\r\nhello\r\n0\r\n\r\n"), 400},
        BadCase{"ExtensionTooLong", chunked("5" + repeat(";a", 2100) + "\r\nhello\r\n0\r\n\r\n"),
                400, "longer than the limit"},
        BadCase{"BareLfAfterSize", chunked("5\nhello\r\n0\r\n\r\n"), 400},
        BadCase{"BareCrAfterSize", chunked("5\rhello\r\n0\r\n\r\n"), 400},
        BadCase{"DataLongerThanSize", chunked("5\r\nhelloX\r\n0\r\n\r\n"), 400},
        BadCase{"DataBareLf", chunked("5\r\nhello\n0\r\n\r\n"), 400},
        BadCase{"TrailerObsFold", chunked("0\r\nX-T: 1\r\n 2\r\n\r\n"), 400, "obs-fold"},
        BadCase{"TrailerBareLf", chunked("0\r\nX-T: 1\n\r\n"), 400, "bare LF"},
        BadCase{"TrailerSpaceBeforeColon", chunked("0\r\nX-T : 1\r\n\r\n"), 400,
                "whitespace between"}));

INSTANTIATE_TEST_SUITE_P(
    Limits, Http1RejectTest,
    testing::Values(
        BadCase{"HeaderSectionTooLarge", get(repeat(kLongHeader, 62)), 431},
        BadCase{"TooManyFields", get(repeat("X-A: 1\r\n", 101)), 431},
        BadCase{"RequestLineTooLong",
                "GET /" + std::string(17 * 1024, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
        BadCase{"TrailersTooLarge", chunked("0\r\n" + repeat(kLongHeader, 62) + "\r\n"), 431},
        BadCase{"TooManyTrailers", chunked("0\r\n" + repeat("X-A: 1\r\n", 101) + "\r\n"), 431}));

TEST(Http1RejectLimitsTest, JustBelowTheLimitsIsAccepted) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed(get(repeat(kLongHeader, 58))).ok());
  ASSERT_EQ(s.requests.size(), 1u);
  s.respond(200, "");
  ASSERT_TRUE(s.feed(get(repeat("X-A: 1\r\n", 99))).ok());
  ASSERT_EQ(s.requests.size(), 2u);
  s.respond(200, "");
  ASSERT_TRUE(s.feed("GET /" + std::string(15 * 1024, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  EXPECT_EQ(s.requests.size(), 3u);
}

TEST(Http1RejectLimitsTest, SmallerConfiguredLimitsApply) {
  CodecOptions options;
  options.max_header_bytes = 1024;
  options.max_request_line_bytes = 64;
  options.max_header_count = 3;
  ServerRecorder s(options);
  ASSERT_FALSE(s.feed("GET /" + std::string(100, 'a') + " HTTP/1.1\r\n").ok());
  EXPECT_EQ(s.errors.at(0).status, 414);
  ServerRecorder t(options);
  ASSERT_FALSE(t.feed(get("A: 1\r\nB: 2\r\nC: 3\r\n")).ok());
  EXPECT_EQ(t.errors.at(0).status, 431);
}

TEST(Http1RejectLimitsTest, HeadBufferStaysBoundedWhileFieldsDrip) {
  // A client dripping an endless field never makes the codec hold more than the limit.
  ServerRecorder s;
  ASSERT_TRUE(s.feed("GET / HTTP/1.1\r\nX-Long: ").ok());
  Status status = okStatus();
  size_t fed = 0;
  while (status.ok() && fed < 200 * 1024) {
    status = s.feed(std::string(1024, 'x'));
    fed += 1024;
  }
  EXPECT_FALSE(status.ok());
  EXPECT_LE(fed, 61 * 1024u);
  EXPECT_EQ(s.errors.at(0).status, 431);
}

TEST(Http1RejectMidBodyTest, EofInTheMiddleOfARequest) {
  ServerRecorder s;
  ASSERT_TRUE(s.feed(post("Content-Length: 10\r\n", "123")).ok());
  EXPECT_FALSE(s->receiveEof().ok());
  EXPECT_EQ(s.errors.at(0).status, 400);
  EXPECT_FALSE(s.requests.at(0).complete);
  ServerRecorder h;
  ASSERT_TRUE(h.feed("GET / HT").ok());
  EXPECT_FALSE(h->receiveEof().ok());
}

TEST(Http1RejectMidBodyTest, BadChunkWhileRespondingOnlyCloses) {
  // The response is under way: no second status line can be written, the connection just ends.
  ServerRecorder s;
  ASSERT_TRUE(s.feed(chunked("3\r\nabc\r\n")).ok());
  ASSERT_TRUE(s->sendResponseHead(ResponseHead{}, std::nullopt).ok());
  const std::string head = s.output();
  EXPECT_FALSE(s.feed("zz\r\n").ok());
  EXPECT_EQ(s.output(), "");
  EXPECT_TRUE(s->shouldClose());
  EXPECT_FALSE(s->sendBody(asBytes("x")).ok());
  EXPECT_EQ(head.substr(0, 15), "HTTP/1.1 200 OK");
}

}  // namespace
}  // namespace nodemesh::waypoint::http1::test
