#include "waypoint/telemetry/trace_context.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/waypoint/telemetry/telemetry_fixtures.h"

namespace nodemesh::waypoint {
namespace {

using testing::countingBytes;
using testing::FixedRandom;

// The spec's example (section 3.2.2.5).
constexpr const char* kTraceId = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr const char* kParentId = "00f067aa0ba902b7";
constexpr const char* kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceparentTest, ParsesTheSpecExample) {
  auto ctx = parseTraceparent(kValid);
  ASSERT_TRUE(ctx.ok()) << ctx.error().message;
  EXPECT_EQ(ctx->traceId(), kTraceId);
  EXPECT_EQ(ctx->spanId(), kParentId);
  EXPECT_EQ(ctx->flags, 0x01);
  EXPECT_TRUE(ctx->sampled());
  EXPECT_EQ(ctx->traceparent(), kValid);
}

TEST(TraceparentTest, AcceptsUnsampledOtherFlagsAndSurroundingWhitespace) {
  auto unsampled = parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(unsampled.ok());
  EXPECT_FALSE(unsampled->sampled());
  // Version 00's unknown flag bits are carried on.
  auto flags = parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09");
  ASSERT_TRUE(flags.ok());
  EXPECT_EQ(flags->flags, 0x09);
  EXPECT_TRUE(parseTraceparent(std::string(" \t") + kValid + " ").ok());
}

TEST(TraceparentTest, HigherVersionIsReadByItsFirstFourFields) {
  auto longer = parseTraceparent(
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-will-be-like");
  ASSERT_TRUE(longer.ok()) << longer.error().message;
  EXPECT_EQ(longer->traceId(), kTraceId);
  EXPECT_EQ(longer->spanId(), kParentId);
  EXPECT_EQ(longer->flags, 0x01);  // only "sampled" is known across versions
  EXPECT_TRUE(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").ok());
  // The flags must be followed by '-' or the end.
  EXPECT_FALSE(
      parseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what").ok());
}

TEST(TraceparentTest, RejectsWhatTheSpecRejects) {
  for (const char* bad : {
           "", "00",
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version ff
           "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // uppercase version
           "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // not hex
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   // uppercase trace-id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",   // uppercase parent-id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",   // uppercase flags
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",   // not hex
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   // zero trace-id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   // zero parent-id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",  // 00 has 4 fields
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",   // short flags
           "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  // short trace-id
           "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",  // wrong separator
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
           "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  // higher, too short
       }) {
    EXPECT_FALSE(parseTraceparent(bad).ok()) << "accepted: " << bad;
  }
}

TEST(ContinueTraceTest, KeepsTraceIdAndFlagsWithANewSpan) {
  FixedRandom random(countingBytes(64));
  InboundTrace in;
  in.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
  in.tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
  HopTrace hop = continueTrace(in, random);
  EXPECT_FALSE(hop.restarted);
  EXPECT_EQ(hop.context.traceId(), kTraceId);
  EXPECT_EQ(hop.context.flags, 0x00);  // the client's sampling decision stands
  EXPECT_EQ(hop.context.spanId(), "0102030405060708");
  ASSERT_TRUE(hop.parent_span_id.has_value());
  EXPECT_EQ(std::string(hop.parent_span_id->data(), 16), kParentId);
  EXPECT_EQ(hop.context.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-00");
  EXPECT_EQ(hop.tracestate, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
}

TEST(ContinueTraceTest, EachHopGetsItsOwnSpan) {
  SystemRandom random;
  InboundTrace in;
  in.traceparent = kValid;
  HopTrace first = continueTrace(in, random);
  const std::string next = first.context.traceparent();
  in.traceparent = next;
  HopTrace second = continueTrace(in, random);
  EXPECT_EQ(second.context.traceId(), kTraceId);
  EXPECT_NE(second.context.spanId(), first.context.spanId());
  EXPECT_NE(first.context.spanId(), kParentId);
  EXPECT_EQ(std::string(second.parent_span_id->data(), 16), first.context.spanId());
}

TEST(ContinueTraceTest, MissingTraceparentStartsASampledTrace) {
  FixedRandom random(countingBytes(64));
  HopTrace hop = continueTrace(InboundTrace{}, random);
  EXPECT_TRUE(hop.restarted);
  EXPECT_EQ(hop.context.traceId(), "0102030405060708090a0b0c0d0e0f10");
  EXPECT_EQ(hop.context.spanId(), "1112131415161718");
  EXPECT_TRUE(hop.context.sampled());
  EXPECT_FALSE(hop.parent_span_id.has_value());
  EXPECT_EQ(hop.context.traceparent(), "00-0102030405060708090a0b0c0d0e0f10-1112131415161718-01");
  EXPECT_TRUE(hop.tracestate.empty());
}

TEST(ContinueTraceTest, InvalidOrRepeatedTraceparentRestartsAndDropsTracestate) {
  InboundTrace invalid;
  invalid.traceparent = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
  invalid.tracestate = "congo=t61rcWkgMzE";
  FixedRandom random(countingBytes(64));
  HopTrace hop = continueTrace(invalid, random);
  EXPECT_TRUE(hop.restarted);
  EXPECT_EQ(hop.context.traceId(), "0102030405060708090a0b0c0d0e0f10");
  EXPECT_TRUE(hop.context.sampled());
  EXPECT_TRUE(hop.tracestate.empty());

  InboundTrace repeated;
  repeated.traceparent = kValid;
  repeated.traceparent_repeated = true;
  SystemRandom system;
  HopTrace again = continueTrace(repeated, system);
  EXPECT_TRUE(again.restarted);
  EXPECT_NE(again.context.traceId(), kTraceId);
}

TEST(ContinueTraceTest, NeverMakesAnAllZeroIdOrReusesTheParentSpan) {
  // The first 16 random bytes are zero: the trace id is drawn again.
  std::vector<uint8_t> bytes(16, 0);
  for (uint8_t b : countingBytes(32)) bytes.push_back(b);
  FixedRandom zeros(bytes);
  HopTrace fresh = continueTrace(InboundTrace{}, zeros);
  EXPECT_EQ(fresh.context.traceId(), "0102030405060708090a0b0c0d0e0f10");

  // The first span drawn equals the client's: drawn again.
  std::vector<uint8_t> same = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7,
                               0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
  FixedRandom collide(same);
  InboundTrace in;
  in.traceparent = kValid;
  EXPECT_EQ(continueTrace(in, collide).context.spanId(), "1122334455667788");
}

TEST(TracestateTest, LongListsAreCutTheSpecsWay) {
  // Within bounds: unchanged, byte for byte.
  EXPECT_EQ(boundTracestate("a=1, b=2"), "a=1, b=2");
  // Over 512 characters: members over 128 characters go first.
  const std::string big = "big=" + std::string(200, 'x');
  std::string list = "a=1," + big;
  for (int i = 0; i < 30; ++i) list += ",k" + std::to_string(i) + "=" + std::string(8, 'v');
  ASSERT_GT(list.size(), kMaxTracestateLength);
  std::string cut = boundTracestate(list);
  EXPECT_EQ(cut.find("big="), std::string::npos);
  EXPECT_EQ(cut.rfind("a=1,k0=", 0), 0u);
  EXPECT_LE(cut.size(), kMaxTracestateLength);
  // Then from the end until it fits.
  std::string longer;
  for (int i = 0; i < 30; ++i) {
    longer += fmt::format("{}m{}={}", i ? "," : "", i, std::string(40, 'v'));
  }
  cut = boundTracestate(longer);
  EXPECT_LE(cut.size(), kMaxTracestateLength);
  EXPECT_EQ(cut.rfind("m0=", 0), 0u);
  EXPECT_EQ(cut.find("m29="), std::string::npos);
  // More than 32 members: the first 32 stay.
  std::string many;
  for (int i = 0; i < 40; ++i) many += fmt::format("{}k{}=1", i ? "," : "", i);
  cut = boundTracestate(many);
  EXPECT_EQ(std::count(cut.begin(), cut.end(), ','), 31);
  EXPECT_NE(cut.find(",k31=1"), std::string::npos);
  EXPECT_EQ(cut.find("k32=1"), std::string::npos);
}

}  // namespace
}  // namespace nodemesh::waypoint
