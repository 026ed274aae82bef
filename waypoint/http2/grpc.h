#pragma once

// gRPC over HTTP/2 as the waypoint sees it (gRPC's PROTOCOL-HTTP2.md): recognising gRPC
// requests, and the trailers-only response the waypoint sends when it fails a call itself
// (no route, no upstream, denied), so the client sees a gRPC status instead of a bare HTTP one.

#include <string>
#include <string_view>

#include "waypoint/http2/http_head.h"

namespace nodemesh::waypoint::http2 {

// gRPC status codes (grpc/doc/statuscodes.md).
enum class GrpcStatus : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// "application/grpc", optionally followed by "+proto", "+json", ... or ";params".
bool isGrpcContentType(std::string_view content_type);
// A request whose content-type is gRPC's.
bool isGrpcRequest(const RequestHead& head);

// The gRPC status a client derives from an HTTP status when no grpc-status came
// (grpc/doc/http-grpc-status-mapping.md): 400 INTERNAL, 401 UNAUTHENTICATED,
// 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, else UNKNOWN.
GrpcStatus grpcStatusForHttpStatus(int http_status);

// grpc-message encoding: bytes outside printable ASCII, and '%', become %XX.
std::string grpcPercentEncode(std::string_view message);

// A trailers-only response (PROTOCOL-HTTP2.md "Trailers-Only"): :status 200,
// content-type application/grpc, grpc-status and (when not empty) grpc-message, all in one
// HEADERS frame. Send it with respond(stream, head, /*end_stream=*/true).
ResponseHead grpcTrailersOnlyResponse(GrpcStatus status, std::string_view message);
// The same for a failure the waypoint would answer with `http_status` on plain HTTP (503 when
// no upstream is left: UNAVAILABLE).
ResponseHead grpcErrorForHttpStatus(int http_status, std::string_view message);

}  // namespace nodemesh::waypoint::http2
