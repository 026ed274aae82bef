#include "telemetry/access_log_format.h"

#include <gtest/gtest.h>

namespace nodemesh::telemetry {
namespace {

TEST(AccessLogFormatTest, TimestampIsUtcWithMilliseconds) {
  const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795000000123));
  EXPECT_EQ(logTimestamp(t), "2026-11-18T11:06:40.123Z");
}

TEST(AccessLogFormatTest, TextValuesAreQuotedOnlyWhenNeeded) {
  EXPECT_EQ(logTextValue(""), "-");
  EXPECT_EQ(logTextValue("spiffe://cluster.local/ns/a/sa/b"), "spiffe://cluster.local/ns/a/sa/b");
  EXPECT_EQ(logTextValue("curl/8.0 (x)"), "\"curl/8.0 (x)\"");
  EXPECT_EQ(logTextValue("a=b"), "\"a=b\"");
  EXPECT_EQ(logTextValue("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
}

TEST(AccessLogFormatTest, ControlCharactersCannotBreakTheLine) {
  EXPECT_EQ(logTextValue("/a\nb=1 forged=yes"), "\"/a\\nb=1 forged=yes\"");
  EXPECT_EQ(logTextValue("x\r\ty"), "\"x\\r\\ty\"");
  EXPECT_EQ(logTextValue(std::string_view("\x01\x7f", 2)), "\"\\x01\\x7f\"");
}

}  // namespace
}  // namespace nodemesh::telemetry
