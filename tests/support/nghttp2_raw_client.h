#pragma once

// A plain nghttp2 peer for the tests of both nghttp2 codecs (hbone::H2Session and the
// waypoint's H2Codec): it sends what our own clients never build and records what came back,
// independently of the code under test.

#include <nghttp2/nghttp2.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/result.h"

namespace nodemesh::testing {

// Everything `session` has to write now (Bytes: std::string or std::vector<uint8_t>).
template <typename Bytes>
Bytes drainNghttp2(nghttp2_session* session) {
  Bytes out;
  while (true) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session, &data);
    if (n <= 0) {
      return out;
    }
    out.insert(out.end(), data, data + n);
  }
}

inline Status feedNghttp2(nghttp2_session* session, std::span<const uint8_t> data) {
  const ssize_t rv = nghttp2_session_mem_recv(session, data.data(), data.size());
  if (rv < 0) {
    return Error{EPROTO, nghttp2_strerror(static_cast<int>(rv))};
  }
  return okStatus();
}

// name/value pairs as nghttp2_nv; they point into `fields`, which must outlive the submit.
inline std::vector<nghttp2_nv> toNv(
    const std::vector<std::pair<std::string, std::string>>& fields) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
  for (const auto& [name, value] : fields) {
    nva.push_back(nghttp2_nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
                             const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())),
                             name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return nva;
}

// A plain nghttp2 client session that records each stream's :status, how each stream closed
// and the GOAWAY error code. The tests' RawClient adds the requests it needs.
class Nghttp2RawClient {
 public:
  // assumed_peer_max_streams: lets a test open more streams than the server allows before its
  // SETTINGS arrive. no_http_messaging: send requests nghttp2 would refuse as malformed.
  explicit Nghttp2RawClient(uint32_t assumed_peer_max_streams, bool no_http_messaging = false) {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &Nghttp2RawClient::onHeader);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Nghttp2RawClient::onStreamClose);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Nghttp2RawClient::onFrameRecv);
    nghttp2_option* option = nullptr;
    nghttp2_option_new(&option);
    nghttp2_option_set_peer_max_concurrent_streams(option, assumed_peer_max_streams);
    if (no_http_messaging) {
      nghttp2_option_set_no_http_messaging(option, 1);
    }
    nghttp2_session_client_new2(&session_, cbs, this, option);
    nghttp2_option_del(option);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Nghttp2RawClient() { nghttp2_session_del(session_); }
  Nghttp2RawClient(const Nghttp2RawClient&) = delete;
  Nghttp2RawClient& operator=(const Nghttp2RawClient&) = delete;

  std::map<int32_t, int> status;
  std::map<int32_t, uint32_t> closed;
  std::optional<uint32_t> goaway_error;

 protected:
  nghttp2_session* session_ = nullptr;

 private:
  static Nghttp2RawClient& self(void* user_data) {
    return *static_cast<Nghttp2RawClient*>(user_data);
  }
  static int onHeader(nghttp2_session* /*session*/, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t /*flags*/,
                      void* user_data) {
    if (std::string_view(reinterpret_cast<const char*>(name), namelen) == ":status") {
      self(user_data).status[frame->hd.stream_id] =
          std::stoi(std::string(reinterpret_cast<const char*>(value), valuelen));
    }
    return 0;
  }
  static int onStreamClose(nghttp2_session* /*session*/, int32_t stream_id, uint32_t error_code,
                           void* user_data) {
    self(user_data).closed[stream_id] = error_code;
    return 0;
  }
  static int onFrameRecv(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                         void* user_data) {
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      self(user_data).goaway_error = frame->goaway.error_code;
    }
    return 0;
  }
};

// Moves what `from` has to write into `to`; false when there was nothing. Endpoint: each test
// util's own interface, takeOutput() (std::string or std::vector<uint8_t>) and receive(span).
template <typename Endpoint>
bool transferOutput(Endpoint& from, Endpoint& to) {
  const auto bytes = from.takeOutput();
  if (bytes.empty()) {
    return false;
  }
  Status status = to.receive({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  EXPECT_TRUE(status.ok()) << status.error().message;
  return true;
}

// Runs both directions until neither side has anything left to write.
template <typename Endpoint>
void pumpUntilIdle(Endpoint& a, Endpoint& b) {
  for (int round = 0; round < 100000; ++round) {
    const bool moved_ab = transferOutput(a, b);
    const bool moved_ba = transferOutput(b, a);
    if (!moved_ab && !moved_ba) {
      return;
    }
  }
  ADD_FAILURE() << "pump did not settle";
}

}  // namespace nodemesh::testing
