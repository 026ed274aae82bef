// Shared nghttp2 set-up and flow-control bookkeeping of H2Session and the waypoint's H2Codec.

#include "hbone/nghttp2_util.h"

#include <cerrno>
#include <string>
#include <vector>

namespace nodemesh::hbone::h2_common {

Result<OptionPtr> newOptions(const SessionLimits& limits) {
  nghttp2_option* raw_option = nullptr;
  if (nghttp2_option_new(&raw_option) != 0) {
    return Error{ENOMEM, "nghttp2_option_new"};
  }
  OptionPtr option(raw_option);
  // Windows reopen only through consumed(), i.e. once the bytes were written on.
  nghttp2_option_set_no_auto_window_update(option.get(), 1);
  // Until the peer's SETTINGS arrive, assume our own limit rather than nghttp2's default.
  nghttp2_option_set_peer_max_concurrent_streams(option.get(), limits.max_concurrent_streams);
  nghttp2_option_set_max_send_header_block_length(option.get(), limits.max_header_list_bytes);
  return option;
}

Status newSession(nghttp2_session** session, const SessionLimits& limits,
                  const nghttp2_session_callbacks* cbs, const nghttp2_option* option,
                  void* user_data) {
  const int rv = limits.server ? nghttp2_session_server_new2(session, cbs, user_data, option)
                               : nghttp2_session_client_new2(session, cbs, user_data, option);
  if (rv != 0) {
    return Error{ENOMEM, std::string("nghttp2 session: ") + nghttp2_strerror(rv)};
  }
  std::vector<nghttp2_settings_entry> settings = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits.max_header_list_bytes},
  };
  if (limits.server) {
    settings.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams});
  }
  if (int err =
          nghttp2_submit_settings(*session, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
      err != 0) {
    return Error::invalid(std::string("nghttp2_submit_settings: ") + nghttp2_strerror(err));
  }
  // SETTINGS cannot change the connection window; a WINDOW_UPDATE on stream 0 does.
  if (int err = nghttp2_session_set_local_window_size(
          *session, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(limits.connection_window));
      err != 0) {
    return Error::invalid(std::string("connection window: ") + nghttp2_strerror(err));
  }
  return okStatus();
}

Status giveBackWindow(nghttp2_session* session, bool dead, int32_t stream_id, size_t n,
                      uint64_t* unconsumed,
                      std::unordered_map<int32_t, uint64_t>& closed_unconsumed) {
  if (n == 0) {
    return okStatus();
  }
  // Never give back more than was delivered: an oversized WINDOW_UPDATE would let the peer
  // overrun the bound (or be a FLOW_CONTROL_ERROR, RFC 9113 §6.9.1).
  auto closed = closed_unconsumed.find(stream_id);
  if (unconsumed == nullptr && closed != closed_unconsumed.end()) {
    unconsumed = &closed->second;
  }
  if (unconsumed == nullptr || n > *unconsumed) {
    return Error::invalid("stream " + std::to_string(stream_id) +
                          ": consumed() more than was delivered");
  }
  *unconsumed -= n;
  if (closed != closed_unconsumed.end() && closed->second == 0) {
    closed_unconsumed.erase(closed);
  }
  if (dead) {
    return okStatus();
  }
  // Also valid for closed streams: nghttp2 then reopens only the connection window.
  if (int rv = nghttp2_session_consume(session, stream_id, n); rv != 0) {
    return Error{EPROTO, std::string("nghttp2_session_consume: ") + nghttp2_strerror(rv)};
  }
  return okStatus();
}

}  // namespace nodemesh::hbone::h2_common
