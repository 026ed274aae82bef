// H2Session's streams: opening CONNECT streams, answering requests, sending, flow control
// (consumed) and resets.

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "hbone/h2_session.h"
#include "hbone/h2_session_internal.h"
#include "hbone/nghttp2_util.h"

namespace nodemesh::hbone {

namespace {

using h2_internal::kHeaderFieldOverhead;

constexpr std::string_view kConnectMethod = "CONNECT";

const uint8_t* bytes(std::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

nghttp2_nv makeNv(std::string_view name, std::string_view value) {
  // nghttp2 copies names and values on submit, so views of temporaries are fine.
  return nghttp2_nv{const_cast<uint8_t*>(bytes(name)), const_cast<uint8_t*>(bytes(value)),
                    name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

// Connection-specific fields are malformed in HTTP/2 (RFC 9113 §8.2.2).
bool isConnectionSpecific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade" || name == "te";
}

std::string streamMessage(StreamId id, std::string_view what) {
  return "stream " + std::to_string(id) + ": " + std::string(what);
}

}  // namespace

// ---- streams ----

Result<StreamId> H2Session::openConnect(std::string_view authority, const ConnectHeaders& headers) {
  if (role_ != H2Role::kClient) {
    return Error::invalid("openConnect() on a server session");
  }
  if (dead_ || failed_ || goaway_sent_ || nghttp2_session_check_request_allowed(session_) == 0) {
    return Error{ESHUTDOWN, "HTTP/2 connection is going away"};
  }
  if (availableStreams() == 0) {
    return Error{EAGAIN, "HTTP/2 connection has no stream left (max concurrent streams)"};
  }
  if (authority.empty() || nghttp2_check_authority(bytes(authority), authority.size()) == 0) {
    return Error::invalid("invalid CONNECT authority '" + std::string(authority) + "'");
  }

  std::string forwarded;
  if (headers.forwarded_for) {
    // RFC 7239 §6: an address with a port (and any IPv6 address) must be a quoted string.
    forwarded = "for=\"" + headers.forwarded_for->toString() + "\"";
  }
  std::vector<nghttp2_nv> nva;
  nva.reserve(5 + headers.extra.size());
  nva.push_back(makeNv(":method", kConnectMethod));
  nva.push_back(makeNv(":authority", authority));
  if (!forwarded.empty()) {
    nva.push_back(makeNv("forwarded", forwarded));
  }
  if (!headers.baggage.empty()) {
    nva.push_back(makeNv("baggage", headers.baggage));
  }
  if (!headers.traceparent.empty()) {
    nva.push_back(makeNv("traceparent", headers.traceparent));
  }
  for (const Header& h : headers.extra) {
    // nghttp2 sends what it is given; a peer would reset a stream with a bad field.
    if (h.name.empty() || h.name[0] == ':' || isConnectionSpecific(h.name) ||
        nghttp2_check_header_name(bytes(h.name), h.name.size()) == 0 ||
        nghttp2_check_header_value_rfc9113(bytes(h.value), h.value.size()) == 0) {
      return Error::invalid("invalid CONNECT header '" + h.name + "'");
    }
    nva.push_back(makeNv(h.name, h.value));
  }
  size_t list_size = 0;
  for (const nghttp2_nv& nv : nva) {
    list_size += nv.namelen + nv.valuelen + kHeaderFieldOverhead;
  }
  const size_t limit = std::min<size_t>(
      options_.max_header_list_bytes,
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE));
  if (list_size > limit) {
    return Error{EMSGSIZE, "CONNECT header list of " + std::to_string(list_size) +
                               " bytes exceeds " + std::to_string(limit)};
  }

  auto stream = std::make_unique<Stream>(0);
  nghttp2_data_provider provider{};
  provider.source.ptr = stream.get();
  provider.read_callback = &Callbacks::readData;
  const int32_t id =
      nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &provider, nullptr);
  if (id < 0) {
    return Error{EPROTO, std::string("nghttp2_submit_request: ") + nghttp2_strerror(id)};
  }
  stream->id = id;
  stream->visible = true;
  streams_.emplace(id, std::move(stream));
  ++stats_.streams_opened;
  ++stats_.streams_active;
  return id;
}

uint32_t H2Session::availableStreams() const {
  if (role_ != H2Role::kClient || dead_ || failed_ || goaway_sent_ ||
      nghttp2_session_check_request_allowed(session_) == 0) {
    return 0;
  }
  return h2_common::streamsAvailable(session_, options_.max_concurrent_streams, streams_.size());
}

void H2Session::finishRequestHeaders(Stream& stream) {
  if (stream.headers_too_large) {
    ++stats_.requests_rejected;
    submitResponse(stream, kStatusHeaderFieldsTooLarge);
    handler_.onRequestRejected(stream.id, kStatusHeaderFieldsTooLarge,
                               "header block over the limit");
    return;
  }
  // Only classic CONNECT to an ip:port (RFC 9113 §8.5); extended CONNECT (:protocol) and
  // every other method get 400, as ztunnel answers them.
  if (stream.method != kConnectMethod || stream.has_protocol || !stream.has_authority) {
    ++stats_.requests_rejected;
    submitResponse(stream, kStatusBadRequest);
    handler_.onRequestRejected(stream.id, kStatusBadRequest,
                               "not a CONNECT (method '" + stream.method + "')");
    return;
  }
  auto target = SocketAddress::parse(stream.request.authority);
  // Port 0 names no service (nothing can listen on it): refused here rather than after a
  // connect attempt to the application.
  if (!target.ok() || target->port == 0) {
    ++stats_.requests_rejected;
    submitResponse(stream, kStatusBadRequest);
    handler_.onRequestRejected(stream.id, kStatusBadRequest,
                               "authority '" + stream.request.authority +
                                   (target.ok() ? "' has port 0" : "' is not ip:port"));
    return;
  }
  stream.request.target = *target;
  stream.visible = true;
  stream.opened = std::chrono::steady_clock::now();
  ++stats_.streams_opened;
  ++stats_.streams_active;
  handler_.onRequest(stream.id, stream.request);
}

void H2Session::submitResponse(Stream& stream, int status) {
  const std::string status_text = std::to_string(status);
  const nghttp2_nv nv = makeNv(":status", status_text);
  stream.responded = true;
  int rv = 0;
  if (status == kStatusOk) {
    stream.can_send = true;
    nghttp2_data_provider provider{};
    provider.source.ptr = &stream;
    provider.read_callback = &Callbacks::readData;
    rv = nghttp2_submit_response(session_, stream.id, &nv, 1, &provider);
  } else {
    // No data provider: the HEADERS frame carries END_STREAM.
    stream.rejected = true;
    stream.queue.clear();
    rv = nghttp2_submit_response(session_, stream.id, &nv, 1, nullptr);
  }
  if (rv != 0) {
    // Only fails when the stream is already gone or closing; a reset tells the peer instead.
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream.id, kH2InternalError);
  }
}

