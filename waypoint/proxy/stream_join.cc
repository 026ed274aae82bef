#include "waypoint/proxy/stream_join.h"

#include <utility>

namespace nodemesh::waypoint {

StreamJoin::StreamJoin(HboneConn& down, hbone::StreamId down_stream, std::function<void()> on_done,
                       bool answered)
    : answered_(answered), on_done_(std::move(on_done)) {
  down_.join = this;
  down_.conn = &down;
  down_.stream = down_stream;
  down_.open = true;
  down.attach(down_stream, &down_);
  up_.join = this;
}

StreamJoin::~StreamJoin() {
  if (down_.open) down_.conn->detach(down_.stream);
  if (up_.open) up_.conn->detach(up_.stream);
}

void StreamJoin::connect(HboneConn& up, const std::string& authority,
                         const hbone::ConnectHeaders& headers) {
  auto stream = up.openConnect(authority, headers, &up_);
  if (!stream) return refuse(hbone::kStatusServiceUnavailable, stream.error().message);
  up_.conn = &up;
  up_.stream = *stream;
  up_.open = true;
}

void StreamJoin::prefill(std::vector<uint8_t> bytes, bool ended) {
  if (!bytes.empty()) down_.pending.push_back(std::move(bytes));
  down_.ended = ended;
}

void StreamJoin::refuse(int status, const std::string& why) {
  if (answered_) return closeBoth(hbone::kH2ConnectError, why);
  error_ = why;
  if (down_.open) {
    // The answer ends the stream (the codec resets it if the client keeps sending).
    (void)down_.conn->respond(down_.stream, status);
    down_.conn->detach(down_.stream, /*reset=*/false);
    down_.open = false;
  }
  if (up_.open) {
    up_.conn->detach(up_.stream);
    up_.open = false;
  }
  maybeDone();
}

void StreamJoin::Side::onConnectResponse(int status) {
  if (join->state_ != State::kConnecting) return;
  if (status != hbone::kStatusOk) {
    // The endpoint's agent refused (policy, no such port): the client learns the same.
    return join->refuse(status, "upstream answered " + std::to_string(status));
  }
  join->state_ = State::kOpen;
  if (!join->answered_) (void)join->down_.conn->respond(join->down_.stream, hbone::kStatusOk);
  join->pump(join->down_);  // bytes the client sent early
}

void StreamJoin::Side::onStreamData(std::span<const uint8_t> data) {
  pending.emplace_back(data.begin(), data.end());
  join->pump(*this);
}

void StreamJoin::Side::onStreamEnd() {
  ended = true;
  join->pump(*this);
}

void StreamJoin::Side::onStreamWritable() {
  join->pump(join->other(*this));
}

void StreamJoin::Side::onStreamClosed(uint32_t error_code, const std::string& why) {
  open = false;
  // Its connection may go away once the stream is closed: nothing is acknowledged on it any
  // more (HboneConn gave back what this side had not acknowledged when the stream closed).
  conn = nullptr;
  if (error_code != hbone::kH2NoError) {
    return join->closeBoth(error_code, why.empty() ? "stream reset" : why);
  }
  join->maybeDone();
}

void StreamJoin::pump(Side& from) {
  Side& to = other(from);
  if (state_ != State::kOpen || !to.open) return;
  while (!from.pending.empty()) {
    auto& chunk = from.pending.front();
    std::span<const uint8_t> rest(chunk.data() + from.pending_front_off,
                                  chunk.size() - from.pending_front_off);
    auto taken = to.conn->send(to.stream, rest);
    if (!taken) return closeBoth(hbone::kH2ConnectError, taken.error().message);
    if (*taken == 0) return;  // onStreamWritable brings us back
    if (from.conn) (void)from.conn->consumed(from.stream, *taken);
    (&from == &down_ ? totals_.to_upstream : totals_.to_downstream) += *taken;
    from.pending_front_off += *taken;
    if (from.pending_front_off == chunk.size()) {
      from.pending.pop_front();
      from.pending_front_off = 0;
    }
  }
  if (from.ended && !to.end_sent) {
    to.end_sent = true;
    (void)to.conn->endStream(to.stream);
  }
}

void StreamJoin::closeBoth(uint32_t error_code, const std::string& why) {
  if (error_.empty()) error_ = why;
  for (Side* s : {&down_, &up_}) {
    if (!s->open) continue;
    s->open = false;
    (void)s->conn->reset(s->stream,
                         error_code == hbone::kH2NoError ? hbone::kH2Cancel : error_code);
    s->conn->detach(s->stream);
  }
  maybeDone();
}

void StreamJoin::maybeDone() {
  if (state_ == State::kDone || down_.open || up_.open) return;
  state_ = State::kDone;
  if (on_done_) on_done_();
}

}  // namespace nodemesh::waypoint
