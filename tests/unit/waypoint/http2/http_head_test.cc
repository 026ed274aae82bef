// Neutral heads <-> HTTP/2 fields, and the gRPC helpers.

#include <gtest/gtest.h>

#include "waypoint/http2/grpc.h"
#include "waypoint/http2/http_head.h"

namespace nodemesh::waypoint::http2 {
namespace {

TEST(HttpHeadTest, StripsConnectionSpecificFieldsAndLowercases) {
  HeaderList headers = {{"Host", "a:80"},
                        {"Connection", "Keep-Alive, X-Hop"},
                        {"Keep-Alive", "timeout=5"},
                        {"X-Hop", "1"},
                        {"Proxy-Connection", "keep-alive"},
                        {"Transfer-Encoding", "chunked"},
                        {"Upgrade", "h2c"},
                        {"TE", "gzip, trailers"},
                        {"Content-Type", "text/plain"}};
  stripConnectionSpecificHeaders(headers);
  EXPECT_EQ(headers, (HeaderList{{"te", "trailers"}, {"content-type", "text/plain"}}));

  HeaderList no_trailers = {{"te", "gzip"}, {"accept", "*/*"}};
  stripConnectionSpecificHeaders(no_trailers);
  EXPECT_EQ(no_trailers, (HeaderList{{"accept", "*/*"}}));
  EXPECT_TRUE(isConnectionSpecificHeader("te", "gzip"));
  EXPECT_FALSE(isConnectionSpecificHeader("te", "trailers"));
  EXPECT_TRUE(isConnectionSpecificHeader("Transfer-Encoding", "chunked"));
  EXPECT_FALSE(isConnectionSpecificHeader("content-length", "3"));
}

TEST(HttpHeadTest, RequestFieldsPutPseudoHeadersFirst) {
  RequestHead head{"POST", "https", "", "/a?b=c", {{"Host", "svc:8080"}, {"Accept", "*/*"}}};
  auto fields = toH2RequestFields(head);
  ASSERT_TRUE(fields.ok()) << fields.error().message;
  EXPECT_EQ(*fields, (HeaderList{{":method", "POST"},
                                 {":scheme", "https"},
                                 {":authority", "svc:8080"},
                                 {":path", "/a?b=c"},
                                 {"accept", "*/*"}}));
  auto back = fromH2RequestFields(*fields);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->authority, "svc:8080");
  EXPECT_EQ(back->headers, (HeaderList{{"accept", "*/*"}}));
}

TEST(HttpHeadTest, InvalidHeadsAreRefused) {
  EXPECT_FALSE(toH2RequestFields(RequestHead{"", "http", "a", "/", {}}).ok());
  EXPECT_FALSE(toH2RequestFields(RequestHead{"CONNECT", "http", "a:1", "/", {}}).ok());
  EXPECT_FALSE(toH2RequestFields(RequestHead{"GET", "http", "a", "/", {{"x", "a\r\nb"}}}).ok());
  EXPECT_FALSE(toH2RequestFields(RequestHead{"GET", "http", "a", "/", {{"bad name", "1"}}}).ok());
  EXPECT_FALSE(toH2RequestFields(RequestHead{"GET", "http", "a", "/", {{":path", "/x"}}}).ok());
  EXPECT_FALSE(toH2ResponseFields(ResponseHead{101, {}}).ok());
  EXPECT_FALSE(toH2ResponseFields(ResponseHead{42, {}}).ok());
  EXPECT_FALSE(fromH2RequestFields({{":method", "GET"}, {":path", "/"}}).ok());  // no authority
  EXPECT_FALSE(fromH2RequestFields({{":authority", "a"}, {"host", "b"}}).ok());
}

TEST(HttpHeadTest, ResponseAndTrailerFields) {
  auto fields =
      toH2ResponseFields(ResponseHead{404, {{"Content-Length", "0"}, {"Connection", "close"}}});
  ASSERT_TRUE(fields.ok());
  EXPECT_EQ(*fields, (HeaderList{{":status", "404"}, {"content-length", "0"}}));
  auto trailers = toH2TrailerFields({{"Grpc-Status", "0"}});
  ASSERT_TRUE(trailers.ok());
  EXPECT_EQ(*trailers, (HeaderList{{"grpc-status", "0"}}));
  EXPECT_EQ(headerListSize(*trailers), 11u + 1 + kHeaderFieldOverhead);
}

TEST(GrpcTest, RecognisesGrpcContentTypes) {
  EXPECT_TRUE(isGrpcContentType("application/grpc"));
  EXPECT_TRUE(isGrpcContentType("application/grpc+proto"));
  EXPECT_TRUE(isGrpcContentType("Application/GRPC;charset=utf-8"));
  EXPECT_FALSE(isGrpcContentType("application/grpc-web"));
  EXPECT_FALSE(isGrpcContentType("application/json"));
  EXPECT_FALSE(isGrpcContentType(""));
  EXPECT_TRUE(isGrpcRequest(
      RequestHead{"POST", "http", "a", "/s/M", {{"content-type", "application/grpc"}}}));
}

TEST(GrpcTest, HttpStatusMapping) {
  EXPECT_EQ(grpcStatusForHttpStatus(400), GrpcStatus::kInternal);
  EXPECT_EQ(grpcStatusForHttpStatus(401), GrpcStatus::kUnauthenticated);
  EXPECT_EQ(grpcStatusForHttpStatus(403), GrpcStatus::kPermissionDenied);
  EXPECT_EQ(grpcStatusForHttpStatus(404), GrpcStatus::kUnimplemented);
  for (int status : {429, 502, 503, 504}) {
    EXPECT_EQ(grpcStatusForHttpStatus(status), GrpcStatus::kUnavailable) << status;
  }
  EXPECT_EQ(grpcStatusForHttpStatus(500), GrpcStatus::kUnknown);
}

TEST(GrpcTest, TrailersOnlyResponse) {
  ResponseHead head = grpcErrorForHttpStatus(503, "no healthy upstream: 100% down\n");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers, (HeaderList{{"content-type", "application/grpc"},
                                      {"grpc-status", "14"},
                                      {"grpc-message", "no healthy upstream: 100%25 down%0A"}}));
  EXPECT_EQ(grpcPercentEncode("caf\xc3\xa9"), "caf%C3%A9");
  EXPECT_EQ(grpcTrailersOnlyResponse(GrpcStatus::kPermissionDenied, "").headers.size(), 2u);
  EXPECT_TRUE(toH2ResponseFields(head).ok());
}

}  // namespace
}  // namespace nodemesh::waypoint::http2
