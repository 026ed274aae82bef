// nm-loadgen http-server's HTTP/2 side (loadgen_h2_server.h).

#include "bench/loadgen/loadgen_h2_server.h"

#include <algorithm>
#include <array>
#include <cstdio>

namespace nodemesh::bench::loadgen {

H2Server::H2Server(const std::string& body) : body_(body) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &H2Server::onFrameRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &H2Server::onStreamClose);
  // A GOAWAY either way, with its code and debug data, on stderr.
  nghttp2_session_callbacks_set_on_frame_send_callback(
      callbacks, [](nghttp2_session*, const nghttp2_frame* frame, void*) {
        if (frame->hd.type == NGHTTP2_GOAWAY) {
          std::fprintf(stderr, "nm-loadgen: HTTP/2 GOAWAY sent: %s %.*s\n",
                       nghttp2_http2_strerror(frame->goaway.error_code),
                       static_cast<int>(frame->goaway.opaque_data_len),
                       reinterpret_cast<const char*>(frame->goaway.opaque_data));
        }
        return 0;
      });
  // nghttp2's reason for a connection or stream error, on stderr (the process's log).
  nghttp2_session_callbacks_set_error_callback2(
      callbacks, [](nghttp2_session*, int /*code*/, const char* msg, size_t len, void*) {
        std::fprintf(stderr, "nm-loadgen: HTTP/2: %.*s\n", static_cast<int>(len), msg);
        return 0;
      });
  nghttp2_session_server_new(&session_, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  // Enough concurrent streams for h2load -m; a window that never stalls 1 KiB answers.
  const std::array<nghttp2_settings_entry, 2> settings = {{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
  }};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
}

H2Server::~H2Server() {
  nghttp2_session_del(session_);
}

bool H2Server::receive(std::string_view bytes, std::string& out) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (ssize_t rv = nghttp2_session_mem_recv(session_, data, bytes.size()); rv < 0) {
    std::fprintf(stderr, "nm-loadgen: HTTP/2 connection error: %s\n",
                 nghttp2_strerror(static_cast<int>(rv)));
    return false;
  }
  for (;;) {
    const uint8_t* chunk = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &chunk);
    if (n < 0) return false;
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(chunk), static_cast<size_t>(n));
  }
  const bool open =
      nghttp2_session_want_read(session_) != 0 || nghttp2_session_want_write(session_) != 0;
  if (!open) std::fprintf(stderr, "nm-loadgen: HTTP/2 connection ended (GOAWAY)\n");
  return open;
}

// A request is complete when its stream ends (GETs: with the HEADERS frame); answer it.
int H2Server::onFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* self) {
  auto* server = static_cast<H2Server*>(self);
  const bool request_end = (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
                           (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    std::fprintf(stderr, "nm-loadgen: HTTP/2 GOAWAY received: %s\n",
                 nghttp2_http2_strerror(frame->goaway.error_code));
  }
  if (!request_end) return 0;
  static constexpr char kStatus[] = ":status";
  static constexpr char kOk[] = "200";
  static constexpr char kType[] = "content-type";
  static constexpr char kOctets[] = "application/octet-stream";
  static constexpr char kLength[] = "content-length";
  const std::string length = std::to_string(server->body_.size());
  auto nv = [](const char* name, size_t name_len, const char* value, size_t value_len) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(value)), name_len, value_len,
                      NGHTTP2_NV_FLAG_NONE};
  };
  const std::array<nghttp2_nv, 3> headers = {
      nv(kStatus, sizeof(kStatus) - 1, kOk, sizeof(kOk) - 1),
      nv(kType, sizeof(kType) - 1, kOctets, sizeof(kOctets) - 1),
      nv(kLength, sizeof(kLength) - 1, length.data(), length.size())};
  nghttp2_data_provider provider{};
  provider.read_callback = &H2Server::readBody;
  server->sent_[frame->hd.stream_id] = 0;
  return nghttp2_submit_response(session, frame->hd.stream_id, headers.data(), headers.size(),
                                 &provider) == 0
             ? 0
             : NGHTTP2_ERR_CALLBACK_FAILURE;
}

int H2Server::onStreamClose(nghttp2_session* /*session*/, int32_t stream_id, uint32_t /*code*/,
                            void* self) {
  static_cast<H2Server*>(self)->sent_.erase(stream_id);
  return 0;
}

ssize_t H2Server::readBody(nghttp2_session* /*session*/, int32_t stream_id, uint8_t* buf,
                           size_t length, uint32_t* flags, nghttp2_data_source* /*source*/,
                           void* self) {
  auto* server = static_cast<H2Server*>(self);
  size_t& sent = server->sent_[stream_id];
  const size_t n = std::min(length, server->body_.size() - sent);
  std::copy_n(server->body_.data() + sent, n, buf);
  sent += n;
  if (sent == server->body_.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

}  // namespace nodemesh::bench::loadgen
