#pragma once

// What the delta xDS client reports (admin API, nodemeshctl, metrics): plain data, no gRPC, so
// the agent can read it without linking the istiod module (xds/istiod.h).

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace nodemesh::xds {

// The client's counters, declared once (Envoy's ALL_*_STATS pattern).
#define NODEMESH_ADS_COUNTERS(COUNTER)                                        \
  COUNTER(connects)    /* streams started */                                  \
  COUNTER(disconnects) /* streams that ended (error, server close or stop) */ \
  COUNTER(responses)   /* responses received, all types */                    \
  COUNTER(acks)                                                               \
  COUNTER(nacks)

struct AdsTypeStatus {
  std::string acked_version;  // system_version_info of the last ACKed response
  std::string acked_nonce;
  bool synced = false;  // an ACK of this type has been sent (readiness)
  uint64_t responses = 0;
  uint64_t acks = 0;
  uint64_t nacks = 0;
  size_t resources = 0;  // resources of this type held (accepted and not removed)
};

struct AdsNack {
  std::string type_url;
  std::string nonce;
  std::string reason;
  std::chrono::system_clock::time_point time;
};

// What operators see (admin API, nodemeshctl, metrics): a copy, consistent in itself.
struct AdsStatus {
  bool connected = false;  // a stream is open and the server has answered on it
  std::string address;
  std::string last_error;  // why the last stream ended or could not start; empty before that
#define NODEMESH_ADS_COUNTER_FIELD(name) uint64_t name = 0;
  NODEMESH_ADS_COUNTERS(NODEMESH_ADS_COUNTER_FIELD)
#undef NODEMESH_ADS_COUNTER_FIELD
  std::map<std::string, AdsTypeStatus> types;  // by type URL, every subscribed type
  std::optional<AdsNack> last_nack;
};

}  // namespace nodemesh::xds
