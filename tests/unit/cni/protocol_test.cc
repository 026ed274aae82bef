#include "cni/protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace nodemesh::cni {
namespace {

CniRequest sampleRequest() {
  CniRequest r;
  r.command = CniCommand::kAdd;
  r.container_id = "0123abcd";
  r.netns = "/var/run/netns/cni-1234";
  r.if_name = "eth0";
  r.pod_namespace = "shop";
  r.pod_name = "cart-1";
  r.pod_uid = "9f1c-uid";
  r.ips = {"10.244.1.5/24", "fd00::5/64"};
  return r;
}

TEST(CniProtocolTest, RequestRoundTripsAsOneLine) {
  const std::string line = encodeRequest(sampleRequest());
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  auto decoded = decodeRequest(line);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(*decoded, sampleRequest());
}

TEST(CniProtocolTest, EveryCommandRoundTrips) {
  for (CniCommand c : {CniCommand::kAdd, CniCommand::kDel, CniCommand::kCheck}) {
    CniRequest r = sampleRequest();
    r.command = c;
    auto decoded = decodeRequest(encodeRequest(r));
    ASSERT_TRUE(decoded.ok()) << decoded.error().message;
    EXPECT_EQ(decoded->command, c);
  }
}

TEST(CniProtocolTest, RepliesRoundTrip) {
  for (const CniReply& reply :
       {CniReply::success(true, "enrolled shop/cart-1"),
        CniReply::success(false, "not in the mesh"), CniReply::failure("capture failed: EPERM")}) {
    auto decoded = decodeReply(encodeReply(reply));
    ASSERT_TRUE(decoded.ok()) << decoded.error().message;
    EXPECT_EQ(*decoded, reply);
  }
}

TEST(CniProtocolTest, WireFormatIsTheDocumentedOne) {
  EXPECT_EQ(encodeReply(CniReply::failure("no")),
            "{\"error\":\"no\",\"ok\":false,\"version\":1}\n");
  auto r = decodeRequest(
      R"({"version":1,"command":"DEL","containerId":"c","netns":"","ifName":"eth0"})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->command, CniCommand::kDel);
  EXPECT_TRUE(r->ips.empty());
  EXPECT_TRUE(r->pod_name.empty());
}

TEST(CniProtocolTest, BadRequestsNameTheProblem) {
  const struct {
    const char* line;
    const char* expected;
  } cases[] = {
      {"", "not valid JSON"},
      {"{", "not valid JSON"},
      {"[1]", "not a JSON object"},
      {R"({"command":"ADD"})", "\"version\""},
      {R"({"version":"1","command":"ADD"})", "\"version\""},
      {R"({"version":2,"command":"ADD","containerId":"c","netns":"/n"})", "version 2"},
      {R"({"version":1})", "\"command\" is missing"},
      {R"({"version":1,"command":"GET","containerId":"c"})", "unknown command"},
      {R"({"version":1,"command":7,"containerId":"c"})", "\"command\" is not a string"},
      {R"({"version":1,"command":"ADD"})", "\"containerId\" is missing"},
      {R"({"version":1,"command":"ADD","containerId":""})", "\"containerId\" is empty"},
      {R"({"version":1,"command":"ADD","containerId":"c"})", "\"netns\" is required"},
      {R"({"version":1,"command":"ADD","containerId":"c","netns":"/n","podName":5})",
       "\"podName\" is not a string"},
      {R"({"version":1,"command":"ADD","containerId":"c","netns":"/n","ips":"10.0.0.1/24"})",
       "\"ips\" is not an array"},
      {R"({"version":1,"command":"ADD","containerId":"c","netns":"/n","ips":["10.0.0.1"]})",
       "not an address/prefix"},
      {R"({"version":1,"command":"ADD","containerId":"c","netns":"/n","ips":["10.0.0.1/33"]})",
       "not an address/prefix"},
      {R"({"version":1,"command":"ADD","containerId":"c","netns":"/n","ips":["nope/24"]})",
       "not an address/prefix"},
      {R"({"version":1,"command":"ADD","containerId":"c","netns":"/n","ips":[1]})",
       "not an address/prefix"},
  };
  for (const auto& c : cases) {
    auto r = decodeRequest(c.line);
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_NE(r.error().message.find(c.expected), std::string::npos)
        << c.line << " -> " << r.error().message;
  }
}

TEST(CniProtocolTest, OversizedRequestIsRefused) {
  std::string line = R"({"version":1,"command":"ADD","containerId":")";
  line.append(kMaxMessageBytes, 'a');
  line += R"(","netns":"/n"})";
  auto r = decodeRequest(line);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("longer than"), std::string::npos);
}

TEST(CniProtocolTest, BadRepliesAreErrors) {
  for (const char* line :
       {"", "nope", R"({"version":1})", R"({"version":1,"ok":"yes"})",
        R"({"version":1,"ok":false})", R"({"version":1,"ok":false,"error":3})",
        R"({"version":1,"ok":true,"enrolled":"no"})", R"({"version":3,"ok":true})"}) {
    EXPECT_FALSE(decodeReply(line).ok()) << line;
  }
}

TEST(CniProtocolTest, InvalidUtf8IsEncodedNotThrown) {
  CniRequest r = sampleRequest();
  r.pod_name = std::string("bad\xff\xfe", 5);
  const std::string line = encodeRequest(r);
  auto decoded = decodeRequest(line);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_NE(decoded->pod_name, r.pod_name);  // replaced, but the rest survives
  EXPECT_EQ(decoded->container_id, r.container_id);
}

}  // namespace
}  // namespace nodemesh::cni
