// H2Codec: flood defences (each trips, and the peer sees why), stream and header limits, and the
// memory bounds of the send side.

#include <gtest/gtest.h>

#include "tests/unit/waypoint/http2/h2_codec_test_util.h"

namespace nodemesh::waypoint::http2::test {
namespace {

using hbone::kH2Cancel;
using hbone::kH2EnhanceYourCalm;
using hbone::kH2RefusedStream;

std::string prefaceAndSettings() {
  return std::string(kClientPreface) + frame(kSettings, 0, 0, "");
}

// `n` requests on streams first, first+2, ..., each reset by the client right away.
std::string requestsThenResets(uint32_t first, int n) {
  std::string bytes;
  for (int i = 0; i < n; ++i) {
    const uint32_t id = first + 2 * static_cast<uint32_t>(i);
    bytes += frame(kHeaders, kEndHeaders | kEndStream, id, getRequestBlock());
    bytes += frame(kRstStream, 0, id, rstPayload(kH2Cancel));
  }
  return bytes;
}

TEST(H2CodecLimitsTest, RapidResetEndsTheConnectionWithEnhanceYourCalm) {
  Clock::time_point t{};
  H2CodecOptions options;
  options.premature_reset_limit = 10;
  options.premature_reset_window = std::chrono::seconds(10);
  options.now = [&t] { return t; };
  Recorder server(Role::kServer, options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());

  // Ten per window are tolerated when the windows are apart...
  ASSERT_TRUE(server->receive(asBytes(requestsThenResets(1, 10))).ok());
  t += std::chrono::seconds(11);
  ASSERT_TRUE(server->receive(asBytes(requestsThenResets(21, 10))).ok());
  EXPECT_EQ(server->stats().premature_resets, 20u);
  server.takeOutput();

  // ...eleven within one window are not.
  t += std::chrono::seconds(11);
  Status status = server->receive(asBytes(requestsThenResets(41, 11)));
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("rapid reset"), std::string::npos);
  EXPECT_EQ(goawayCode(server.takeOutput()), kH2EnhanceYourCalm);
  EXPECT_TRUE(server->isClosed());
}

TEST(H2CodecLimitsTest, ResetsAfterTheResponseAreNotPremature) {
  H2CodecOptions options;
  options.premature_reset_limit = 2;
  Recorder server(Role::kServer, options);
  server.on_request = [&server](StreamId id, const RequestHead&) {
    ASSERT_TRUE(server->respond(id, ResponseHead{200, {}}, false).ok());
  };
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  for (uint32_t id = 1; id < 20; id += 2) {
    ASSERT_TRUE(server->receive(asBytes(frame(kHeaders, kEndHeaders, id, getRequestBlock()))).ok());
    server.takeOutput();  // the response HEADERS go out
    ASSERT_TRUE(server->receive(asBytes(frame(kRstStream, 0, id, rstPayload(kH2Cancel)))).ok());
  }
  EXPECT_EQ(server->stats().premature_resets, 0u);
  EXPECT_EQ(server.requests, 10);
}

TEST(H2CodecLimitsTest, NghttpResetRateLimitIsConfigured) {
  H2CodecOptions options;
  options.premature_reset_limit = 1000;  // out of the way: nghttp2's token bucket trips first
  options.reset_rate_burst = 5;
  options.reset_rate_per_second = 1;
  Recorder server(Role::kServer, options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  Status status = server->receive(asBytes(requestsThenResets(1, 8)));
  if (status.ok()) {
    status = server->receive(asBytes(frame(kPing, 0, 0, std::string(8, '\0'))));
  }
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(goawayCode(server.takeOutput()), hbone::kH2InternalError);
}

TEST(H2CodecLimitsTest, ContinuationFloodIsCut) {
  // Limits below nghttp2's defaults, so these tests fail if the options are not applied.
  H2CodecOptions options;
  options.max_continuations = 3;
  Recorder server(Role::kServer, options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  std::string block = getRequestBlock();
  // Three CONTINUATIONs are fine...
  std::string bytes = frame(kHeaders, kEndStream, 1, block.substr(0, 1));
  bytes += frame(kContinuation, 0, 1, block.substr(1, 1));
  bytes += frame(kContinuation, 0, 1, block.substr(2, 1));
  bytes += frame(kContinuation, kEndHeaders, 1, block.substr(3));
  ASSERT_TRUE(server->receive(asBytes(bytes)).ok());
  EXPECT_EQ(server.requests, 1);
  // ...a fourth, even empty, is a flood.
  bytes = frame(kHeaders, kEndStream, 3, block);
  for (int i = 0; i < 4; ++i) {
    bytes += frame(kContinuation, 0, 3, "");
  }
  Status status = server->receive(asBytes(bytes));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(goawayCode(server.takeOutput()), kH2EnhanceYourCalm);
  EXPECT_EQ(server.requests, 1);
}

TEST(H2CodecLimitsTest, PingFloodIsCut) {
  H2CodecOptions options;
  options.max_outbound_ack = 50;
  Recorder server(Role::kServer, options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  std::string bytes;
  for (int i = 0; i < 40; ++i) {
    bytes += frame(kPing, 0, 0, std::string(8, 'p'));
  }
  ASSERT_TRUE(server->receive(asBytes(bytes)).ok());  // answered in one go: fine
  server.takeOutput();
  Status status = server->receive(asBytes(bytes + bytes));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(goawayCode(server.takeOutput()), kH2EnhanceYourCalm);
}

TEST(H2CodecLimitsTest, SettingsFloodIsCut) {
  H2CodecOptions options;
  options.max_outbound_ack = 50;
  Recorder server(Role::kServer, options);
  std::string bytes(kClientPreface);
  for (int i = 0; i < 100; ++i) {
    bytes += frame(kSettings, 0, 0, "");
  }
  Status status = server->receive(asBytes(bytes));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(goawayCode(server.takeOutput()), kH2EnhanceYourCalm);
}

TEST(H2CodecLimitsTest, SettingsWithTooManyEntriesAreCut) {
  H2CodecOptions options;
  options.max_settings_entries = 4;
  Recorder server(Role::kServer, options);
  std::string entries;
  for (int i = 0; i < 5; ++i) {
    entries += std::string("\x00\x03\x00\x00\x00\x64", 6);  // MAX_CONCURRENT_STREAMS 100
  }
  Status status =
      server->receive(asBytes(std::string(kClientPreface) + frame(kSettings, 0, 0, entries)));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(goawayCode(server.takeOutput()), kH2EnhanceYourCalm);
}

TEST(H2CodecLimitsTest, UnwrittenAcksAreBoundedAcrossReceives) {
  // A peer that pings and never reads: what we hold for it stays bounded.
  H2CodecOptions options;
  options.output_batch_bytes = 4 * kKiB;
  options.max_pending_output_bytes = 8 * kKiB;
  options.max_outbound_ack = 100;
  Recorder server(Role::kServer, options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  std::string pings;
  for (int i = 0; i < 50; ++i) {
    pings += frame(kPing, 0, 0, std::string(8, 'p'));
  }
  int rounds = 0;
  for (; rounds < 100 && server->receive(asBytes(pings)).ok(); ++rounds) {
  }
  // 8 KiB of ACKs (17 bytes each) plus 100 inside nghttp2: about 580 pings, 12 rounds.
  EXPECT_LT(rounds, 15);
  EXPECT_GE(rounds, 5);
}

TEST(H2CodecLimitsTest, EmptyDataFramesFloodIsCut) {
  H2CodecOptions options;
  options.max_consecutive_empty_frames = 4;
  Recorder server(Role::kServer, options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  ASSERT_TRUE(server->receive(asBytes(frame(kHeaders, kEndHeaders, 1, getRequestBlock()))).ok());
  ASSERT_EQ(server.requests, 1);
  // Four empty frames, then data: fine.
  std::string bytes;
  for (int i = 0; i < 4; ++i) {
    bytes += frame(kData, 0, 1, "");
  }
  bytes += frame(kData, 0, 1, "x");
  ASSERT_TRUE(server->receive(asBytes(bytes)).ok());
  bytes.clear();
  for (int i = 0; i < 5; ++i) {
    bytes += frame(kData, 0, 1, "");
  }
  Status status = server->receive(asBytes(bytes));
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("empty DATA"), std::string::npos);
  EXPECT_EQ(goawayCode(server.takeOutput()), kH2EnhanceYourCalm);
}

TEST(H2CodecLimitsTest, StreamsBeyondMaxConcurrentAreRefused) {
  H2CodecOptions options;
  options.max_concurrent_streams = 10;
  RawClient raw(/*assumed_peer_max_streams=*/1000);  // ignores the server's SETTINGS
  Recorder server(Role::kServer, options);
  std::vector<int32_t> ids;
  ids.reserve(11);
  for (int i = 0; i < 11; ++i) {
    ids.push_back(raw.request(rawGet()));
  }
  ASSERT_TRUE(transfer(raw, server));  // all before the server's SETTINGS
  pump(raw, server);
  EXPECT_EQ(server.requests, 10);
  EXPECT_EQ(raw.closed[ids.back()], kH2RefusedStream);
  EXPECT_FALSE(raw.goaway_error.has_value());
}

TEST(H2CodecLimitsTest, RefusedStreamIsRetryableAtTheClient) {
  H2CodecOptions server_options;
  server_options.max_concurrent_streams = 2;
  Pair p({}, server_options);
  std::vector<StreamId> ids;
  ids.reserve(3);
  for (int i = 0; i < 3; ++i) {  // before the server's SETTINGS arrive
    ids.push_back(*p.client->submitRequest(getRequest(), false));
  }
  p.run();
  EXPECT_EQ(p.server.requests, 2);
  ASSERT_TRUE(p.client.streams[ids[2]].closed.has_value());
  EXPECT_EQ(p.client.streams[ids[2]].closed->error_code, kH2RefusedStream);
  EXPECT_TRUE(p.client.streams[ids[2]].closed->retryable);
  EXPECT_EQ(p.client->availableStreams(), 0u);  // the server's limit, learnt from SETTINGS
}

TEST(H2CodecLimitsTest, OversizedRequestHeadersGet431) {
  H2CodecOptions options;
  options.max_header_list_bytes = 8 * kKiB;
  RawClient raw;
  Recorder server(Role::kServer, options);
  RawClient::Fields fields = rawGet();
  fields.emplace_back("cookie", std::string(20 * kKiB, 'c'));  // spans CONTINUATION frames
  const int32_t big = raw.request(fields);
  pump(raw, server);
  EXPECT_EQ(raw.status[big], 431);
  EXPECT_EQ(server.requests, 0);
  EXPECT_EQ(server.streams[big].rejected_status, 431);
  // HPACK state is intact: the next request works.
  const int32_t ok = raw.request(rawGet());
  pump(raw, server);
  EXPECT_EQ(server.requests, 1);
  EXPECT_EQ(raw.closed.count(ok), 0u);
}

TEST(H2CodecLimitsTest, HeadersOverThePeersLimitAreNotSent) {
  H2CodecOptions small;
  small.max_header_list_bytes = 4 * kKiB;
  Pair p({}, small);
  p.run();  // the client learns the server's SETTINGS_MAX_HEADER_LIST_SIZE
  RequestHead head = getRequest();
  head.headers.push_back({"cookie", std::string(8 * kKiB, 'c')});
  EXPECT_EQ(p.client->submitRequest(head, true).error().code, EMSGSIZE);
  EXPECT_TRUE(p.client->submitRequest(getRequest(), true).ok());

  Pair q(small, {});
  auto id = q.client->submitRequest(getRequest(), false);
  ASSERT_TRUE(id.ok());
  q.run();
  ResponseHead big{200, {{"set-cookie", std::string(8 * kKiB, 's')}}};
  EXPECT_EQ(q.server->respond(*id, big, false).error().code, EMSGSIZE);
  EXPECT_TRUE(q.server->respond(*id, ResponseHead{200, {{"set-cookie", "s"}}}, false).ok());
}

TEST(H2CodecLimitsTest, OversizedResponseHeadersResetTheStream) {
  H2CodecOptions options;
  options.max_header_list_bytes = 4 * kKiB;
  Recorder client(Role::kClient, options);
  auto id = client->submitRequest(getRequest(), true);
  ASSERT_TRUE(id.ok());
  client.takeOutput();
  // A server that ignores our SETTINGS_MAX_HEADER_LIST_SIZE: :status 200 (static index 8).
  std::string block = "\x88" + hpackLiteral("x-big", std::string(8 * kKiB, 'b'));
  ASSERT_TRUE(
      client->receive(asBytes(frame(kSettings, 0, 0, "") + frame(kHeaders, kEndHeaders, 1, block)))
          .ok());
  EXPECT_FALSE(client.streams[*id].response.has_value());  // never reported
  ASSERT_TRUE(client.streams[*id].closed.has_value());
  EXPECT_EQ(client.streams[*id].closed->error_code, hbone::kH2InternalError);
  EXPECT_NE(client.takeOutput().find(frame(kRstStream, 0, 1, rstPayload(hbone::kH2InternalError))),
            std::string::npos);
}

TEST(H2CodecLimitsTest, OversizedRequestTrailersResetTheStream) {
  H2CodecOptions options;
  options.max_header_list_bytes = 4 * kKiB;
  Recorder server(Role::kServer, options);
  ASSERT_TRUE(server->receive(asBytes(prefaceAndSettings())).ok());
  ASSERT_TRUE(server->receive(asBytes(frame(kHeaders, kEndHeaders, 1, getRequestBlock()))).ok());
  ASSERT_EQ(server.requests, 1);
  const std::string trailers = hpackLiteral("x-trailer", std::string(8 * kKiB, 't'));
  ASSERT_TRUE(
      server->receive(asBytes(frame(kHeaders, kEndHeaders | kEndStream, 1, trailers))).ok());
  EXPECT_FALSE(server.streams[1].trailers.has_value());
  ASSERT_TRUE(server.streams[1].closed.has_value());
  EXPECT_EQ(server.streams[1].closed->error_code, hbone::kH2InternalError);
}

TEST(H2CodecLimitsTest, SendQueuesAreBoundedPerStreamAndPerConnection) {
  H2CodecOptions options;
  options.max_send_queue_bytes = 64 * kKiB;
  options.max_send_queue_total_bytes = 256 * kKiB;
  Pair p(options, {});
  const std::string chunk = pattern(100 * kKiB, 9);
  std::vector<StreamId> ids;
  size_t total = 0;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(*p.client->submitRequest(getRequest(), false));
    total += *p.client->sendData(ids.back(), asBytes(chunk));
  }
  EXPECT_EQ(p.client->queuedBytes(ids[0]), 64 * kKiB);
  EXPECT_EQ(total, 256 * kKiB);  // four streams fill the connection's share
  EXPECT_EQ(p.client->queuedBytesTotal(), 256 * kKiB);
  EXPECT_EQ(p.client->queuedBytes(ids[5]), 0u);
  p.run();  // the server reads everything: queues drain, writers are told
  EXPECT_EQ(p.client->queuedBytesTotal(), 0u);
  EXPECT_GE(p.client.streams[ids[0]].writable, 1);
  EXPECT_GE(p.client.streams[ids[5]].writable, 1);  // blocked on the connection-wide limit
  EXPECT_EQ(*p.client->sendData(ids[5], asBytes(chunk)), 64 * kKiB);
}

}  // namespace
}  // namespace nodemesh::waypoint::http2::test
