#pragma once

// Shared by the H2Codec tests: a recording handler around a codec, a raw nghttp2 client (a
// peer that sends what our codec never would), hand-built frames for floods, and the pump loop
// that moves bytes between two endpoints without sockets.

#include <nghttp2/nghttp2.h>

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

#include "tests/support/h2_frames.h"
#include "tests/support/nghttp2_raw_client.h"
#include "waypoint/http2/h2_codec.h"

namespace nodemesh::waypoint::http2::test {

inline constexpr size_t kKiB = 1024;
inline constexpr size_t kMiB = 1024 * 1024;

inline std::span<const uint8_t> asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline std::string pattern(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  uint32_t x = seed;
  for (char& c : out) {
    x = x * 1103515245U + 12345U;
    c = static_cast<char>(x >> 16);
  }
  return out;
}

inline RequestHead getRequest(std::string path = "/") {
  return RequestHead{"GET", "http", "reviews.default.svc:9080", std::move(path), {}};
}

inline RequestHead grpcRequest() {
  return RequestHead{"POST",
                     "http",
                     "reviews.default.svc:9080",
                     "/reviews.Reviews/Get",
                     {{"content-type", "application/grpc"}, {"te", "trailers"}}};
}

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  virtual std::string takeOutput() = 0;
  virtual Status receive(std::span<const uint8_t> data) = 0;
};

// Records every event of a codec; consumes received bytes at once unless told not to.
class Recorder : public H2CodecHandler, public Endpoint {
 public:
  struct StreamLog {
    std::optional<RequestHead> request;
    std::optional<ResponseHead> response;
    bool headers_end_stream = false;
    std::vector<int> informational;
    std::string data;
    std::optional<HeaderList> trailers;
    bool ended = false;
    std::optional<StreamClose> closed;
    int writable = 0;
    int rejected_status = -1;
  };

  explicit Recorder(Role role, const H2CodecOptions& options = {}) {
    auto created = H2Codec::create(role, *this, options);
    EXPECT_TRUE(created.ok()) << (created.ok() ? "" : created.error().message);
    codec = std::move(created.value());
  }

  H2Codec* operator->() { return codec.get(); }

  std::string takeOutput() override {
    std::string out;
    while (true) {
      std::span<const uint8_t> chunk = codec->pendingOutput();
      if (chunk.empty()) {
        return out;
      }
      out.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
      codec->consumeOutput(chunk.size());
    }
  }
  Status receive(std::span<const uint8_t> data) override { return codec->receive(data); }

  void onRequestHeaders(StreamId stream, const RequestHead& head, bool end_stream) override {
    streams[stream].request = head;
    streams[stream].headers_end_stream = end_stream;
    ++requests;
    if (on_request) {
      on_request(stream, head);
    }
  }
  void onRequestRejected(StreamId stream, int status, std::string_view reason) override {
    streams[stream].rejected_status = status;
    last_reject_reason = reason;
  }
  void onInformational(StreamId stream, const ResponseHead& head) override {
    streams[stream].informational.push_back(head.status);
  }
  void onResponseHeaders(StreamId stream, const ResponseHead& head, bool end_stream) override {
    streams[stream].response = head;
    streams[stream].headers_end_stream = end_stream;
  }
  void onData(StreamId stream, std::span<const uint8_t> data) override {
    streams[stream].data.append(reinterpret_cast<const char*>(data.data()), data.size());
    if (auto_consume) {
      EXPECT_TRUE(codec->consumed(stream, data.size()).ok());
    }
  }
  void onTrailers(StreamId stream, const HeaderList& trailers) override {
    streams[stream].trailers = trailers;
  }
  void onEndStream(StreamId stream) override {
    streams[stream].ended = true;
    if (on_end_stream) {
      on_end_stream(stream);
    }
  }
  void onStreamClosed(StreamId stream, const StreamClose& close) override {
    EXPECT_FALSE(streams[stream].closed.has_value()) << "closed twice: " << stream;
    streams[stream].closed = close;
  }
  void onWritable(StreamId stream) override { ++streams[stream].writable; }
  void onGoaway(StreamId last_stream, uint32_t error_code) override {
    goaway = std::make_pair(last_stream, error_code);
  }
  void onPingAck(uint64_t opaque) override { ping_acks.push_back(opaque); }