Status H2Session::respond(StreamId stream_id, int status) {
  if (role_ != H2Role::kServer) {
    return Error::invalid("respond() on a client session");
  }
  if (status < 200 || status > 599) {
    return Error::invalid("respond(): not a final status: " + std::to_string(status));
  }
  Stream* stream = findStream(stream_id);
  if (stream == nullptr || !stream->visible || stream->reset_requested) {
    return Error{EPIPE, streamMessage(stream_id, "closed")};
  }
  if (stream->responded) {
    return Error::invalid(streamMessage(stream_id, "already answered"));
  }
  submitResponse(*stream, status);
  return okStatus();
}

void H2Session::resumeIfDeferred(Stream& stream) {
  if (stream.deferred && stream.can_send && !dead_) {
    stream.deferred = false;
    // INVALID_ARGUMENT only means nghttp2 had already taken the stream back; nothing to do.
    nghttp2_session_resume_data(session_, stream.id);
  }
}

Result<size_t> H2Session::send(StreamId stream_id, std::span<const uint8_t> data) {
  Stream* stream = findStream(stream_id);
  if (stream == nullptr || !stream->visible || stream->reset_requested || stream->rejected) {
    return Error{EPIPE, streamMessage(stream_id, "closed")};
  }
  if (stream->end_requested) {
    return Error{EPIPE, streamMessage(stream_id, "already ended")};
  }
  const size_t room = options_.max_send_queue_bytes - stream->queue.size();
  const size_t n = std::min(room, data.size());
  if (n < data.size()) {
    stream->write_blocked = true;
  }
  if (n > 0) {
    stream->queue.append(data.first(n));
    resumeIfDeferred(*stream);
  }
  return n;
}

