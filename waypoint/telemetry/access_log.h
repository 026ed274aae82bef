#pragma once

// The waypoint's access log: one line per finished request, text (key=value, like the node
// agent's lines) or JSON, chosen by the same --access-log-format switch as the agent's. Fields,
// named as in Envoy's and Istio's default access log where one exists:
//
//   text: 2026-11-18T11:06:40.123Z access reporter=waypoint method=GET path=/cart
//         protocol=HTTP/1.1 response_code=200 response_flags=- grpc_status=- bytes_received=0
//         bytes_sent=512 duration_ms=12 upstream_host=10.244.2.20:8080 upstream_attempts=1
//         route_name=shop/cart
//         authority=cart.shop.svc.cluster.local:8080 request_id=... user_agent=curl/8.5.0
//         trace_id=... span_id=... src=10.244.1.10:40290 src_identity=spiffe://...
//         src_workload=shop/frontend-7d9f dst_service=cart.shop.svc.cluster.local
//         dst_workload=shop/cart-v1-5c2a dst_identity=spiffe://...
//   json: {"start_time":"2026-...","reporter":"waypoint","method":"GET",...}
//
// In text, "-" stands for a value that is absent and values with spaces, quotes, '=' or control
// characters are quoted (telemetry/access_log_format.h); in JSON absent values are null.

#include <string>

#include "telemetry/access_log_format.h"
#include "waypoint/telemetry/request_record.h"

namespace nodemesh::waypoint {

using telemetry::AccessLogFormat;

// One access log line for `r`, without the trailing newline.
std::string formatRequestLog(const RequestRecord& r, AccessLogFormat format);

}  // namespace nodemesh::waypoint
