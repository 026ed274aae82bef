#include "telemetry/access_log_format.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

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

std::string jsonString(std::string_view v) {
  std::string out;
  appendJsonString(out, v);
  return out;
}

TEST(AccessLogFormatTest, JsonStringsAreWhatNlohmannWrites) {
  for (std::string_view v :
       {std::string_view(""), std::string_view("plain /path?a=b"),
        std::string_view("quote\" back\\slash"), std::string_view("\b\f\n\r\t\x01\x1f\x7f"),
        std::string_view("nul\0byte", 8), std::string_view("caf\xc3\xa9 \xe2\x82\xac"),
        std::string_view("\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf")}) {
    EXPECT_EQ(jsonString(v), nlohmann::json(std::string(v)).dump()) << v;
  }
}

TEST(AccessLogFormatTest, InvalidUtf8BecomesReplacementCharacters) {
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(jsonString("bad\xff utf8"), "\"bad" + r + " utf8\"");
  EXPECT_EQ(jsonString("\xc0\xaf"), "\"" + r + r + "\"");                  // overlong '/'
  EXPECT_EQ(jsonString("\xed\xa0\x80"), "\"" + r + r + r + "\"");          // a surrogate
  EXPECT_EQ(jsonString("\xf4\x90\x80\x80"), "\"" + r + r + r + r + "\"");  // past U+10FFFF
  EXPECT_EQ(jsonString("cut \xe2\x82"), "\"cut " + r + r + "\"");          // truncated sequence
  // Whatever the input, the output is one valid JSON string.
  EXPECT_TRUE(nlohmann::json::accept(jsonString("\xfe\xff\x80\xc3")));
}

}  // namespace
}  // namespace nodemesh::telemetry
