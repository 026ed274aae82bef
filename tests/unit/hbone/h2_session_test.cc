#include "hbone/h2_session.h"

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

namespace nodemesh::hbone {
namespace {

constexpr size_t kMiB = 1024 * 1024;
constexpr size_t kStreamWindow = 4 * kMiB;
constexpr size_t kSendQueue = 256 * 1024;

std::span<const uint8_t> asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
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
class RawClient : public Endpoint {
 public:
  explicit RawClient(uint32_t assumed_peer_max_streams = 100) {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &RawClient::onHeader);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &RawClient::onStreamClose);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &RawClient::onFrameRecv);
    nghttp2_option* option = nullptr;
    nghttp2_option_new(&option);
    nghttp2_option_set_peer_max_concurrent_streams(option, assumed_peer_max_streams);
    nghttp2_session_client_new2(&session_, cbs, this, option);
    nghttp2_option_del(option);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~RawClient() override { nghttp2_session_del(session_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  int32_t request(const std::vector<std::pair<std::string, std::string>>& headers,
                  bool end_stream) {
    std::vector<nghttp2_nv> nva;
    nva.reserve(headers.size());
    for (const auto& [name, value] : headers) {
      nva.push_back(nghttp2_nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
                               const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())),
                               name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
    }
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
    std::vector<uint8_t> out;
    while (true) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0) {
        return out;
      }
      out.insert(out.end(), data, data + n);
    }
  }
  Status receive(std::span<const uint8_t> data) override {
    const ssize_t rv = nghttp2_session_mem_recv(session_, data.data(), data.size());
    if (rv < 0) {
      return Error{EPROTO, nghttp2_strerror(static_cast<int>(rv))};
    }
    return okStatus();
  }

  std::map<int32_t, int> status;
  std::map<int32_t, uint32_t> closed;
  std::optional<uint32_t> goaway_error;

 private:
  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                      void* user_data) {
    if (std::string_view(reinterpret_cast<const char*>(name), namelen) == ":status") {
      static_cast<RawClient*>(user_data)->status[frame->hd.stream_id] =
          std::stoi(std::string(reinterpret_cast<const char*>(value), valuelen));
    }
    return 0;
  }
  static int onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                           void* user_data) {
    static_cast<RawClient*>(user_data)->closed[stream_id] = error_code;
    return 0;
  }
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      static_cast<RawClient*>(user_data)->goaway_error = frame->goaway.error_code;
    }
    return 0;
  }

  nghttp2_session* session_ = nullptr;
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
    std::vector<uint8_t> out;
    while (true) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0) {
        return out;
      }
      out.insert(out.end(), data, data + n);
    }
  }
  Status receive(std::span<const uint8_t> data) override {
    const ssize_t rv = nghttp2_session_mem_recv(session_, data.data(), data.size());
    if (rv < 0) {
      return Error{EPROTO, nghttp2_strerror(static_cast<int>(rv))};
    }
    return okStatus();
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
bool transfer(Endpoint& from, Endpoint& to) {
  std::vector<uint8_t> bytes = from.takeOutput();
  if (bytes.empty()) {
    return false;
  }
  Status status = to.receive(bytes);
  EXPECT_TRUE(status.ok()) << status.error().message;
  return true;
}

// Runs both directions until neither side has anything left to write.
void pump(Endpoint& a, Endpoint& b) {
  for (int round = 0; round < 100000; ++round) {
    const bool moved_ab = transfer(a, b);
    const bool moved_ba = transfer(b, a);
    if (!moved_ab && !moved_ba) {
      return;
    }
  }
  ADD_FAILURE() << "pump did not settle";
}

ConnectHeaders meshHeaders() {
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

TEST(H2SessionTest, ConnectCarriesAuthorityAndMeshHeaders) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  ConnectHeaders headers = meshHeaders();
  headers.extra.push_back(Header{"x-istio-extra", "1"});
  auto id = client->openConnect("10.0.0.1:8080", headers);
  ASSERT_TRUE(id.ok()) << id.error().message;
  pump(client, server);

  ASSERT_EQ(server.requests, 1);
  const auto& request = server.streams[*id].request;
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->authority, "10.0.0.1:8080");
  EXPECT_EQ(request->target.toString(), "10.0.0.1:8080");
  EXPECT_EQ(request->forwarded, "for=\"10.0.0.2:43210\"");
  EXPECT_EQ(request->baggage, "k8s.namespace.name=default,k8s.deployment.name=client");
  EXPECT_EQ(request->traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(request->other_headers, (std::vector<Header>{{"x-istio-extra", "1"}}));
  EXPECT_EQ(client.streams[*id].status, 0);  // no answer yet

  ASSERT_TRUE(server->respond(*id, kStatusOk).ok());
  pump(client, server);
  EXPECT_EQ(client.streams[*id].status, kStatusOk);
  EXPECT_EQ(client->stats().streams_opened, 1u);
  EXPECT_EQ(server->stats().streams_active, 1u);
}

TEST(H2SessionTest, ForwardedQuotesIpv6) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  ConnectHeaders headers;
  headers.forwarded_for = SocketAddress::parse("[fd00::2]:5000").value();
  auto id = client->openConnect("[fd00::1]:8080", headers);
  ASSERT_TRUE(id.ok());
  pump(client, server);
  ASSERT_TRUE(server.streams[*id].request.has_value());
  EXPECT_EQ(server.streams[*id].request->forwarded, "for=\"[fd00::2]:5000\"");
  EXPECT_EQ(server.streams[*id].request->target.port, 8080);
}

