// H2Session: the flood defences of an HBONE server (docs/security.md). Each flood ends the
// connection with GOAWAY ENHANCE_YOUR_CALM and an onFlood event; what the session holds for a
// peer that does not read stays bounded; ordinary traffic, a slow reader included, is no flood.

#include <gtest/gtest.h>

#include "tests/support/h2_frames.h"
#include "tests/unit/hbone/h2_session_test_util.h"

namespace nodemesh::hbone::h2_session_test {
namespace {

using testing::frame;
using testing::goawayCode;
using testing::kClientPreface;
using testing::kEndHeaders;
using testing::kHeaders;
using testing::kPing;
using testing::kRstStream;
using testing::kSettings;
using testing::rstPayload;

// Records onFlood besides everything Recorder does.
class FloodRecorder : public Recorder {
 public:
  explicit FloodRecorder(const H2Options& options) : Recorder(H2Role::kServer, options) {}
  void onFlood(H2Flood kind, std::string_view detail) override {
    floods.emplace_back(kind, std::string(detail));
  }
  std::vector<std::pair<H2Flood, std::string>> floods;
};

// HPACK: ":method: CONNECT" and ":authority: 10.0.0.1:8080", literals with indexed names
// (RFC 7541 6.2.2; static table 2 and 1).
std::string connectBlock() {
  std::string block;
  block += '\x02';
  block += static_cast<char>(7);
  block += "CONNECT";
  block += '\x01';
  block += static_cast<char>(13);
  block += "10.0.0.1:8080";
  return block;
}

std::string prefaceAndSettings() {
  return std::string(kClientPreface) + frame(kSettings, 0, 0, "");
}

// `n` CONNECTs on streams first, first+2, ..., each reset by the client at once.
std::string connectsThenResets(uint32_t first, int n) {
  std::string bytes;
  for (int i = 0; i < n; ++i) {
    const uint32_t id = first + 2 * static_cast<uint32_t>(i);
    bytes += frame(kHeaders, kEndHeaders, id, connectBlock());
    bytes += frame(kRstStream, 0, id, rstPayload(kH2Cancel));
  }
  return bytes;
}

TEST(H2SessionFloodsTest, PingFloodFromAPeerThatDoesNotReadIsCut) {
  H2Options options;
  options.output_batch_bytes = 4 * 1024;
  options.max_pending_output_bytes = 8 * 1024;
  FloodRecorder server(options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  std::string pings;
  for (int i = 0; i < 100; ++i) {
    pings += frame(kPing, 0, 0, std::string(8, 'p'));
  }
  // Never reading: 8 KiB of ACKs (17 bytes each) are pulled out of nghttp2, then it keeps
  // 1,000 more; the next PING is a flood.
  int rounds = 0;
  Status status = okStatus();
  for (; rounds < 1000 && status.ok(); ++rounds) {
    status = server->receive(asBytes(pings));
  }
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("flood"), std::string::npos) << status.error().message;
  EXPECT_GE(rounds, 14);  // (8 KiB / 17 + 1000) / 100
  EXPECT_LE(rounds, 16);
  ASSERT_EQ(server.floods.size(), 1u);
  EXPECT_EQ(server.floods[0].first, H2Flood::kControlFrames);
  const std::vector<uint8_t> out = server.takeOutput();
  EXPECT_LE(out.size(), 9 * 1024u);  // what was held: the bound, and the GOAWAY
  EXPECT_EQ(goawayCode({reinterpret_cast<const char*>(out.data()), out.size()}),
            kH2EnhanceYourCalm);
  EXPECT_TRUE(server->isClosed());
}

TEST(H2SessionFloodsTest, PingsAnsweredAndReadAreNoFlood) {
  FloodRecorder server(H2Options{});
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  server.takeOutput();  // SETTINGS, WINDOW_UPDATE, the SETTINGS ACK
  std::string pings;
  for (int i = 0; i < 500; ++i) {
    pings += frame(kPing, 0, 0, std::string(8, 'p'));
  }
  for (int round = 0; round < 100; ++round) {  // 50,000 PINGs, each ACK read
    ASSERT_TRUE(server->receive(asBytes(pings)).ok());
    EXPECT_EQ(server.takeOutput().size(), 500u * 17u);
  }
  EXPECT_TRUE(server.floods.empty());
}

TEST(H2SessionFloodsTest, RefusedStreamFloodIsCutAtTheQueuedFramesBound) {
  // Resets are not among the ACKs nghttp2 bounds itself: each CONNECT beyond the stream limit
  // gets RST_STREAM REFUSED_STREAM, and a peer that does not read them is a flood too.
  H2Options options;
  options.max_concurrent_streams = 1;
  options.output_batch_bytes = 4 * 1024;
  options.max_pending_output_bytes = 8 * 1024;
  options.max_queued_frames = 50;
  FloodRecorder server(options);  // never answers: the first stream stays open
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  server.takeOutput();
  uint32_t next_id = 1;
  Status status = okStatus();
  int rounds = 0;
  for (; rounds < 1000 && status.ok(); ++rounds) {
    std::string requests;
    for (int i = 0; i < 100; ++i, next_id += 2) {
      requests += frame(kHeaders, kEndHeaders, next_id, connectBlock());
    }
    status = server->receive(asBytes(requests));
  }
  ASSERT_FALSE(status.ok());
  EXPECT_LE(rounds, 8);  // (8 KiB / 13 + 50) / 100, give or take a round
  ASSERT_EQ(server.floods.size(), 1u);
  EXPECT_EQ(server.floods[0].first, H2Flood::kControlFrames);
  const std::vector<uint8_t> out = server.takeOutput();
  EXPECT_EQ(goawayCode({reinterpret_cast<const char*>(out.data()), out.size()}),
            kH2EnhanceYourCalm);
}

TEST(H2SessionFloodsTest, SlowReaderOfTunnelDataIsNoFlood) {
  // The server sends a large download the client does not read, while the client keeps
  // uploading: the server's unwritten output reaches its bound with DATA, which is no flood.
  H2Options server_options;
  server_options.max_pending_output_bytes = 128 * 1024;
  server_options.max_queued_frames = 10;
  Recorder client(H2Role::kClient);
  FloodRecorder server(server_options);
  server.respond_with = kStatusOk;
  auto opened = client->openConnect("10.0.0.1:8080", meshHeaders());
  ASSERT_TRUE(opened.ok());
  const StreamId id = *opened;
  pump(client, server);
  ASSERT_EQ(client.streams[id].status, kStatusOk);

  const std::vector<uint8_t> chunk = pattern(16 * 1024, 7);
  size_t held_by_server = 0;
  for (int round = 0; round < 200; ++round) {
    (void)server->send(id, chunk);  // the download: its queue fills, then send takes nothing
    ASSERT_TRUE(client->send(id, chunk).ok());
    const std::vector<uint8_t> upload = client.takeOutput();
    ASSERT_TRUE(server->receive(upload).ok()) << "round " << round;
    held_by_server = server->pendingOutput().size();
  }
  EXPECT_GT(held_by_server, 0u);
  EXPECT_TRUE(server.floods.empty());
  EXPECT_GT(server.streams[id].data.size(), 3u * 1024 * 1024);  // the upload went through
}

TEST(H2SessionFloodsTest, RapidResetEndsTheConnectionWithEnhanceYourCalm) {
  H2Options options;
  options.premature_reset_stream_count = 100;
  FloodRecorder server(options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  // Half of max(streams, 100) reset before their answer: the 50th reset is a flood.
  ASSERT_TRUE(server->receive(asBytes(connectsThenResets(1, 49))).ok());
  EXPECT_EQ(server->stats().premature_resets, 49u);
  server.takeOutput();
  Status status = server->receive(asBytes(connectsThenResets(99, 10)));
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("50 of 50 streams"), std::string::npos)
      << status.error().message;
  ASSERT_EQ(server.floods.size(), 1u);
  EXPECT_EQ(server.floods[0].first, H2Flood::kRapidReset);
  EXPECT_EQ(server.requests, 50);  // nothing after the flood reached the owner
  const std::vector<uint8_t> out = server.takeOutput();
  EXPECT_EQ(goawayCode({reinterpret_cast<const char*>(out.data()), out.size()}),
            kH2EnhanceYourCalm);
  EXPECT_TRUE(server->isClosed());
}

TEST(H2SessionFloodsTest, ResetsOfAnsweredLongLivedStreamsAreNotPremature) {
  H2Options options;
  options.premature_reset_stream_count = 10;
  options.premature_reset_min_lifetime = std::chrono::milliseconds(0);
  FloodRecorder server(options);
  server.respond_with = kStatusOk;
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  for (uint32_t id = 1; id < 400; id += 2) {
    ASSERT_TRUE(server->receive(asBytes(frame(kHeaders, kEndHeaders, id, connectBlock()))).ok());
    server.takeOutput();  // the 200 is out
    ASSERT_TRUE(server->receive(asBytes(frame(kRstStream, 0, id, rstPayload(kH2Cancel)))).ok());
  }
  EXPECT_EQ(server->stats().premature_resets, 0u);
  EXPECT_TRUE(server.floods.empty());
}

TEST(H2SessionFloodsTest, RefusedStreamsTheClientCancelsAreNoFlood) {
  // An application that stopped accepting: every CONNECT is answered 503 and the client agent
  // cancels each one. 2,000 of them within a second, beyond nghttp2's own reset bucket (1,000),
  // end neither the connection nor a stream that is still open on it.
  H2Options options;
  FloodRecorder server(options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  ASSERT_TRUE(server->receive(asBytes(frame(kHeaders, kEndHeaders, 1, connectBlock()))).ok());
  ASSERT_TRUE(server->respond(1, kStatusOk).ok());
  std::vector<uint8_t> out = server.takeOutput();
  uint32_t id = 3;
  for (int round = 0; round < 40; ++round) {
    const uint32_t first = id;
    std::string bytes;
    for (int i = 0; i < 50; ++i, id += 2) {
      bytes += frame(kHeaders, kEndHeaders, id, connectBlock());
    }
    ASSERT_TRUE(server->receive(asBytes(bytes)).ok());
    bytes.clear();
    for (uint32_t refused = first; refused < id; refused += 2) {
      ASSERT_TRUE(server->respond(refused, kStatusServiceUnavailable).ok());
      bytes += frame(kRstStream, 0, refused, rstPayload(kH2Cancel));
    }
    const std::vector<uint8_t> answers = server.takeOutput();
    out.insert(out.end(), answers.begin(), answers.end());
    ASSERT_TRUE(server->receive(asBytes(bytes)).ok()) << "round " << round;
  }
  const std::vector<uint8_t> rest = server.takeOutput();
  out.insert(out.end(), rest.begin(), rest.end());
  EXPECT_EQ(goawayCode({reinterpret_cast<const char*>(out.data()), out.size()}), std::nullopt);
  EXPECT_EQ(server->stats().premature_resets, 0u);
  EXPECT_TRUE(server.floods.empty());
  EXPECT_FALSE(server->isClosed());
  const std::string_view still = "still open";
  auto sent =
      server->send(1, std::span(reinterpret_cast<const uint8_t*>(still.data()), still.size()));
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(*sent, still.size());
}

TEST(H2SessionFloodsTest, FewPrematureResetsAmongManyStreamsAreNoFlood) {
  // Clients do cancel some streams before the answer (a closed application socket): below
  // half of the streams, that is ordinary.
  H2Options options;
  options.premature_reset_stream_count = 10;
  FloodRecorder server(options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  uint32_t id = 1;
  for (int round = 0; round < 100; ++round) {
    // Two answered and kept open (then ended by the server), one reset at once.
    for (int i = 0; i < 2; ++i, id += 2) {
      ASSERT_TRUE(server->receive(asBytes(frame(kHeaders, kEndHeaders, id, connectBlock()))).ok());
      ASSERT_TRUE(server->respond(id, kStatusBadRequest).ok());
    }
    ASSERT_TRUE(server->receive(asBytes(connectsThenResets(id, 1))).ok());
    id += 2;
    server.takeOutput();
  }
  EXPECT_EQ(server->stats().premature_resets, 100u);
  EXPECT_TRUE(server.floods.empty());
}

}  // namespace
}  // namespace nodemesh::hbone::h2_session_test
