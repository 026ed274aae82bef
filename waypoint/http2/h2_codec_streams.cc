// H2Codec's streams: requests (client), requests received and responses (server), bodies,
// trailers, flow control (consumed) and resets.

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "hbone/nghttp2_util.h"
#include "waypoint/http2/h2_codec.h"
#include "waypoint/http2/h2_codec_internal.h"

namespace nodemesh::waypoint::http2 {

namespace {

using hbone::kH2NoError;
using hbone::kH2ProtocolError;
using hbone::kH2RefusedStream;

constexpr int kStatusBadRequest = 400;
constexpr int kStatusHeaderFieldsTooLarge = 431;
constexpr int kStatusNotImplemented = 501;

std::string streamMessage(StreamId id, std::string_view what) {
  return "stream " + std::to_string(id) + ": " + std::string(what);
}

}  // namespace

size_t H2Codec::headerLimit() const {
  return std::min<size_t>(
      options_.max_header_list_bytes,
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE));
}

// ---- server ----

void H2Codec::finishRequest(Stream& stream, const HeaderList& fields, bool end_stream) {
  if (stream.headers_too_large) {
    rejectRequest(stream, kStatusHeaderFieldsTooLarge, "header list over the limit");
    return;
  }
  Result<RequestHead> head = fromH2RequestFields(fields);
  if (!head.ok()) {
    rejectRequest(stream, kStatusBadRequest, head.error().message);
    return;
  }
  if (head->method == "CONNECT") {
    // The tunnel is HBONE's job; inside it the waypoint serves ordinary requests only.
    rejectRequest(stream, kStatusNotImplemented, "CONNECT inside the waypoint");
    return;
  }
  stream.visible = true;
  ++stats_.streams_opened;
  ++stats_.streams_active;
  handler_.onRequestHeaders(stream.id, *head, end_stream);
}

void H2Codec::rejectRequest(Stream& stream, int status, std::string_view reason) {
  ++stats_.requests_rejected;
  stream.rejected = true;
  int rv = 0;
  if (status == 0) {
    stream.reset_requested = true;
    stream.reset_code = kH2ProtocolError;
    rv = nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream.id, kH2ProtocolError);
  } else {
    // No data provider: the HEADERS frame ends the stream; onFrameSend resets it with NO_ERROR
    // if the client is still sending.
    const HeaderList fields = {{":status", std::to_string(status)}};
    const std::vector<nghttp2_nv> nva = h2_internal::toNv(fields);
    stream.final_submitted = true;
    rv = nghttp2_submit_response(session_, stream.id, nva.data(), nva.size(), nullptr);
  }
  if (rv != 0) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream.id, hbone::kH2InternalError);
  }
  handler_.onRequestRejected(stream.id, status, reason);
}

Status H2Codec::respond(StreamId stream_id, const ResponseHead& head, bool end_stream) {
  if (role_ != Role::kServer) {
    return Error::invalid("respond() on a client codec");
  }
  Stream* stream = findStream(stream_id);
  if (stream == nullptr || !stream->visible || stream->reset_requested || dead_) {
    return Error{EPIPE, streamMessage(stream_id, "closed")};
  }
  if (stream->final_submitted) {
    return Error::invalid(streamMessage(stream_id, "already answered"));
  }
  const bool interim = head.status >= 100 && head.status < 200;
  if (interim && end_stream) {
    return Error::invalid(streamMessage(stream_id, "a 1xx response cannot end the stream"));
  }
  Result<HeaderList> fields = toH2ResponseFields(head);
  if (!fields.ok()) {
    return fields.error();
  }
  if (headerListSize(*fields) > headerLimit()) {
    return Error{EMSGSIZE, streamMessage(stream_id, "response header list over the limit")};
  }
  const std::vector<nghttp2_nv> nva = h2_internal::toNv(*fields);
  int rv = 0;
  if (interim) {
    rv = nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, stream_id, nullptr, nva.data(),
                                nva.size(), nullptr);
  } else if (end_stream) {
    rv = nghttp2_submit_response(session_, stream_id, nva.data(), nva.size(), nullptr);
  } else {
    nghttp2_data_provider provider{};
    provider.source.ptr = stream;
    provider.read_callback = &Callbacks::readData;
    rv = nghttp2_submit_response(session_, stream_id, nva.data(), nva.size(), &provider);
    stream->has_provider = rv == 0;
  }
  if (rv != 0) {
    return Error{EPROTO, streamMessage(stream_id, nghttp2_strerror(rv))};
  }
  stream->final_submitted = !interim;
  stream->end_requested = !interim && end_stream;
  return okStatus();
}

