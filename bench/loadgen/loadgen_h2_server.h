#pragma once

// Internal to nm-loadgen: the HTTP/2 side of http-server (h2c with prior knowledge, RFC 9113
// §3.3), so that one backend port serves both the HTTP/1.1 and the HTTP/2 scenarios of the
// waypoint benchmark. nghttp2 does the framing; every request is answered 200 with the body.

#include <nghttp2/nghttp2.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace nodemesh::bench::loadgen {

// The client connection preface (RFC 9113 §3.4).
inline constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

class H2Server {
 public:
  // `body` must outlive the server.
  explicit H2Server(const std::string& body);
  ~H2Server();
  H2Server(const H2Server&) = delete;
  H2Server& operator=(const H2Server&) = delete;

  // Feeds received bytes (the preface included) and appends what to send to `out`; false when
  // the connection must close (a protocol error, or both sides are done).
  bool receive(std::string_view bytes, std::string& out);

 private:
  static int onFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* self);
  static int onStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t code, void* self);
  static ssize_t readBody(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                          uint32_t* flags, nghttp2_data_source* source, void* self);

  const std::string& body_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<int32_t, size_t> sent_;  // body bytes sent, by stream
};

}  // namespace nodemesh::bench::loadgen
