#include "waypoint/telemetry/request_record.h"

namespace nodemesh::waypoint {

std::string_view toString(HttpVersion v) {
  switch (v) {
    case HttpVersion::kHttp10:
      return "HTTP/1.0";
    case HttpVersion::kHttp11:
      return "HTTP/1.1";
    case HttpVersion::kHttp2:
      return "HTTP/2";
  }
  return "-";
}

}  // namespace nodemesh::waypoint
