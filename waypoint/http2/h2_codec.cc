// H2Codec's core: creating the nghttp2 session with the flood limits, the transport side (bytes
// in, frames out), connection-level failures and the connection (PING, GOAWAY).

#include "waypoint/http2/h2_codec.h"

#include <nghttp2/nghttp2.h>

#include <array>
#include <cerrno>
#include <utility>

#include "hbone/nghttp2_output.h"
#include "hbone/nghttp2_util.h"
#include "waypoint/http2/h2_codec_internal.h"

namespace nodemesh::waypoint::http2 {

namespace {

using hbone::h2ErrorName;
using hbone::kH2EnhanceYourCalm;
using hbone::kH2InternalError;
using hbone::kH2NoError;
using hbone::kH2ProtocolError;

using hbone::h2_common::appendGoaway;
using hbone::h2_common::kDefaultWindow;
using hbone::h2_common::kMaxWindow;

}  // namespace

H2Codec::H2Codec(Role role, H2CodecHandler& handler, const H2CodecOptions& options)
    : role_(role), handler_(handler), options_(options), out_(options.output_batch_bytes) {}

H2Codec::~H2Codec() {
  nghttp2_session_del(session_);
}

Result<std::unique_ptr<H2Codec>> H2Codec::create(Role role, H2CodecHandler& handler,
                                                 const H2CodecOptions& options) {
  if (options.initial_stream_window > kMaxWindow || options.connection_window > kMaxWindow ||
      options.connection_window < kDefaultWindow || options.max_send_queue_bytes == 0 ||
      options.max_send_queue_total_bytes < options.max_send_queue_bytes ||
      options.output_batch_bytes == 0 ||
      options.max_pending_output_bytes < options.output_batch_bytes ||
      options.max_header_list_bytes == 0 || options.max_concurrent_streams == 0) {
    return Error::invalid("HTTP/2 codec options out of range");
  }
  // Private constructor: the codec must stay at one address (nghttp2 holds `this`).
  std::unique_ptr<H2Codec> codec(new H2Codec(role, handler, options));
  if (Status status = codec->init(); !status.ok()) {
    return status.error();
  }
  return codec;
}

Status H2Codec::init() {
  Result<hbone::h2_common::CallbacksPtr> cbs = hbone::h2_common::newCallbacks<Callbacks>();
  if (!cbs.ok()) {
    return cbs.error();
  }
  const hbone::h2_common::SessionLimits limits{
      .server = role_ == Role::kServer,
      .initial_stream_window = options_.initial_stream_window,
      .connection_window = options_.connection_window,
      .max_header_list_bytes = options_.max_header_list_bytes,
      .max_concurrent_streams = options_.max_concurrent_streams,
  };
  Result<hbone::h2_common::OptionPtr> option = hbone::h2_common::newOptions(limits);
  if (!option.ok()) {
    return option.error();
  }
  // Flood bounds nghttp2 enforces itself (Debian's 1.52.0-1+deb12u3 carries the backported
  // CVE-2023-44487 and CVE-2024-28182 options).
  nghttp2_option_set_max_continuations(option->get(), options_.max_continuations);
  nghttp2_option_set_max_outbound_ack(option->get(), options_.max_outbound_ack);
  nghttp2_option_set_max_settings(option->get(), options_.max_settings_entries);
  nghttp2_option_set_stream_reset_rate_limit(option->get(), options_.reset_rate_burst,
                                             options_.reset_rate_per_second);
  // No RFC 7540 priority tree: closed streams need not be kept for it.
  nghttp2_option_set_no_closed_streams(option->get(), 1);

  if (Status status =
          hbone::h2_common::newSession(&session_, limits, cbs->get(), option->get(), this);
      !status.ok()) {
    return status;
  }
  // The preface goes into out_ at once, so that a GOAWAY written by hand after a fatal error
  // never precedes our SETTINGS (RFC 9113 §3.4).
  fillOutput(/*for_receive=*/false);
  return okStatus();
}

H2Codec::Stream* H2Codec::findStream(StreamId id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

const H2Codec::Stream* H2Codec::findStream(StreamId id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

Clock::time_point H2Codec::now() const {
  return options_.now ? options_.now() : Clock::now();
}

void H2Codec::fail(std::string message) {
  if (!failed_) {
    failed_ = true;
    error_ = std::move(message);
  }
}

Error H2Codec::sessionError() const {
  return Error{EPROTO, error_.empty() ? "HTTP/2 connection closed" : error_};
}

void H2Codec::terminate(uint32_t error_code, const std::string& message) {
  if (failed_ || dead_) {
    return;
  }
  fail("HTTP/2 connection error, sent GOAWAY " + std::string(h2ErrorName(error_code)) + ": " +
       message);
  goaway_sent_ = true;
  // Stops reading and closes the connection once the GOAWAY is written.
  nghttp2_session_terminate_session(session_, error_code);
}

void H2Codec::countPrematureReset() {
  ++stats_.premature_resets;
  const Clock::time_point t = now();
  if (window_resets_ == 0 || t - window_start_ >= options_.premature_reset_window) {
    window_start_ = t;
    window_resets_ = 0;
  }
  if (++window_resets_ > options_.premature_reset_limit) {
    // CVE-2023-44487: each reset stream cost us a request (routing, an upstream stream) while
    // the peer stays under SETTINGS_MAX_CONCURRENT_STREAMS.
    terminate(kH2EnhanceYourCalm, "rapid reset: more than " +
                                      std::to_string(options_.premature_reset_limit) +
                                      " streams reset before their response");
  }
}

// ---- transport side ----

Status H2Codec::receive(std::span<const uint8_t> data) {
  if (depth_ > 0) {
    return Error{EDEADLK, "H2Codec::receive() called from a handler callback"};
  }
  if (dead_ || failed_) {
    return sessionError();
  }
  ++depth_;
  const ssize_t rv = nghttp2_session_mem_recv(session_, data.data(), data.size());
  --depth_;
  if (rv < 0) {
    const auto err = static_cast<int>(rv);
    std::string message = std::string("HTTP/2: ") + nghttp2_strerror(err);
    if (!last_invalid_.empty()) {
      message += ": " + last_invalid_;
    }
    fail(std::move(message));
    dead_ = true;
    if (err == NGHTTP2_ERR_FLOODED || err == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
      appendGoaway(out_, nghttp2_session_get_last_proc_stream_id(session_), kH2EnhanceYourCalm);
    } else if (err != NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
      // Not for a peer that does not speak HTTP/2 at all (RFC 9113 §3.4: GOAWAY MAY be
      // omitted).
      appendGoaway(out_, nghttp2_session_get_last_proc_stream_id(session_),
                   err == NGHTTP2_ERR_NOMEM ? kH2InternalError : kH2ProtocolError);
    }
    return sessionError();
  }
  fillOutput(/*for_receive=*/true);
  if (failed_) {
    return sessionError();
  }
  return okStatus();
}

void H2Codec::fillOutput(bool for_receive) {
  if (dead_ || depth_ > 0) {
    return;
  }
  ++depth_;
  last_frame_was_data_ = false;
  // After receive(), control frames (ACKs, resets, a GOAWAY) are pulled past one batch, but not
  // without bound: what the owner has not written stays inside nghttp2, where max_outbound_ack
  // catches a PING/SETTINGS flood.
  const hbone::h2_common::OutputBatching batching{
      .batch_bytes = options_.output_batch_bytes,
      .max_pending_bytes = options_.max_pending_output_bytes,
  };
  if (int err =
          hbone::h2_common::pullFrames(session_, out_, batching, for_receive, last_frame_was_data_);
      err != 0) {
    fail(std::string("HTTP/2 send: ") + nghttp2_strerror(err));
    dead_ = true;
  }
  --depth_;
  if (!total_blocked_.empty() && total_queued_ <= options_.max_send_queue_total_bytes / 2) {
    for (StreamId id : total_blocked_) {
      if (Stream* stream = findStream(id); stream != nullptr && stream->total_blocked) {
        stream->total_blocked = false;
        writable_.push_back(id);
      }
    }
    total_blocked_.clear();
  }
  // Outside nghttp2 now, so the owner may sendData() from onWritable.
  std::vector<StreamId> writable;
  writable.swap(writable_);
  for (StreamId id : writable) {
    const Stream* stream = findStream(id);
    if (stream != nullptr && !stream->end_requested && !stream->reset_requested) {
      handler_.onWritable(id);
    }
  }
}

std::span<const uint8_t> H2Codec::pendingOutput() {
  if (out_.size() < options_.output_batch_bytes) {
    fillOutput(/*for_receive=*/false);
  }
  return out_.front();
}

void H2Codec::consumeOutput(size_t n) {
  out_.drop(n);
}

bool H2Codec::wantsWrite() const {
  return !out_.empty() || (!dead_ && nghttp2_session_want_write(session_) != 0);
}

bool H2Codec::wantsRead() const {
  return !dead_ && !failed_ && nghttp2_session_want_read(session_) != 0;
}

bool H2Codec::isClosed() const {
  if (!out_.empty()) {
    return false;
  }
  return dead_ ||
         (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0);
}

// ---- connection ----

Result<uint64_t> H2Codec::ping() {
  if (dead_ || failed_) {
    return sessionError();
  }
  const uint64_t opaque = ++next_ping_;
  const std::array<uint8_t, 8> payload = hbone::h2_common::pingPayload(opaque);
  if (int rv = nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, payload.data()); rv != 0) {
    return Error{EPROTO, std::string("nghttp2_submit_ping: ") + nghttp2_strerror(rv)};
  }
  return opaque;
}

Status H2Codec::goaway(uint32_t error_code) {
  if (dead_ || failed_) {
    return sessionError();
  }
  if (goaway_sent_) {
    return okStatus();
  }
  goaway_sent_ = true;
  owner_goaway_code_ = error_code;
  // NO_ERROR: graceful, streams the peer opened so far finish (RFC 9113 §6.8).
  const int rv = error_code == kH2NoError
                     ? nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                                             nghttp2_session_get_last_proc_stream_id(session_),
                                             error_code, nullptr, 0)
                     : nghttp2_session_terminate_session(session_, error_code);
  if (rv != 0) {
    return Error{EPROTO, std::string("GOAWAY: ") + nghttp2_strerror(rv)};
  }
  return okStatus();
}

}  // namespace nodemesh::waypoint::http2