TEST(H2SessionTest, DataFlowsBothWaysByteExact) {
  Tunnel t;
  const std::vector<uint8_t> up = pattern(5 * kMiB + 123, 1);
  const std::vector<uint8_t> down = pattern(3 * kMiB + 7, 2);
  size_t up_offset = 0;
  size_t down_offset = 0;
  for (int round = 0; up_offset < up.size() || down_offset < down.size(); ++round) {
    ASSERT_LT(round, 100000);
    if (up_offset < up.size()) {
      auto n = t.client->send(
          t.id, std::span(up).subspan(up_offset, std::min<size_t>(7777, up.size() - up_offset)));
      ASSERT_TRUE(n.ok());
      up_offset += *n;
    }
    if (down_offset < down.size()) {
      auto n = t.server->send(
          t.id,
          std::span(down).subspan(down_offset, std::min<size_t>(65536, down.size() - down_offset)));
      ASSERT_TRUE(n.ok());
      down_offset += *n;
    }
    if (round % 8 == 0) {
      pump(t.client, t.server);
    }
  }
  pump(t.client, t.server);
  EXPECT_EQ(t.server.streams[t.id].data, std::string(up.begin(), up.end()));
  EXPECT_EQ(t.client.streams[t.id].data, std::string(down.begin(), down.end()));
  EXPECT_EQ(t.client->stats().bytes_sent, up.size());
  EXPECT_EQ(t.server->stats().bytes_received, up.size());
  EXPECT_EQ(t.server->stats().bytes_sent, down.size());
}

TEST(H2SessionTest, OutputViewSurvivesReceiveAndShortWrites) {
  Tunnel t;
  const std::vector<uint8_t> up = pattern(2 * kMiB + 11, 6);
  const std::vector<uint8_t> down = pattern(2 * kMiB + 13, 7);
  size_t up_offset = 0;
  size_t down_offset = 0;
  for (int round = 0; round < 200000; ++round) {
    if (up_offset < up.size()) {
      up_offset += *t.client->send(t.id, std::span(up).subspan(up_offset));
    }
    if (down_offset < down.size()) {
      down_offset += *t.server->send(t.id, std::span(down).subspan(down_offset));
    }
    // The client's write is "in flight" while it processes what the server wrote, and both
    // writes come up short.
    const std::span<const uint8_t> in_flight = t.client->pendingOutput();
    const std::vector<uint8_t> snapshot(in_flight.begin(), in_flight.end());
    const std::span<const uint8_t> from_server = t.server->pendingOutput();
    const size_t n_server = std::min<size_t>(from_server.size(), 1000 + round % 7000);
    ASSERT_TRUE(t.client->receive(from_server.first(n_server)).ok());
    t.server->consumeOutput(n_server);
    ASSERT_TRUE(std::equal(snapshot.begin(), snapshot.end(), in_flight.begin()));
    const size_t n_client = std::min<size_t>(in_flight.size(), 3000 + round % 5000);
    ASSERT_TRUE(t.server->receive(in_flight.first(n_client)).ok());
    t.client->consumeOutput(n_client);
    if (up_offset == up.size() && down_offset == down.size() && !t.client->wantsWrite() &&
        !t.server->wantsWrite()) {
      break;
    }
  }
  EXPECT_EQ(t.server.streams[t.id].data, std::string(up.begin(), up.end()));
  EXPECT_EQ(t.client.streams[t.id].data, std::string(down.begin(), down.end()));
}

