#pragma once

// Shared by the H2Session tests: endpoints (our sessions, raw nghttp2 peers), the pump loop
// that moves bytes between them without sockets, and a ready tunnel.

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "hbone/h2_session.h"
#include "tests/support/nghttp2_raw_client.h"

namespace nodemesh::hbone::h2_session_test {

inline constexpr size_t kMiB = 1024 * 1024;
inline constexpr size_t kStreamWindow = 4 * kMiB;
inline constexpr size_t kSendQueue = 256 * 1024;

inline std::span<const uint8_t> asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> out(n);
  uint32_t x = seed;
  for (uint8_t& b : out) {
    x = x * 1103515245u + 12345u;
    b = static_cast<uint8_t>(x >> 16);
  }
  return out;
}

// One side of a connection, as the pump loop sees it.
class Endpoint {
 public:
  virtual ~Endpoint() = default;
  virtual std::vector<uint8_t> takeOutput() = 0;
  virtual Status receive(std::span<const uint8_t> data) = 0;
};

// Records every event of an H2Session; consumes received bytes at once unless told not to.
class Recorder : public H2Handler, public Endpoint {
 public:
  struct StreamLog {
    std::string data;
    std::optional<ConnectRequest> request;
    int status = 0;
    bool ended = false;
    std::optional<uint32_t> closed;
    int writable = 0;
  };

  explicit Recorder(H2Role role, const H2Options& options = {}) {
    auto created = H2Session::create(role, *this, options);
    EXPECT_TRUE(created.ok()) << (created.ok() ? "" : created.error().message);
    session = std::move(created.value());
  }

  H2Session& operator*() { return *session; }
  H2Session* operator->() { return session.get(); }

  std::vector<uint8_t> takeOutput() override {
    std::vector<uint8_t> out;
    while (true) {
      std::span<const uint8_t> chunk = session->pendingOutput();
      if (chunk.empty()) {
        return out;
      }
      out.insert(out.end(), chunk.begin(), chunk.end());
      session->consumeOutput(chunk.size());
    }
  }
  Status receive(std::span<const uint8_t> data) override { return session->receive(data); }

  void onRequest(StreamId stream, const ConnectRequest& request) override {
    streams[stream].request = request;
    ++requests;
    if (respond_with != 0) {
      EXPECT_TRUE(session->respond(stream, respond_with).ok());
    }
  }
  void onResponse(StreamId stream, int status) override { streams[stream].status = status; }
  void onData(StreamId stream, std::span<const uint8_t> data) override {
    streams[stream].data.append(reinterpret_cast<const char*>(data.data()), data.size());
    if (auto_consume) {
      EXPECT_TRUE(session->consumed(stream, data.size()).ok());
    }
  }
  void onEndStream(StreamId stream) override { streams[stream].ended = true; }
  void onStreamClosed(StreamId stream, uint32_t error_code) override {
    EXPECT_FALSE(streams[stream].closed.has_value()) << "closed twice: " << stream;
    streams[stream].closed = error_code;
  }
  void onWritable(StreamId stream) override { ++streams[stream].writable; }
  void onGoaway(StreamId last_stream, uint32_t error_code) override {
    goaway = std::make_pair(last_stream, error_code);
  }
  void onPingAck(uint64_t opaque) override { ping_acks.push_back(opaque); }

  std::unique_ptr<H2Session> session;
  std::map<StreamId, StreamLog> streams;
  int requests = 0;
  int respond_with = 0;  // server: answer every request at once with this status
  bool auto_consume = true;
  std::optional<std::pair<StreamId, uint32_t>> goaway;
  std::vector<uint64_t> ping_acks;
};

// A plain nghttp2 client, for requests our client never builds (GET, oversized headers, more
// streams than the server allows).
class RawClient : public Endpoint, public testing::Nghttp2RawClient {
 public:
  explicit RawClient(uint32_t assumed_peer_max_streams = 100)
      : Nghttp2RawClient(assumed_peer_max_streams) {}

  int32_t request(const std::vector<std::pair<std::string, std::string>>& headers,
                  bool end_stream) {
    const std::vector<nghttp2_nv> nva = testing::toNv(headers);
    if (end_stream) {
      return nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), nullptr, nullptr);
    }
    // A provider that never has data keeps the request stream open.
    nghttp2_data_provider provider{};
    provider.read_callback = [](nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*,
                                nghttp2_data_source*,
                                void*) -> ssize_t { return NGHTTP2_ERR_DEFERRED; };
    return nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &provider, nullptr);
  }

  std::vector<uint8_t> takeOutput() override {
    return testing::drainNghttp2<std::vector<uint8_t>>(session_);
  }
  Status receive(std::span<const uint8_t> data) override {
    return testing::feedNghttp2(session_, data);
  }
};

// A plain nghttp2 server that answers every request with 200 and one extra header.
class RawServer : public Endpoint {
 public:
  explicit RawServer(std::string extra_value) : extra_value_(std::move(extra_value)) {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &RawServer::onFrameRecv);
    nghttp2_session_server_new(&session_, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~RawServer() override { nghttp2_session_del(session_); }
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;

  std::vector<uint8_t> takeOutput() override {
    return testing::drainNghttp2<std::vector<uint8_t>>(session_);
  }
  Status receive(std::span<const uint8_t> data) override {
    return testing::feedNghttp2(session_, data);
  }

 private:
  static int onFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
      return 0;
    }
    auto* self = static_cast<RawServer*>(user_data);
    std::string_view status = "200";
    std::string_view name = "x-big";
    const std::array<nghttp2_nv, 2> nva = {
        nghttp2_nv{const_cast<uint8_t*>(asBytes(":status").data()),
                   const_cast<uint8_t*>(asBytes(status).data()), 7, status.size(),
                   NGHTTP2_NV_FLAG_NONE},
        nghttp2_nv{const_cast<uint8_t*>(asBytes(name).data()),
                   const_cast<uint8_t*>(asBytes(self->extra_value_).data()), name.size(),
                   self->extra_value_.size(), NGHTTP2_NV_FLAG_NONE}};
    nghttp2_submit_headers(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, nullptr, nva.data(),
                           nva.size(), nullptr);
    return 0;
  }

  std::string extra_value_;
  nghttp2_session* session_ = nullptr;
};

// Moves what `from` has to write into `to`; false when there was nothing.
inline bool transfer(Endpoint& from, Endpoint& to) {
  return testing::transferOutput(from, to);
}

// Runs both directions until neither side has anything left to write.
inline void pump(Endpoint& a, Endpoint& b) {
  testing::pumpUntilIdle(a, b);
}

inline ConnectHeaders meshHeaders() {
  ConnectHeaders headers;
  headers.forwarded_for = SocketAddress::parse("10.0.0.2:43210").value();
  headers.baggage = "k8s.namespace.name=default,k8s.deployment.name=client";
  headers.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  return headers;
}

// A client and a server with one tunnel to 10.0.0.1:8080 answered 200.
struct Tunnel {
  Tunnel() {
    server.respond_with = kStatusOk;
    auto opened = client->openConnect("10.0.0.1:8080", meshHeaders());
    EXPECT_TRUE(opened.ok());
    id = opened.ok() ? *opened : 0;
    pump(client, server);
    EXPECT_EQ(client.streams[id].status, kStatusOk);
  }

  Recorder client{H2Role::kClient};
  Recorder server{H2Role::kServer};
  StreamId id = 0;
};

}  // namespace nodemesh::hbone::h2_session_test
