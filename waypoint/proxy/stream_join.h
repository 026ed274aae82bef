#pragma once

// Two HBONE streams joined byte for byte: the waypoint's TCP passthrough (a connection it does
// not parse: non-HTTP traffic to a service with a waypoint, as Istio's waypoint passes it on
// with L4 policy only). The downstream stream is a CONNECT from a node agent, the upstream one
// a CONNECT this waypoint opened to the chosen endpoint's 15008.
//
// Flow control is end to end: bytes read on one stream are acknowledged (consumed()) only
// when the other stream took them, so neither side holds more than an HTTP/2 window.

#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "waypoint/proxy/hbone_conn.h"

namespace nodemesh::waypoint {

class StreamJoin {
 public:
  enum class State {
    kConnecting,  // the upstream CONNECT is out, its answer not in
    kOpen,        // bytes flow both ways
    kDone,        // both streams closed or detached: the owner may free it
  };

  struct Totals {
    uint64_t to_upstream = 0;
    uint64_t to_downstream = 0;
  };

  // `on_done` runs once, when the join reaches kDone (the owner frees it after the batch).
  // `answered`: the downstream CONNECT was already answered 200 (the waypoint read the first
  // bytes to detect the protocol); an upstream failure then resets it instead.
  StreamJoin(HboneConn& down, hbone::StreamId down_stream, std::function<void()> on_done,
             bool answered = false);
  ~StreamJoin();
  StreamJoin(const StreamJoin&) = delete;
  StreamJoin& operator=(const StreamJoin&) = delete;

  // Opens the upstream CONNECT `authority` on `up` (may fail: then the downstream is answered
  // 503 and the join is done).
  void connect(HboneConn& up, const std::string& authority, const hbone::ConnectHeaders& headers);
  // Answers the downstream CONNECT with `status` without an upstream (and is done).
  void refuse(int status, const std::string& why);
  // Bytes already read from the downstream stream (not yet acknowledged), and whether the
  // client already half-closed; before connect().
  void prefill(std::vector<uint8_t> bytes, bool ended);

  State state() const { return state_; }
  const Totals& totals() const { return totals_; }
  const std::string& error() const { return error_; }

 private:
  // One of the two streams.
  struct Side final : StreamOwner {
    StreamJoin* join = nullptr;
    HboneConn* conn = nullptr;
    hbone::StreamId stream = 0;
    bool open = false;      // attached, not yet closed
    bool ended = false;     // the peer half-closed; end the other side once pending is out
    bool end_sent = false;  // we half-closed it
    std::deque<std::vector<uint8_t>> pending;  // read here, not yet taken by the other side
    size_t pending_front_off = 0;

    void onConnectResponse(int status) override;
    void onStreamData(std::span<const uint8_t> data) override;
    void onStreamEnd() override;
    void onStreamWritable() override;
    void onStreamClosed(uint32_t error_code, const std::string& why) override;
  };

  Side& other(Side& s) { return &s == &down_ ? up_ : down_; }
  // Moves what `from` holds to the other side; acknowledges what was taken.
  void pump(Side& from);
  void closeBoth(uint32_t error_code, const std::string& why);
  void maybeDone();

  State state_ = State::kConnecting;
  bool answered_ = false;
  Side down_;
  Side up_;
  Totals totals_;
  std::string error_;
  std::function<void()> on_done_;
};

}  // namespace nodemesh::waypoint