TEST(H2SessionTest, BytesQueuedBeforeTheResponseFollowIt) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto id = client->openConnect("10.0.0.1:8080", {});
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(*client->send(*id, asBytes("early")), 5u);
  ASSERT_TRUE(client->endStream(*id).ok());
  pump(client, server);
  EXPECT_EQ(server.streams[*id].data, "");  // nothing before the tunnel is up
  ASSERT_TRUE(server->respond(*id, kStatusOk).ok());
  pump(client, server);
  EXPECT_EQ(server.streams[*id].data, "early");
  EXPECT_TRUE(server.streams[*id].ended);
}

TEST(H2SessionTest, HalfCloseEachDirectionIndependently) {
  Tunnel t;
  ASSERT_EQ(*t.client->send(t.id, asBytes("request")), 7u);
  ASSERT_TRUE(t.client->endStream(t.id).ok());
  pump(t.client, t.server);
  EXPECT_EQ(t.server.streams[t.id].data, "request");
  EXPECT_TRUE(t.server.streams[t.id].ended);
  EXPECT_FALSE(t.client.streams[t.id].ended);
  EXPECT_FALSE(t.client->send(t.id, asBytes("more")).ok());  // our side is done

  // The server still talks after the client's FIN, then closes its side too.
  ASSERT_EQ(*t.server->send(t.id, asBytes("response")), 8u);
  pump(t.client, t.server);
  EXPECT_EQ(t.client.streams[t.id].data, "response");
  EXPECT_FALSE(t.client.streams[t.id].ended);
  EXPECT_FALSE(t.server.streams[t.id].closed.has_value());
  ASSERT_TRUE(t.server->endStream(t.id).ok());
  pump(t.client, t.server);
  EXPECT_TRUE(t.client.streams[t.id].ended);
  EXPECT_EQ(t.client.streams[t.id].closed, kH2NoError);
  EXPECT_EQ(t.server.streams[t.id].closed, kH2NoError);
  EXPECT_EQ(t.client->stats().streams_active, 0u);
  EXPECT_EQ(t.server->stats().streams_active, 0u);
}

TEST(H2SessionTest, EndStreamWithEmptyQueueSendsEmptyFin) {
  Tunnel t;
  ASSERT_TRUE(t.server->endStream(t.id).ok());
  pump(t.client, t.server);
  EXPECT_TRUE(t.client.streams[t.id].ended);
  EXPECT_EQ(t.client.streams[t.id].data, "");
}

