#pragma once

// Internal to hbone/h2_session*.cc: a stream's state and the nghttp2 callbacks' declarations.

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "hbone/h2_session.h"
#include "hbone/nghttp2_util.h"

namespace nodemesh::hbone {

namespace h2_internal {

inline constexpr size_t kHeaderFieldOverhead = 32;  // RFC 9113 §6.5.2 / RFC 7541 §4.1

}  // namespace h2_internal

// The shared part (hbone/nghttp2_util.h) plus what a CONNECT tunnel needs. `visible`: client,
// opened; server, given to onRequest. `rejected`: answered with a non-200, no tunnel, no more
// bytes either way.
struct H2Session::Stream : h2_common::StreamBase {
  explicit Stream(StreamId stream_id) : StreamBase(stream_id) {}

  bool responded = false;
  std::chrono::steady_clock::time_point opened;  // server: when onRequest got it
  bool can_send = false;                         // tunnel up: the data provider may produce DATA

  // The header block being received (request on the server, response on the client).
  int status = 0;
  std::string method;
  bool has_protocol = false;
  bool has_authority = false;
  ConnectRequest request;
};

// nghttp2 calls these with the session as user_data; they translate to H2Handler events.
struct H2Session::Callbacks {
  static H2Session& self(void* user_data) { return *static_cast<H2Session*>(user_data); }

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

}  // namespace nodemesh::hbone
