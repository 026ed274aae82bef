#pragma once

// Internal to waypoint/http2/h2_codec*.cc: a stream's state and the nghttp2 callbacks.

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "hbone/nghttp2_util.h"
#include "waypoint/http2/h2_codec.h"

namespace nodemesh::waypoint::http2 {

// The shared part (hbone/nghttp2_util.h) plus requests, responses and trailers. `visible`:
// client, submitted; server, given to onRequestHeaders. `rejected`: server, the codec answered
// or reset it, nothing reaches the owner.
struct H2Codec::Stream : hbone::h2_common::StreamBase {
  explicit Stream(StreamId stream_id) : StreamBase(stream_id) {}

  bool final_submitted = false;  // server: respond() with a final status
  bool response_sent = false;    // server: response HEADERS went out (rapid-reset accounting)
  bool final_received = false;   // client: the final response arrived; later blocks: trailers
  bool has_provider = false;     // a data provider is attached: DATA / trailers may follow
  bool trailers_pending = false;
  bool peer_reset = false;     // an RST_STREAM arrived for it
  bool total_blocked = false;  // sendData() came up short on the connection-wide queue
  bool request_sent = false;   // client: the request HEADERS went out
  HeaderList trailers;

  // The header block being received (request, response or trailers).
  HeaderList fields;
};

struct H2Codec::Callbacks {
  static H2Codec& self(void* user_data) { return *static_cast<H2Codec*>(user_data); }

  static int onBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user_data);
  static int onHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                      void* user_data);
  static int onFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data);
  static int onDataChunkRecv(nghttp2_session* session, uint8_t flags, int32_t stream_id,
                             const uint8_t* data, size_t len, void* user_data);
  static int onStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                           void* user_data);
  static int onFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* user_data);
  static int onFrameNotSend(nghttp2_session* session, const nghttp2_frame* frame,
                            int lib_error_code, void* user_data);
  static int onInvalidFrameRecv(nghttp2_session* session, const nghttp2_frame* frame,
                                int lib_error_code, void* user_data);
  static int onError(nghttp2_session* session, int lib_error_code, const char* msg, size_t len,
                     void* user_data);
  static ssize_t readData(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                          uint32_t* data_flags, nghttp2_data_source* source, void* user_data);
};

namespace h2_internal {

using hbone::h2_common::bytes;
using hbone::h2_common::view;

// nghttp2 copies names and values on submit, so the fields only need to outlive the call.
inline std::vector<nghttp2_nv> toNv(const HeaderList& fields) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
  for (const HeaderField& f : fields) {
    nva.push_back(nghttp2_nv{const_cast<uint8_t*>(bytes(f.name)),
                             const_cast<uint8_t*>(bytes(f.value)), f.name.size(), f.value.size(),
                             NGHTTP2_NV_FLAG_NONE});
  }
  return nva;
}

}  // namespace h2_internal

}  // namespace nodemesh::waypoint::http2