TEST(H2SessionTest, NonConnectMethodGets400) {
  RawClient raw;
  Recorder server(H2Role::kServer);
  const int32_t id = raw.request(
      {{":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {":authority", "10.0.0.1:8080"}},
      /*end_stream=*/true);
  pump(raw, server);
  EXPECT_EQ(raw.status[id], kStatusBadRequest);
  EXPECT_EQ(raw.closed[id], kH2NoError);
  EXPECT_EQ(server.requests, 0);
  EXPECT_EQ(server->stats().requests_rejected, 1u);
}

TEST(H2SessionTest, AuthorityThatIsNotAnAddressGets400) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto id = client->openConnect("not-an-address", {});
  ASSERT_TRUE(id.ok());
  pump(client, server);
  EXPECT_EQ(client.streams[*id].status, kStatusBadRequest);
  EXPECT_EQ(client.streams[*id].closed, kH2NoError);  // reset with NO_ERROR after the 400
  EXPECT_EQ(server.requests, 0);
  EXPECT_FALSE(client->send(*id, asBytes("x")).ok());
}

TEST(H2SessionTest, DeniedAndUnavailableReachTheClient) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto denied = client->openConnect("10.0.0.1:8080", {});
  auto unavailable = client->openConnect("10.0.0.1:9090", {});
  ASSERT_TRUE(denied.ok() && unavailable.ok());
  pump(client, server);
  ASSERT_EQ(server.requests, 2);
  ASSERT_TRUE(server->respond(*denied, kStatusUnauthorized).ok());
  ASSERT_TRUE(server->respond(*unavailable, kStatusServiceUnavailable).ok());
  EXPECT_FALSE(server->send(*denied, asBytes("x")).ok());
  pump(client, server);
  EXPECT_EQ(client.streams[*denied].status, kStatusUnauthorized);
  EXPECT_EQ(client.streams[*unavailable].status, kStatusServiceUnavailable);
  EXPECT_EQ(client.streams[*denied].closed, kH2NoError);
  EXPECT_EQ(server.streams[*unavailable].closed, kH2NoError);
  EXPECT_FALSE(client->send(*denied, asBytes("x")).ok());
  EXPECT_EQ(client->stats().streams_active, 0u);
}

TEST(H2SessionTest, UnconsumedDataStopsTheSenderAtTheStreamWindow) {
  Tunnel t;
  t.server.auto_consume = false;
  const std::vector<uint8_t> chunk = pattern(64 * 1024, 3);
  size_t accepted = 0;
  for (int round = 0; round < 1000; ++round) {
    auto n = t.client->send(t.id, chunk);
    ASSERT_TRUE(n.ok());
    accepted += *n;
    pump(t.client, t.server);
    if (*n == 0) {
      break;
    }
  }
  // The peer holds exactly one stream window; the rest waits in the bounded send queue.
  EXPECT_EQ(t.server.streams[t.id].data.size(), kStreamWindow);
  EXPECT_EQ(t.client->queuedBytes(t.id), kSendQueue);
  EXPECT_EQ(accepted, kStreamWindow + kSendQueue);
  EXPECT_EQ(*t.client->send(t.id, chunk), 0u);
  EXPECT_EQ(t.client.streams[t.id].writable, 0);

  // The owner wrote the bytes on: the window reopens and the queue drains.
  EXPECT_FALSE(t.server->consumed(t.id, kStreamWindow + 1).ok());
  ASSERT_TRUE(t.server->consumed(t.id, kStreamWindow).ok());
  pump(t.client, t.server);
  EXPECT_EQ(t.server.streams[t.id].data.size(), kStreamWindow + kSendQueue);
  EXPECT_EQ(t.client->queuedBytes(t.id), 0u);
  EXPECT_GE(t.client.streams[t.id].writable, 1);
  EXPECT_EQ(*t.client->send(t.id, chunk), chunk.size());
}

TEST(H2SessionTest, ConnectionWindowBoundsAllStreams) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  server.auto_consume = false;
  std::vector<StreamId> ids;
  for (int i = 0; i < 5; ++i) {
    auto id = client->openConnect("10.0.0.1:8080", {});
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  pump(client, server);
  const std::vector<uint8_t> chunk = pattern(kSendQueue, 4);
  for (int round = 0; round < 40; ++round) {
    for (StreamId id : ids) {
      ASSERT_TRUE(client->send(id, chunk).ok());
    }
    pump(client, server);
  }
  size_t held = 0;
  for (StreamId id : ids) {
    held += server.streams[id].data.size();
    EXPECT_LE(server.streams[id].data.size(), kStreamWindow);
  }
  EXPECT_EQ(held, 16 * kMiB);
}