  std::unique_ptr<H2Codec> codec;
  std::map<StreamId, StreamLog> streams;
  int requests = 0;
  std::function<void(StreamId, const RequestHead&)> on_request;  // server: answer here
  std::function<void(StreamId)> on_end_stream;                   // the peer's END_STREAM
  bool auto_consume = true;
  std::string last_reject_reason;
  std::optional<std::pair<StreamId, uint32_t>> goaway;
  std::vector<uint64_t> ping_acks;
};

// A plain nghttp2 client that sends whatever header fields and bodies it is given.
class RawClient : public Endpoint, public testing::Nghttp2RawClient {
 public:
  using Fields = std::vector<std::pair<std::string, std::string>>;

  // No HTTP messaging checks: the tests send malformed requests on purpose.
  explicit RawClient(uint32_t assumed_peer_max_streams = 100)
      : Nghttp2RawClient(assumed_peer_max_streams, /*no_http_messaging=*/true) {}

  // Sends the fields and then `body` (if any) with END_STREAM.
  int32_t request(const Fields& fields, std::optional<std::string> body = std::nullopt) {
    const std::vector<nghttp2_nv> nva = testing::toNv(fields);
    if (!body) {
      return nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), nullptr, nullptr);
    }
    auto owned = std::make_unique<std::string>(std::move(*body));
    nghttp2_data_provider provider{};
    provider.source.ptr = owned.get();
    provider.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                                uint32_t* flags, nghttp2_data_source* source, void*) -> ssize_t {
      auto* rest = static_cast<std::string*>(source->ptr);
      const size_t n = std::min(length, rest->size());
      std::copy_n(rest->data(), n, buf);
      rest->erase(0, n);
      if (rest->empty()) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
      }
      return static_cast<ssize_t>(n);
    };
    bodies_.push_back(std::move(owned));
    return nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &provider, nullptr);
  }
  void reset(int32_t stream, uint32_t code) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, code);
  }

  std::string takeOutput() override { return testing::drainNghttp2<std::string>(session_); }
  Status receive(std::span<const uint8_t> data) override {
    return testing::feedNghttp2(session_, data);
  }

 private:
  std::vector<std::unique_ptr<std::string>> bodies_;
};

inline RawClient::Fields rawGet() {
  return {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "a.test"}};
}

// ---- hand-built frames: tests/support/h2_frames.h ----

using nodemesh::testing::frame;
using nodemesh::testing::getRequestBlock;
using nodemesh::testing::goawayCode;
using nodemesh::testing::hpackInt;
using nodemesh::testing::hpackLiteral;
using nodemesh::testing::kClientPreface;
using nodemesh::testing::kContinuation;
using nodemesh::testing::kData;
using nodemesh::testing::kEndHeaders;
using nodemesh::testing::kEndStream;
using nodemesh::testing::kHeaders;
using nodemesh::testing::kPing;
using nodemesh::testing::kRstStream;
using nodemesh::testing::kSettings;
using nodemesh::testing::rstPayload;

// ---- pumping ----

inline bool transfer(Endpoint& from, Endpoint& to) {
  return testing::transferOutput(from, to);
}

inline void pump(Endpoint& a, Endpoint& b) {
  testing::pumpUntilIdle(a, b);
}

// A client and a server codec wired together.
struct Pair {
  explicit Pair(const H2CodecOptions& client_options = {},
                const H2CodecOptions& server_options = {})
      : client(Role::kClient, client_options), server(Role::kServer, server_options) {}

  void run() { pump(client, server); }

  Recorder client;
  Recorder server;
};

}  // namespace nodemesh::waypoint::http2::test
