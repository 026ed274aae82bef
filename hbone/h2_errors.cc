#include "hbone/h2_errors.h"

#include <nghttp2/nghttp2.h>

namespace nodemesh::hbone {

std::string_view h2ErrorName(uint32_t code) {
  return nghttp2_http2_strerror(code);
}

}  // namespace nodemesh::hbone