Status H2Session::endStream(StreamId stream_id) {
  Stream* stream = findStream(stream_id);
  if (stream == nullptr || !stream->visible || stream->reset_requested || stream->rejected) {
    return Error{EPIPE, streamMessage(stream_id, "closed")};
  }
  if (!stream->end_requested) {
    stream->end_requested = true;
    resumeIfDeferred(*stream);
  }
  return okStatus();
}

Status H2Session::consumed(StreamId stream_id, size_t n) {
  Stream* stream = findStream(stream_id);
  return h2_common::giveBackWindow(session_, dead_, stream_id, n,
                                   stream != nullptr ? &stream->unconsumed : nullptr,
                                   closed_unconsumed_);
}

Status H2Session::resetStream(StreamId stream_id, uint32_t error_code) {
  Stream* stream = findStream(stream_id);
  if (stream == nullptr) {
    return Error{EPIPE, streamMessage(stream_id, "closed")};
  }
  if (stream->reset_requested || dead_) {
    return okStatus();
  }
  stream->reset_requested = true;
  stream->reset_code = error_code;
  stream->queue.clear();
  if (int rv = nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, error_code);
      rv != 0) {
    return Error{EPROTO, std::string("nghttp2_submit_rst_stream: ") + nghttp2_strerror(rv)};
  }
  return okStatus();
}

void H2Session::onPeerReset(StreamId id) {
  const Stream* stream = findStream(id);
  if (role_ != H2Role::kServer || options_.premature_reset_stream_count == 0 || flooded_ ||
      stream == nullptr || !stream->visible || stream->rejected) {
    // A stream we refused (an error answer, then our own RST_STREAM NO_ERROR) is the peer's
    // to cancel: its reset cost us nothing.
    return;
  }
  if (stream->responded &&
      std::chrono::steady_clock::now() - stream->opened >= options_.premature_reset_min_lifetime) {
    return;
  }
  ++stats_.premature_resets;
  const uint64_t bound =
      std::max<uint64_t>(stats_.streams_opened, options_.premature_reset_stream_count);
  if (stats_.premature_resets * 2 >= bound) {
    flood(H2Flood::kRapidReset,
          std::to_string(stats_.premature_resets) + " of " + std::to_string(stats_.streams_opened) +
              " streams reset by the peer before their answer or within " +
              std::to_string(options_.premature_reset_min_lifetime.count()) + " ms");
  }
}

void H2Session::closeStream(StreamId id, uint32_t error_code) {
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    return;
  }
  // Detach first: the owner's callback may look the stream up (and must find it closed).
  std::unique_ptr<Stream> stream = std::move(it->second);
  streams_.erase(it);
  if (stream->unconsumed > 0) {
    closed_unconsumed_[id] = stream->unconsumed;
  }
  if (stream->visible) {
    --stats_.streams_active;
    handler_.onStreamClosed(id, error_code);
  }
}

uint64_t H2Session::unconsumedBytes() const {
  uint64_t n = 0;
  for (const auto& [id, stream] : streams_) n += stream->unconsumed;
  for (const auto& [id, bytes] : closed_unconsumed_) n += bytes;
  return n;
}

size_t H2Session::queuedBytes(StreamId stream_id) const {
  const Stream* stream = findStream(stream_id);
  return stream == nullptr ? 0 : stream->queue.size();
}

}  // namespace nodemesh::hbone
