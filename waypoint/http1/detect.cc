// detectProtocol: prefix matching against the known methods and the HTTP/2 preface.

#include "waypoint/http1/detect.h"

#include <http_parser.h>

#include <algorithm>
#include <array>
#include <string_view>

namespace nodemesh::waypoint::http1 {

namespace {

constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// http-parser's method table, so that detection and parsing agree on what a method is.
constexpr std::array kMethods = {
#define NODEMESH_HTTP1_METHOD(num, name, string) std::string_view(#string),
    HTTP_METHOD_MAP(NODEMESH_HTTP1_METHOD)
#undef NODEMESH_HTTP1_METHOD
};

enum class Match { kNo, kPrefix, kFull };

// Whether `bytes` begins with `pattern` (kFull), or is a proper prefix of it (kPrefix).
Match matchPrefix(std::string_view bytes, std::string_view pattern) {
  const size_t n = std::min(bytes.size(), pattern.size());
  if (bytes.substr(0, n) != pattern.substr(0, n)) {
    return Match::kNo;
  }
  return n == pattern.size() ? Match::kFull : Match::kPrefix;
}

}  // namespace

DetectedProtocol detectProtocol(std::span<const uint8_t> first_bytes) {
  const std::string_view bytes(reinterpret_cast<const char*>(first_bytes.data()),
                               first_bytes.size());
  bool maybe = false;
  switch (matchPrefix(bytes, kH2Preface)) {
    case Match::kFull:
      return DetectedProtocol::kHttp2;
    case Match::kPrefix:
      maybe = true;
      break;
    case Match::kNo:
      break;
  }
  for (std::string_view method : kMethods) {
    // The method and one SP (RFC 9112 §3: request-line = method SP request-target SP version).
    const Match m = matchPrefix(bytes, method);
    if (m == Match::kPrefix) {
      maybe = true;
    } else if (m == Match::kFull) {
      if (bytes.size() == method.size()) {
        maybe = true;
      } else if (bytes[method.size()] == ' ') {
        return DetectedProtocol::kHttp1;
      }
    }
  }
  return maybe ? DetectedProtocol::kNeedMore : DetectedProtocol::kOther;
}

}  // namespace nodemesh::waypoint::http1
