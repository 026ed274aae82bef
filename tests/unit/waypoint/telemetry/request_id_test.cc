#include "waypoint/telemetry/request_id.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "tests/unit/waypoint/telemetry/telemetry_fixtures.h"

namespace nodemesh::waypoint {
namespace {

using testing::FixedRandom;

TEST(RequestIdTest, SaneInboundIdIsKept) {
  SystemRandom random;
  EXPECT_EQ(requestIdFor("5f1c8a4e-2b7d-4c1a-9e3f-0a1b2c3d4e5f", random),
            "5f1c8a4e-2b7d-4c1a-9e3f-0a1b2c3d4e5f");
  EXPECT_EQ(requestIdFor("req_42/ABC~!", random), "req_42/ABC~!");
  EXPECT_EQ(requestIdFor(std::string(kMaxRequestIdLength, 'a'), random),
            std::string(kMaxRequestIdLength, 'a'));
}

TEST(RequestIdTest, MissingOrInsaneIdIsReplaced) {
  const std::string generated = "00000000-0000-4000-8000-000000000000";
  for (std::optional<std::string_view> bad :
       {std::optional<std::string_view>(), std::optional<std::string_view>(""),
        std::optional<std::string_view>("has space"), std::optional<std::string_view>("tab\there"),
        std::optional<std::string_view>("new\nline"),
        std::optional<std::string_view>("caf\xc3\xa9"),
        std::optional<std::string_view>(std::string_view("nul\0x", 5))}) {
    FixedRandom zeros({});
    EXPECT_EQ(requestIdFor(bad, zeros), generated) << (bad ? *bad : "<none>");
  }
  const std::string too_long(kMaxRequestIdLength + 1, 'a');
  FixedRandom zeros({});
  EXPECT_EQ(requestIdFor(too_long, zeros), generated);
}

TEST(RequestIdTest, NewIdsAreVersion4Uuids) {
  FixedRandom ones(std::vector<uint8_t>(16, 0xff));
  EXPECT_EQ(newRequestId(ones), "ffffffff-ffff-4fff-bfff-ffffffffffff");
  FixedRandom counting(testing::countingBytes(16));
  EXPECT_EQ(newRequestId(counting), "01020304-0506-4708-890a-0b0c0d0e0f10");
  SystemRandom random;
  const std::regex uuid4("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string id = newRequestId(random);
    EXPECT_TRUE(std::regex_match(id, uuid4)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
}

}  // namespace
}  // namespace nodemesh::waypoint
