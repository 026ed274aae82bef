#pragma once

// Pieces both nghttp2 codecs share: hbone::H2Session (HTTP/2 CONNECT) and the waypoint's
// http2::H2Codec (ordinary requests), which was modeled on it. Only mechanics of driving
// nghttp2 live here; what a codec accepts on a stream stays in the codec.

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/result.h"
#include "hbone/byte_queue.h"
#include "hbone/h2_errors.h"

namespace nodemesh::hbone::h2_common {

inline constexpr uint32_t kMaxWindow = std::numeric_limits<int32_t>::max();  // RFC 9113 §6.9.1
inline constexpr uint32_t kDefaultWindow = 65535;

inline std::string_view view(const uint8_t* data, size_t len) {
  return {reinterpret_cast<const char*>(data), len};
}

inline const uint8_t* bytes(std::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* cbs) const { nghttp2_session_callbacks_del(cbs); }
};
struct OptionDeleter {
  void operator()(nghttp2_option* option) const { nghttp2_option_del(option); }
};
using CallbacksPtr = std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter>;
using OptionPtr = std::unique_ptr<nghttp2_option, OptionDeleter>;

// The callback set both codecs register, taken from a codec's `Callbacks` struct. Neither sets
// on_invalid_header: without one nghttp2 resets a stream whose header block has an invalid
// field with PROTOCOL_ERROR (RFC 9113 §8.2.1, §8.1.1) instead of dropping the field.
template <typename Callbacks>
Result<CallbacksPtr> newCallbacks() {
  nghttp2_session_callbacks* raw_cbs = nullptr;
  if (nghttp2_session_callbacks_new(&raw_cbs) != 0) {
    return Error{ENOMEM, "nghttp2_session_callbacks_new"};
  }
  CallbacksPtr cbs(raw_cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs.get(), &Callbacks::onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs.get(), &Callbacks::onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs.get(), &Callbacks::onFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs.get(), &Callbacks::onDataChunkRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs.get(), &Callbacks::onStreamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs.get(), &Callbacks::onFrameSend);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs.get(), &Callbacks::onFrameNotSend);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs.get(),
                                                               &Callbacks::onInvalidFrameRecv);
  nghttp2_session_callbacks_set_error_callback2(cbs.get(), &Callbacks::onError);
  return cbs;
}

// The stream state both codecs keep for nghttp2; each codec's Stream adds its own on top.
struct StreamBase {
  explicit StreamBase(int32_t stream_id) : id(stream_id) {}

  int32_t id;
  bool visible = false;   // the owner knows it
  bool rejected = false;  // the codec answered or refused it: nothing more reaches the owner
  bool deferred = false;  // the data provider returned NGHTTP2_ERR_DEFERRED
  bool end_requested = false;
  bool remote_ended = false;
  bool reset_requested = false;
  bool write_blocked = false;  // the owner's send came up short on `queue`: onWritable owed
  uint32_t reset_code = kH2NoError;
  uint64_t unconsumed = 0;  // bytes delivered to the owner and not yet given back
  ByteQueue queue;          // bytes the owner queued and nghttp2 has not framed yet

  // The header block being received.
  size_t header_bytes = 0;
  bool headers_too_large = false;
};

// PING opaque data (RFC 9113 §6.7) as a big-endian counter value.
inline std::array<uint8_t, 8> pingPayload(uint64_t opaque) {
  std::array<uint8_t, 8> payload{};
  for (size_t i = 0; i < payload.size(); ++i) {
    payload[i] = static_cast<uint8_t>(opaque >> (8 * (payload.size() - 1 - i)));
  }
  return payload;
}

inline uint64_t pingOpaque(const nghttp2_ping& ping) {
  uint64_t opaque = 0;
  for (uint8_t b : ping.opaque_data) {
    opaque = (opaque << 8) | b;
  }
  return opaque;
}

// Context for the error a later call reports (nghttp2's own error codes say little).
inline std::string invalidFrameMessage(const nghttp2_frame& frame, int lib_error_code) {
  return "invalid frame (type " + std::to_string(frame.hd.type) + ", stream " +
         std::to_string(frame.hd.stream_id) + "): " + nghttp2_strerror(lib_error_code);
}

// Why the connection failed when nghttp2 itself sent a GOAWAY with `error_code`.
inline std::string sentGoawayMessage(uint32_t error_code, const std::string& last_invalid) {
  std::string message =
      "HTTP/2 connection error, sent GOAWAY " + std::string(h2ErrorName(error_code));
  if (!last_invalid.empty()) {
    message += ": " + last_invalid;
  }
  return message;
}

// How many more streams a client may open: the lower of our own limit and the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS, less the `open` ones.
inline uint32_t streamsAvailable(nghttp2_session* session, uint32_t own_limit, size_t open) {
  const uint32_t limit = std::min(own_limit, nghttp2_session_get_remote_settings(
                                                 session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
  return limit > open ? limit - static_cast<uint32_t>(open) : 0;
}

// Settings and limits a codec applies at creation (see newSession()).
struct SessionLimits {
  bool server = false;
  uint32_t initial_stream_window = 0;
  uint32_t connection_window = 0;
  uint32_t max_header_list_bytes = 0;
  uint32_t max_concurrent_streams = 0;
};

// nghttp2 options both codecs need; a codec may add its own before newSession().
Result<OptionPtr> newOptions(const SessionLimits& limits);

// Creates the session with `user_data` and queues SETTINGS and the connection WINDOW_UPDATE.
Status newSession(nghttp2_session** session, const SessionLimits& limits,
                  const nghttp2_session_callbacks* cbs, const nghttp2_option* option,
                  void* user_data);

// consumed(): gives n bytes back to the flow-control windows of `stream_id`. `unconsumed` is
// the open stream's count, or null when the stream is closed (then closed_unconsumed holds it).
// dead: nghttp2 is unusable, only the bookkeeping is updated.
Status giveBackWindow(nghttp2_session* session, bool dead, int32_t stream_id, size_t n,
                      uint64_t* unconsumed,
                      std::unordered_map<int32_t, uint64_t>& closed_unconsumed);

}  // namespace nodemesh::hbone::h2_common
