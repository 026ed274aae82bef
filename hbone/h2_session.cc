// H2Session's core: creating the nghttp2 session, the transport side (bytes in, frames out)
// and the connection (PING, GOAWAY).

#include "hbone/h2_session.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <utility>

#include "hbone/h2_session_internal.h"
#include "hbone/nghttp2_output.h"
#include "hbone/nghttp2_util.h"

namespace nodemesh::hbone {

namespace {

using h2_common::kDefaultWindow;
using h2_common::kMaxWindow;

}  // namespace

H2Session::H2Session(H2Role role, H2Handler& handler, const H2Options& options)
    : role_(role), handler_(handler), options_(options), out_(options.output_batch_bytes) {}

H2Session::~H2Session() {
  nghttp2_session_del(session_);
}

Result<std::unique_ptr<H2Session>> H2Session::create(H2Role role, H2Handler& handler,
                                                     const H2Options& options) {
  if (options.initial_stream_window > kMaxWindow || options.connection_window > kMaxWindow ||
      options.connection_window < kDefaultWindow || options.max_send_queue_bytes == 0 ||
      options.output_batch_bytes == 0 ||
      options.max_pending_output_bytes < options.output_batch_bytes) {
    return Error::invalid("HTTP/2 options out of range");
  }
  // The constructor is private (the session must stay at one address: nghttp2 holds `this`),
  // so make_unique cannot reach it.
  std::unique_ptr<H2Session> session(new H2Session(role, handler, options));
  Status status = session->init();
  if (!status.ok()) {
    return status.error();
  }
  return session;
}

Status H2Session::init() {
  Result<h2_common::CallbacksPtr> cbs = h2_common::newCallbacks<Callbacks>();
  if (!cbs.ok()) {
    return cbs.error();
  }
  const h2_common::SessionLimits limits{
      .server = role_ == H2Role::kServer,
      .initial_stream_window = options_.initial_stream_window,
      .connection_window = options_.connection_window,
      .max_header_list_bytes = options_.max_header_list_bytes,
      .max_concurrent_streams = options_.max_concurrent_streams,
  };
  Result<h2_common::OptionPtr> option = h2_common::newOptions(limits);
  if (!option.ok()) {
    return option.error();
  }
  // nghttp2's own rapid-reset guard (burst 1,000, then 33/s) counts every RST_STREAM a server
  // receives, answered streams included, and ends the connection with INTERNAL_ERROR. The
  // client agent cancels each stream refused with 503 (an application that stopped accepting),
  // so a burst of refusals would reset every healthy tunnel sharing the connection. The
  // premature-reset rule (onPeerReset) guards against rapid reset instead; this bucket never
  // runs dry.
  nghttp2_option_set_stream_reset_rate_limit(option->get(), uint64_t{1} << 40, uint64_t{1} << 20);
  return h2_common::newSession(&session_, limits, cbs->get(), option->get(), this);
}

H2Session::Stream* H2Session::findStream(StreamId id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

const H2Session::Stream* H2Session::findStream(StreamId id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void H2Session::fail(std::string message) {
  if (!failed_) {
    failed_ = true;
    error_ = std::move(message);
  }
}

Error H2Session::sessionError() const {
  return Error{EPROTO, error_.empty() ? "HTTP/2 session closed" : error_};
}

// ---- transport side ----

Status H2Session::receive(std::span<const uint8_t> data) {
  if (depth_ > 0) {
    return Error{EDEADLK, "H2Session::receive() called from a handler callback"};
  }
  if (dead_ || failed_) {
    return sessionError();
  }
  ++depth_;
  const ssize_t rv = nghttp2_session_mem_recv(session_, data.data(), data.size());
  --depth_;
  if (rv == NGHTTP2_ERR_FLOODED) {
    // More ACKs than nghttp2 keeps (1,000) wait behind output the peer does not read.
    dead_ = true;
    flood(H2Flood::kControlFrames, "more than 1000 PING/SETTINGS ACKs unread by the peer");
    return sessionError();
  }
  if (rv < 0) {
    // Fatal for nghttp2 (bad client preface, callback failure): the session must not
    // be used any more; whatever is already in out_ may still be written.
    std::string message = std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(rv));
    if (!last_invalid_.empty()) {
      message += ": " + last_invalid_;
    }
    fail(std::move(message));
    dead_ = true;
    return sessionError();
  }
  fillOutput(/*for_receive=*/true);
  // Output beyond max_pending_output_bytes stays inside nghttp2. Its own bound counts only
  // PING and SETTINGS ACKs; resets (refused streams, invalid frames) and error responses are
  // bounded here.
  if (!failed_ && out_.size() >= options_.max_pending_output_bytes &&
      nghttp2_session_get_outbound_queue_size(session_) > options_.max_queued_frames) {
    flood(H2Flood::kControlFrames,
          std::to_string(nghttp2_session_get_outbound_queue_size(session_)) +
              " frames queued behind " + std::to_string(out_.size()) +
              " bytes of output unread by the peer");
  }
  if (failed_) {
    return sessionError();
  }
  return okStatus();
}

void H2Session::flood(H2Flood kind, const std::string& detail) {
  if (flooded_) {
    return;
  }
  flooded_ = true;
  if (dead_) {
    h2_common::appendGoaway(out_, nghttp2_session_get_last_proc_stream_id(session_),
                            kH2EnhanceYourCalm);
  } else {
    // Queued ahead of other frames; nghttp2 reads nothing more from the peer.
    (void)nghttp2_session_terminate_session(session_, kH2EnhanceYourCalm);
  }
  fail("HTTP/2 flood: " + detail + ": sent GOAWAY ENHANCE_YOUR_CALM");
  handler_.onFlood(kind, detail);
}

void H2Session::fillOutput(bool for_receive) {
  if (dead_ || depth_ > 0) {
    return;
  }
  ++depth_;
  last_frame_was_data_ = false;
  const h2_common::OutputBatching batching{
      .batch_bytes = options_.output_batch_bytes,
      .max_pending_bytes = options_.max_pending_output_bytes,
  };
  if (int err = h2_common::pullFrames(session_, out_, batching, for_receive, last_frame_was_data_);
      err != 0) {
    fail(std::string("HTTP/2 send: ") + nghttp2_strerror(err));
    dead_ = true;
  }
  --depth_;
  // Outside nghttp2 now, so the owner may send() from onWritable.
  std::vector<StreamId> writable;
  writable.swap(writable_);
  for (StreamId id : writable) {
    const Stream* stream = findStream(id);
    if (stream != nullptr && !stream->end_requested && !stream->reset_requested) {
      handler_.onWritable(id);
    }
  }
}

std::span<const uint8_t> H2Session::pendingOutput() {
  if (out_.size() < options_.output_batch_bytes) {
    fillOutput(/*for_receive=*/false);
  }
  return out_.front();
}

void H2Session::consumeOutput(size_t n) {
  out_.drop(n);
}

bool H2Session::wantsWrite() const {
  return !out_.empty() || (!dead_ && nghttp2_session_want_write(session_) != 0);
}

bool H2Session::wantsRead() const {
  return !dead_ && !failed_ && nghttp2_session_want_read(session_) != 0;
}

bool H2Session::isClosed() const {
  if (!out_.empty()) {
    return false;
  }
  return dead_ ||
         (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0);
}

// ---- connection ----

Result<uint64_t> H2Session::ping() {
  if (dead_ || failed_) {
    return sessionError();
  }
  const uint64_t opaque = ++next_ping_;
  const std::array<uint8_t, 8> payload = h2_common::pingPayload(opaque);
  if (int rv = nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, payload.data()); rv != 0) {
    return Error{EPROTO, std::string("nghttp2_submit_ping: ") + nghttp2_strerror(rv)};
  }
  return opaque;
}

Status H2Session::shutdownNotice() {
  if (dead_ || failed_) {
    return sessionError();
  }
  if (goaway_sent_) {
    return okStatus();
  }
  if (const int rv = nghttp2_submit_shutdown_notice(session_); rv != 0) {
    return Error{EPROTO, std::string("GOAWAY (shutdown notice): ") + nghttp2_strerror(rv)};
  }
  return okStatus();
}

Status H2Session::goaway(uint32_t error_code) {
  if (dead_ || failed_) {
    return sessionError();
  }
  if (goaway_sent_) {
    return okStatus();
  }
  goaway_sent_ = true;
  owner_goaway_code_ = error_code;
  // NO_ERROR: graceful, the active streams finish. Otherwise nghttp2 stops reading once the
  // GOAWAY is out.
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

}  // namespace nodemesh::hbone
