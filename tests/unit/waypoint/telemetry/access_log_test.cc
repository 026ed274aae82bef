#include "waypoint/telemetry/access_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/unit/waypoint/telemetry/telemetry_fixtures.h"

namespace nodemesh::waypoint {
namespace {

using testing::cartRequest;
using testing::Mesh;

TEST(RequestLogTest, TextLineIsExact) {
  Mesh mesh;
  EXPECT_EQ(formatRequestLog(cartRequest(mesh), AccessLogFormat::kText),
            "2026-11-18T11:06:40.123Z access reporter=waypoint method=GET path=\"/cart?id=7\" "
            "protocol=HTTP/1.1 response_code=200 response_flags=- grpc_status=- "
            "bytes_received=0 bytes_sent=512 duration_ms=12 upstream_host=10.244.2.20:8080 "
            "upstream_attempts=2 "
            "route_name=shop/cart authz=- authz_policy=- authz_rule=- jwt=- "
            "authority=cart.shop.svc.cluster.local:80 "
            "request_id=5f1c8a4e-2b7d-4c1a-9e3f-0a1b2c3d4e5f user_agent=curl/8.5.0 "
            "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 "
            "src=10.244.1.10:40290 src_identity=spiffe://cluster.local/ns/shop/sa/frontend "
            "src_workload=shop/frontend-7d9f dst_service=cart.shop.svc.cluster.local "
            "dst_workload=shop/cart-v1-5c2a dst_identity=spiffe://cluster.local/ns/shop/sa/cart");
}

TEST(RequestLogTest, TextLineOfAFailedRequestFromAnUnknownPlaintextClient) {
  Mesh mesh;
  RequestRecord r = cartRequest(mesh);
  r.source_workload = nullptr;
  r.mutual_tls = false;
  r.source_principal = "spiffe://claimed/but/not/proven";
  r.destination_workload = nullptr;
  r.destination_principal = "";
  r.upstream_host.reset();
  r.upstream_attempts = 0;
  r.route_name = "";
  r.response_code = 503;
  r.response_flags = {ResponseFlag::kNoHealthyUpstream};
  r.http_version = HttpVersion::kHttp2;
  r.grpc = true;
  r.grpc_status = 14;
  r.user_agent = "grpc-go/1.60 (linux)";
  r.path = "/cart.Cart/Get\nforged=1";
  r.duration = std::chrono::microseconds(800);
  EXPECT_EQ(
      formatRequestLog(r, AccessLogFormat::kText),
      "2026-11-18T11:06:40.123Z access reporter=waypoint method=GET "
      "path=\"/cart.Cart/Get\\nforged=1\" protocol=HTTP/2 response_code=503 "
      "response_flags=UH grpc_status=14 bytes_received=0 bytes_sent=512 duration_ms=0 "
      "upstream_host=- upstream_attempts=0 route_name=- authz=- authz_policy=- authz_rule=- jwt=- "
      "authority=cart.shop.svc.cluster.local:80 "
      "request_id=5f1c8a4e-2b7d-4c1a-9e3f-0a1b2c3d4e5f "
      "user_agent=\"grpc-go/1.60 (linux)\" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 "
      "span_id=00f067aa0ba902b7 src=10.244.1.10:40290 src_identity=- src_workload=- "
      "dst_service=cart.shop.svc.cluster.local dst_workload=- dst_identity=-");
}

TEST(RequestLogTest, JsonLineIsExact) {
  Mesh mesh;
  EXPECT_EQ(formatRequestLog(cartRequest(mesh), AccessLogFormat::kJson),
            R"({"start_time":"2026-11-18T11:06:40.123Z","reporter":"waypoint","method":"GET",)"
            R"("path":"/cart?id=7","protocol":"HTTP/1.1","response_code":200,)"
            R"("response_flags":"-","grpc_status":null,"bytes_received":0,"bytes_sent":512,)"
            R"("duration_ms":12,"upstream_host":"10.244.2.20:8080","upstream_attempts":2,)"
            R"("route_name":"shop/cart",)"
            R"("authz":"-","authz_policy":null,"authz_rule":null,"jwt":null,)"
            R"("authority":"cart.shop.svc.cluster.local:80",)"
            R"("request_id":"5f1c8a4e-2b7d-4c1a-9e3f-0a1b2c3d4e5f","user_agent":"curl/8.5.0",)"
            R"("trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",)"
            R"("src":"10.244.1.10:40290",)"
            R"("src_identity":"spiffe://cluster.local/ns/shop/sa/frontend",)"
            R"("src_workload":"shop/frontend-7d9f","dst_service":"cart.shop.svc.cluster.local",)"
            R"("dst_workload":"shop/cart-v1-5c2a",)"
            R"("dst_identity":"spiffe://cluster.local/ns/shop/sa/cart"})");
}

TEST(RequestLogTest, JsonLineHasNullsForAbsentValuesAndSurvivesBadUtf8) {
  Mesh mesh;
  RequestRecord r = cartRequest(mesh);
  r.upstream_host.reset();
  r.destination_workload = nullptr;
  r.grpc_status = 0;
  r.user_agent = "bad\xff utf8";
  auto j = nlohmann::json::parse(formatRequestLog(r, AccessLogFormat::kJson));
  EXPECT_TRUE(j["upstream_host"].is_null());
  EXPECT_TRUE(j["dst_workload"].is_null());
  EXPECT_EQ(j["grpc_status"], 0);
  EXPECT_EQ(j["user_agent"], "bad\xEF\xBF\xBD utf8");  // U+FFFD replacement
}

TEST(RequestLogTest, AuthorizationDecisionNamesPolicyAndRule) {
  Mesh mesh;
  RequestRecord r = cartRequest(mesh);
  r.response_code = 403;
  r.authz_result = "deny";
  r.authz_policy = "shop/deny-post";
  r.authz_rule = 2;
  const std::string text = formatRequestLog(r, AccessLogFormat::kText);
  EXPECT_NE(text.find(" authz=deny authz_policy=shop/deny-post authz_rule=2 "), std::string::npos)
      << text;
  auto j = nlohmann::json::parse(formatRequestLog(r, AccessLogFormat::kJson));
  EXPECT_EQ(j["authz"], "deny");
  EXPECT_EQ(j["authz_policy"], "shop/deny-post");
  EXPECT_EQ(j["authz_rule"], 2);
}

}  // namespace
}  // namespace nodemesh::waypoint