// ---- client ----

Result<StreamId> H2Codec::submitRequest(const RequestHead& head, bool end_stream) {
  if (role_ != Role::kClient) {
    return Error::invalid("submitRequest() on a server codec");
  }
  if (dead_ || failed_ || goaway_sent_ || nghttp2_session_check_request_allowed(session_) == 0) {
    return Error{ESHUTDOWN, "HTTP/2 connection is going away"};
  }
  if (availableStreams() == 0) {
    return Error{EAGAIN, "HTTP/2 connection has no stream left (max concurrent streams)"};
  }
  Result<HeaderList> fields = toH2RequestFields(head);
  if (!fields.ok()) {
    return fields.error();
  }
  const size_t size = headerListSize(*fields);
  if (size > headerLimit()) {
    return Error{EMSGSIZE, "request header list of " + std::to_string(size) + " bytes exceeds " +
                               std::to_string(headerLimit())};
  }
  const std::vector<nghttp2_nv> nva = h2_internal::toNv(*fields);
  auto stream = std::make_unique<Stream>(0);
  nghttp2_data_provider provider{};
  provider.source.ptr = stream.get();
  provider.read_callback = &Callbacks::readData;
  const int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                            end_stream ? nullptr : &provider, nullptr);
  if (id < 0) {
    return Error{EPROTO, std::string("nghttp2_submit_request: ") + nghttp2_strerror(id)};
  }
  stream->id = id;
  stream->visible = true;
  stream->has_provider = !end_stream;
  stream->end_requested = end_stream;
  streams_.emplace(id, std::move(stream));
  ++stats_.streams_opened;
  ++stats_.streams_active;
  return id;
}

uint32_t H2Codec::availableStreams() const {
  if (role_ != Role::kClient || dead_ || failed_ || goaway_sent_ ||
      nghttp2_session_check_request_allowed(session_) == 0) {
    return 0;
  }
  return hbone::h2_common::streamsAvailable(session_, options_.max_concurrent_streams,
                                            streams_.size());
}

// ---- both ----

void H2Codec::resumeIfDeferred(Stream& stream) {
  if (stream.deferred && !dead_) {
    stream.deferred = false;
    // INVALID_ARGUMENT only means nghttp2 had already taken the stream back; nothing to do.
    nghttp2_session_resume_data(session_, stream.id);
  }
}

Status H2Codec::checkSendable(const Stream* stream, StreamId id) const {
  if (stream == nullptr || !stream->visible || stream->reset_requested || stream->rejected ||
      dead_) {
    return Error{EPIPE, streamMessage(id, "closed")};
  }
  if (stream->end_requested) {
    return Error{EPIPE, streamMessage(id, "already ended")};
  }
  if (!stream->has_provider) {
    return Error::invalid(streamMessage(id, "no final response with a body submitted yet"));
  }
  return okStatus();
}

Result<size_t> H2Codec::sendData(StreamId stream_id, std::span<const uint8_t> data) {
  Stream* stream = findStream(stream_id);
  if (Status status = checkSendable(stream, stream_id); !status.ok()) {
    return status.error();
  }
  const size_t stream_room = options_.max_send_queue_bytes - stream->queue.size();
  const size_t total_room = options_.max_send_queue_total_bytes - total_queued_;
  const size_t n = std::min({stream_room, total_room, data.size()});
  if (n < data.size()) {
    if (stream_room <= total_room) {
      stream->write_blocked = true;
    } else if (!stream->total_blocked) {
      stream->total_blocked = true;
      total_blocked_.push_back(stream_id);
    }
  }
  if (n > 0) {
    stream->queue.append(data.first(n));
    total_queued_ += n;
    resumeIfDeferred(*stream);
  }
  return n;
}

Status H2Codec::sendTrailers(StreamId stream_id, const HeaderList& trailers) {
  Stream* stream = findStream(stream_id);
  if (Status status = checkSendable(stream, stream_id); !status.ok()) {
    return status;
  }
  Result<HeaderList> fields = toH2TrailerFields(trailers);
  if (!fields.ok()) {
    return fields.error();
  }
  if (headerListSize(*fields) > headerLimit()) {
    return Error{EMSGSIZE, streamMessage(stream_id, "trailer list over the limit")};
  }
  stream->trailers = std::move(*fields);
  stream->trailers_pending = !stream->trailers.empty();  // none left: a plain END_STREAM
  stream->end_requested = true;
  resumeIfDeferred(*stream);
  return okStatus();
}

