#include "model/route_validation.h"

#include <gtest/gtest.h>

#include <chrono>

namespace nodemesh::model {
namespace {

using namespace std::chrono_literals;

TEST(RouteValidationTest, Durations) {
  EXPECT_EQ(parseGatewayDuration("0s").value(), 0ms);
  EXPECT_EQ(parseGatewayDuration("500ms").value(), 500ms);
  EXPECT_EQ(parseGatewayDuration("1h30m").value(), 90min);
  EXPECT_EQ(parseGatewayDuration("1h2m3s4ms").value(), 1h + 2min + 3s + 4ms);
  EXPECT_EQ(parseGatewayDuration("99999s").value(), 99999s);
  for (const char* bad : {"", "10", "1d", "1.5s", "-1s", "100000s", "1h1m1s1ms1h", "1 s", "s"}) {
    EXPECT_FALSE(parseGatewayDuration(bad).ok()) << bad;
  }
}

TEST(RouteValidationTest, Timestamps) {
  auto utc = parseTimestamp("2024-05-01T10:00:00Z");
  ASSERT_TRUE(utc.ok());
  EXPECT_EQ(utc->time_since_epoch(), 1714557600s);
  EXPECT_EQ(parseTimestamp("2024-05-01T12:00:00.123+02:00")->time_since_epoch(), 1714557600s);
  for (const char* bad : {"2024-05-01", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z",
                          "2024-05-01T10:00:00", "yesterday", "2024-05-01T25:00:00Z"}) {
    EXPECT_FALSE(parseTimestamp(bad).ok()) << bad;
  }
}

TEST(RouteValidationTest, Paths) {
  for (const char* good : {"/", "/api", "/a-b/c_d/~e/%20", "/a:b@c!$&'()*+,;="}) {
    EXPECT_TRUE(checkPathValue(good).ok()) << good;
  }
  for (const char* bad : {"", "api", "/a//b", "/a/./b", "/a/../b", "/a%2fb", "/a#b", "/a/.",
                          "/a/..", "/a b", "/a%zz", "/a?b"}) {
    EXPECT_FALSE(checkPathValue(bad).ok()) << bad;
  }
}

TEST(RouteValidationTest, Hostnames) {
  EXPECT_TRUE(checkHostname("cart.shop.svc.cluster.local", false).ok());
  EXPECT_TRUE(checkHostname("*.example.com", true).ok());
  EXPECT_FALSE(checkHostname("*.example.com", false).ok());
  EXPECT_FALSE(checkHostname("a.*.example.com", true).ok());
  EXPECT_FALSE(checkHostname("Example.com", true).ok());
  EXPECT_FALSE(checkHostname("-a.com", true).ok());
  EXPECT_FALSE(checkHostname("10.0.0.1", true).ok());
  EXPECT_FALSE(checkHostname("", true).ok());
}

TEST(RouteValidationTest, HeaderAndGrpcNames) {
  EXPECT_TRUE(checkHeaderName("X-Custom_Header.1").ok());
  EXPECT_FALSE(checkHeaderName(":authority").ok());
  EXPECT_FALSE(checkHeaderName("a b").ok());
  EXPECT_TRUE(checkGrpcService("helloworld.Greeter").ok());
  EXPECT_TRUE(checkGrpcService(".pkg.v1.Svc").ok());
  EXPECT_FALSE(checkGrpcService("pkg..Svc").ok());
  EXPECT_FALSE(checkGrpcService("1pkg.Svc").ok());
  EXPECT_TRUE(checkGrpcMethod("SayHello").ok());
  EXPECT_FALSE(checkGrpcMethod("Say.Hello").ok());
  EXPECT_TRUE(checkRegex("/api/v[0-9]+/.*").ok());
  EXPECT_FALSE(checkRegex("(").ok());
  // RE2 has no backreferences: a pattern that would need backtracking is refused up front.
  EXPECT_FALSE(checkRegex("(a)\\1").ok());
}

}  // namespace
}  // namespace nodemesh::model