TEST(H2SessionTest, ConsumedAfterCloseReopensTheConnectionWindow) {
  H2Options small_connection;
  small_connection.connection_window = 4 * kMiB;  // one stream can use all of it
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer, small_connection);
  server.respond_with = kStatusOk;
  server.auto_consume = false;
  auto a = client->openConnect("10.0.0.1:8080", {});
  auto b = client->openConnect("10.0.0.1:8081", {});
  ASSERT_TRUE(a.ok() && b.ok());
  pump(client, server);
  const std::vector<uint8_t> chunk = pattern(kSendQueue, 5);
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(client->send(*a, chunk).ok());
    pump(client, server);
  }
  ASSERT_EQ(server.streams[*a].data.size(), 4 * kMiB);
  ASSERT_EQ(*client->send(*b, asBytes("stuck")), 5u);
  pump(client, server);
  EXPECT_EQ(server.streams[*b].data, "");  // the connection window is used up by stream a

  // Stream a closes with its bytes still held; once they are written on, b moves.
  ASSERT_TRUE(client->resetStream(*a, kH2Cancel).ok());
  pump(client, server);
  EXPECT_EQ(server.streams[*a].closed, kH2Cancel);
  EXPECT_EQ(server.streams[*b].data, "");
  ASSERT_TRUE(server->consumed(*a, 4 * kMiB).ok());
  pump(client, server);
  EXPECT_EQ(server.streams[*b].data, "stuck");
}

TEST(H2SessionTest, ClientOpensAtMostTheMaxConcurrentStreams) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  EXPECT_EQ(client->availableStreams(), 100u);
  std::vector<StreamId> ids;
  for (int i = 0; i < 100; ++i) {
    auto id = client->openConnect("10.0.0.1:8080", {});
    ASSERT_TRUE(id.ok()) << i;
    ids.push_back(*id);
  }
  EXPECT_EQ(client->availableStreams(), 0u);
  auto refused = client->openConnect("10.0.0.1:8080", {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, EAGAIN);
  pump(client, server);
  EXPECT_EQ(server.requests, 100);
  EXPECT_EQ(client->availableStreams(), 0u);

  ASSERT_TRUE(client->resetStream(ids[0], kH2Cancel).ok());
  pump(client, server);
  EXPECT_EQ(client->availableStreams(), 1u);
  EXPECT_TRUE(client->openConnect("10.0.0.1:8080", {}).ok());
}

TEST(H2SessionTest, ServerRefusesStreamsBeyondItsLimit) {
  RawClient raw(/*assumed_peer_max_streams=*/1000);  // ignores what the server will say
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  std::vector<int32_t> ids;
  ids.reserve(101);
  for (int i = 0; i < 101; ++i) {
    ids.push_back(raw.request({{":method", "CONNECT"}, {":authority", "10.0.0.1:8080"}},
                              /*end_stream=*/false));
  }
  ASSERT_TRUE(transfer(raw, server));  // all 101 HEADERS before the server's SETTINGS
  pump(raw, server);
  EXPECT_EQ(server.requests, 100);
  EXPECT_EQ(raw.closed[ids.back()], kH2RefusedStream);
  EXPECT_EQ(raw.status[ids.front()], kStatusOk);
  EXPECT_FALSE(raw.goaway_error.has_value());
}

TEST(H2SessionTest, ServerRefusesAnExtraStreamAfterSettingsToo) {
  RawClient raw;
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  pump(raw, server);  // SETTINGS exchanged and acknowledged
  for (int i = 0; i < 100; ++i) {
    raw.request({{":method", "CONNECT"}, {":authority", "10.0.0.1:8080"}}, false);
  }
  pump(raw, server);
  ASSERT_EQ(server.requests, 100);
  // Stream 201 by hand, as a peer ignoring SETTINGS_MAX_CONCURRENT_STREAMS would send it. HPACK
  // literals without indexing (RFC 7541 §6.2.2): :method (index 2), :authority (index 1).
  std::vector<uint8_t> block = {0x02, 7, 'C', 'O', 'N', 'N', 'E', 'C', 'T', 0x01, 13};
  for (char c : std::string_view("10.0.0.1:8080")) {
    block.push_back(static_cast<uint8_t>(c));
  }
  std::vector<uint8_t> frame = {0, 0, static_cast<uint8_t>(block.size()), 0x1, 0x4, 0, 0, 0, 201};
  frame.insert(frame.end(), block.begin(), block.end());
  Status status = server->receive(frame);
  EXPECT_EQ(server.requests, 100);
  // Past the acknowledged limit nghttp2 treats it as a connection error (RFC 9113 §5.1.2
  // allows PROTOCOL_ERROR).
  EXPECT_FALSE(status.ok());
  ASSERT_TRUE(transfer(server, raw));
  EXPECT_EQ(raw.goaway_error, kH2ProtocolError);
}

