#include "waypoint/http2/grpc.h"

#include <string>

namespace nodemesh::waypoint::http2 {

namespace {

constexpr std::string_view kGrpcContentType = "application/grpc";
constexpr int kHttpOk = 200;

}  // namespace

bool isGrpcContentType(std::string_view content_type) {
  if (content_type.size() < kGrpcContentType.size()) {
    return false;
  }
  for (size_t i = 0; i < kGrpcContentType.size(); ++i) {
    char c = content_type[i];
    c = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    if (c != kGrpcContentType[i]) {
      return false;
    }
  }
  const std::string_view rest = content_type.substr(kGrpcContentType.size());
  return rest.empty() || rest[0] == '+' || rest[0] == ';';
}

bool isGrpcRequest(const RequestHead& head) {
  return isGrpcContentType(findHeader(head.headers, "content-type"));
}

GrpcStatus grpcStatusForHttpStatus(int http_status) {
  switch (http_status) {
    case 400:
      return GrpcStatus::kInternal;
    case 401:
      return GrpcStatus::kUnauthenticated;
    case 403:
      return GrpcStatus::kPermissionDenied;
    case 404:
      return GrpcStatus::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus::kUnavailable;
    default:
      return GrpcStatus::kUnknown;
  }
}

std::string grpcPercentEncode(std::string_view message) {
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (const char c : message) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b <= 0x7e && b != '%') {
      out += c;
    } else {
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 0xf];
    }
  }
  return out;
}

ResponseHead grpcTrailersOnlyResponse(GrpcStatus status, std::string_view message) {
  ResponseHead head;
  head.status = kHttpOk;  // gRPC errors travel in grpc-status; HTTP says the call was served
  head.headers.push_back({"content-type", std::string(kGrpcContentType)});
  head.headers.push_back({"grpc-status", std::to_string(static_cast<int>(status))});
  if (!message.empty()) {
    head.headers.push_back({"grpc-message", grpcPercentEncode(message)});
  }
  return head;
}

ResponseHead grpcErrorForHttpStatus(int http_status, std::string_view message) {
  return grpcTrailersOnlyResponse(grpcStatusForHttpStatus(http_status), message);
}

}  // namespace nodemesh::waypoint::http2