Status H2Codec::endStream(StreamId stream_id) {
  Stream* stream = findStream(stream_id);
  if (stream != nullptr && stream->end_requested && !stream->reset_requested) {
    return okStatus();
  }
  if (Status status = checkSendable(stream, stream_id); !status.ok()) {
    return status;
  }
  stream->end_requested = true;
  resumeIfDeferred(*stream);
  return okStatus();
}

uint64_t H2Codec::unconsumedBytes() const {
  uint64_t n = 0;
  for (const auto& [id, stream] : streams_) n += stream->unconsumed;
  for (const auto& [id, bytes] : closed_unconsumed_) n += bytes;
  return n;
}

Status H2Codec::consumed(StreamId stream_id, size_t n) {
  Stream* stream = findStream(stream_id);
  return hbone::h2_common::giveBackWindow(session_, dead_, stream_id, n,
                                          stream != nullptr ? &stream->unconsumed : nullptr,
                                          closed_unconsumed_);
}

void H2Codec::dropQueue(Stream& stream) {
  total_queued_ -= stream.queue.size();
  stream.queue.clear();
  stream.trailers.clear();
  stream.trailers_pending = false;
}

Status H2Codec::resetStream(StreamId stream_id, uint32_t error_code) {
  Stream* stream = findStream(stream_id);
  if (stream == nullptr || !stream->visible) {
    return Error{EPIPE, streamMessage(stream_id, "closed")};
  }
  if (stream->reset_requested || dead_) {
    return okStatus();
  }
  if (stream->remote_ended) {
    // Both sides may have ended already (the owner is told of the peer's END_STREAM before
    // nghttp2 closes the stream): then there is nothing to cancel, and an RST_STREAM would
    // count against the peer's reset-flood limit (nghttp2 since its CVE-2023-44487 fix ends a
    // connection after 1,000 of them with GOAWAY INTERNAL_ERROR): one per request adds up.
    nghttp2_stream* ns = nghttp2_session_find_stream(session_, stream_id);
    const nghttp2_stream_proto_state state =
        ns == nullptr ? NGHTTP2_STREAM_STATE_CLOSED : nghttp2_stream_get_state(ns);
    if (state == NGHTTP2_STREAM_STATE_HALF_CLOSED_LOCAL || state == NGHTTP2_STREAM_STATE_CLOSED) {
      if (stream->queue.empty()) return okStatus();
    }
  }
  stream->reset_requested = true;
  stream->reset_code = error_code;
  dropQueue(*stream);
  if (int rv = nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, error_code);
      rv != 0) {
    return Error{EPROTO, std::string("nghttp2_submit_rst_stream: ") + nghttp2_strerror(rv)};
  }
  return okStatus();
}

void H2Codec::closeStream(StreamId id, uint32_t error_code) {
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    return;
  }
  // Detach first: the owner's callback may look the stream up (and must find it closed).
  std::unique_ptr<Stream> stream = std::move(it->second);
  streams_.erase(it);
  dropQueue(*stream);
  if (stream->unconsumed > 0) {
    closed_unconsumed_[id] = stream->unconsumed;
  }
  if (role_ == Role::kServer && stream->peer_reset && !stream->response_sent) {
    countPrematureReset();
  }
  if (!stream->visible) {
    return;
  }
  --stats_.streams_active;
  StreamClose close;
  close.error_code = error_code;
  // RFC 9113 §8.7: REFUSED_STREAM and streams above a GOAWAY's last stream id were not
  // processed; a request that never left was not either.
  close.retryable =
      role_ == Role::kClient &&
      (error_code == kH2RefusedStream || !stream->request_sent ||
       (goaway_last_stream_ >= 0 && id > goaway_last_stream_ && error_code != kH2NoError));
  handler_.onStreamClosed(id, close);
}

size_t H2Codec::queuedBytes(StreamId stream_id) const {
  const Stream* stream = findStream(stream_id);
  return stream == nullptr ? 0 : stream->queue.size();
}

}  // namespace nodemesh::waypoint::http2