TEST(H2SessionTest, OversizedHeaderListsAreRefused) {
  Recorder client(H2Role::kClient);
  ConnectHeaders big;
  big.baggage = std::string(20 * 1024, 'b');
  auto refused = client->openConnect("10.0.0.1:8080", big);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, EMSGSIZE);

  RawClient raw;
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  const int32_t id = raw.request(
      {{":method", "CONNECT"}, {":authority", "10.0.0.1:8080"}, {"baggage", big.baggage}},
      /*end_stream=*/false);
  pump(raw, server);
  EXPECT_EQ(raw.status[id], kStatusHeaderFieldsTooLarge);
  EXPECT_EQ(raw.closed[id], kH2NoError);
  EXPECT_EQ(server.requests, 0);

  // The connection survives (HPACK state intact): a normal request still works.
  const int32_t ok_id =
      raw.request({{":method", "CONNECT"}, {":authority", "10.0.0.1:8080"}}, false);
  pump(raw, server);
  EXPECT_EQ(raw.status[ok_id], kStatusOk);
}

TEST(H2SessionTest, OversizedResponseHeadersResetTheStream) {
  Recorder client(H2Role::kClient);
  RawServer raw(std::string(20 * 1024, 'r'));
  auto id = client->openConnect("10.0.0.1:8080", {});
  ASSERT_TRUE(id.ok());
  pump(client, raw);
  EXPECT_EQ(client.streams[*id].status, 0);  // never reported
  EXPECT_EQ(client.streams[*id].closed, kH2InternalError);

  RawServer small(std::string(100, 'r'));
  Recorder client2(H2Role::kClient);
  auto ok_id = client2->openConnect("10.0.0.1:8080", {});
  ASSERT_TRUE(ok_id.ok());
  pump(client2, small);
  EXPECT_EQ(client2.streams[*ok_id].status, kStatusOk);
}

TEST(H2SessionTest, InvalidExtraHeadersAreRefused) {
  Recorder client(H2Role::kClient);
  for (const char* name : {"X-Upper", ":path", "connection", "bad name", ""}) {
    ConnectHeaders headers;
    headers.extra.push_back(Header{name, "v"});
    EXPECT_FALSE(client->openConnect("10.0.0.1:8080", headers).ok()) << name;
  }
  ConnectHeaders bad_value;
  bad_value.extra.push_back(Header{"x-ok", "line\r\nbreak"});
  EXPECT_FALSE(client->openConnect("10.0.0.1:8080", bad_value).ok());
  EXPECT_FALSE(client->openConnect("", {}).ok());
  EXPECT_EQ(client->stats().streams_opened, 0u);
}

TEST(H2SessionTest, GarbageToServerIsAnErrorNotACrash) {
  Recorder server(H2Role::kServer);
  Status status = server->receive(asBytes("GET / HTTP/1.1\r\nHost: example\r\n\r\n"));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, EPROTO);
  EXPECT_FALSE(server->wantsRead());
  EXPECT_FALSE(server->receive(asBytes("more")).ok());
  server.takeOutput();
  EXPECT_TRUE(server->isClosed());
}

TEST(H2SessionTest, ProtocolErrorAfterThePrefaceSendsGoaway) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  pump(client, server);
  // A DATA frame on stream 0 is a connection error (RFC 9113 §6.1).
  const uint8_t frame[] = {0, 0, 1, 0x0, 0x0, 0, 0, 0, 0, 'x'};
  Status status = server->receive(frame);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("PROTOCOL_ERROR"), std::string::npos)
      << status.error().message;
  ASSERT_TRUE(transfer(server, client));  // the GOAWAY
  ASSERT_TRUE(client.goaway.has_value());
  EXPECT_EQ(client.goaway->second, kH2ProtocolError);
  EXPECT_EQ(client->availableStreams(), 0u);
  EXPECT_TRUE(server->isClosed());
}

TEST(H2SessionTest, GarbageToClientIsAnError) {
  Recorder client(H2Role::kClient);
  client.takeOutput();
  Status status = client->receive(asBytes("HTTP/1.1 400 Bad Request\r\n\r\n"));
  ASSERT_FALSE(status.ok());
  client.takeOutput();
  EXPECT_TRUE(client->isClosed());
}

TEST(H2SessionTest, ResetReachesThePeerWithItsCode) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  server.respond_with = kStatusOk;
  auto a = client->openConnect("10.0.0.1:8080", {});
  auto b = client->openConnect("10.0.0.1:8081", {});
  ASSERT_TRUE(a.ok() && b.ok());
  pump(client, server);

  ASSERT_TRUE(client->resetStream(*a, kH2Cancel).ok());
  ASSERT_TRUE(server->resetStream(*b, kH2ConnectError).ok());
  pump(client, server);
  EXPECT_EQ(server.streams[*a].closed, kH2Cancel);
  EXPECT_EQ(client.streams[*a].closed, kH2Cancel);  // the owner's own reset, reported once
  EXPECT_EQ(client.streams[*b].closed, kH2ConnectError);
  EXPECT_FALSE(client->send(*b, asBytes("late")).ok());
  EXPECT_FALSE(server->send(*a, asBytes("late")).ok());
  EXPECT_EQ(server->stats().resets_received, 1u);
  EXPECT_EQ(server->stats().resets_sent, 1u);
}

TEST(H2SessionTest, ResetBeforeTheRequestWentOut) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto id = client->openConnect("10.0.0.1:8080", {});
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(client->resetStream(*id, kH2Cancel).ok());
  pump(client, server);
  EXPECT_EQ(client.streams[*id].closed, kH2Cancel);
  EXPECT_EQ(server.requests, 0);
  EXPECT_EQ(client->stats().streams_active, 0u);
  EXPECT_EQ(client->availableStreams(), 100u);
}

TEST(H2SessionTest, PingIsAcked) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  auto first = client->ping();
  auto second = client->ping();
  auto from_server = server->ping();
  ASSERT_TRUE(first.ok() && second.ok() && from_server.ok());
  pump(client, server);
  EXPECT_EQ(client.ping_acks, (std::vector<uint64_t>{*first, *second}));
  EXPECT_EQ(server.ping_acks, (std::vector<uint64_t>{*from_server}));
  EXPECT_EQ(client->stats().pings_acked, 2u);
}

TEST(H2SessionTest, GoawayDrainsThenCloses) {
  Tunnel t;
  ASSERT_TRUE(t.server->goaway().ok());
  pump(t.client, t.server);
  ASSERT_TRUE(t.client.goaway.has_value());
  EXPECT_EQ(t.client.goaway->second, kH2NoError);
  EXPECT_EQ(t.client->availableStreams(), 0u);
  EXPECT_FALSE(t.client->openConnect("10.0.0.1:8080", {}).ok());

  // The stream in flight finishes normally.
  ASSERT_EQ(*t.client->send(t.id, asBytes("bye")), 3u);
  ASSERT_TRUE(t.client->endStream(t.id).ok());
  ASSERT_TRUE(t.server->endStream(t.id).ok());
  pump(t.client, t.server);
  EXPECT_EQ(t.server.streams[t.id].data, "bye");
  EXPECT_EQ(t.client.streams[t.id].closed, kH2NoError);
  EXPECT_TRUE(t.server->isClosed());
  EXPECT_TRUE(t.client->isClosed());
}

TEST(H2SessionTest, RoleSpecificCallsAreRefused) {
  Recorder client(H2Role::kClient);
  Recorder server(H2Role::kServer);
  EXPECT_FALSE(server->openConnect("10.0.0.1:8080", {}).ok());
  EXPECT_EQ(server->availableStreams(), 0u);
  EXPECT_FALSE(client->respond(1, kStatusOk).ok());
  EXPECT_FALSE(server->respond(1, kStatusOk).ok());  // no such request
  EXPECT_FALSE(client->send(1, asBytes("x")).ok());
  EXPECT_FALSE(client->consumed(1, 1).ok());
  EXPECT_EQ(h2ErrorName(kH2ConnectError), "CONNECT_ERROR");
}

}  // namespace
}  // namespace nodemesh::hbone
