#pragma once

// Service load balancing and connect failure recovery for the tunnel: for a connection to a
// service VIP:port, pick one of the service's workload endpoints, and learn from how connects
// to each endpoint go (active connections, connect latency, consecutive failures, outlier
// ejection). docs/tunnel.md ("Load balancing and failure recovery") describes the algorithm.
//
// Pure and single-threaded: no I/O, no clock (every call that needs the time takes `now`), no
// locks. Each io_uring worker owns one EndpointPicker; it is NOT thread-safe, and what one worker
// learns about an endpoint stays in that worker.

#include <chrono>
#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "model/service.h"
#include "model/snapshot.h"
#include "model/workload.h"

namespace nodemesh::tunnel::lb {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

struct LbOptions {
  // Connect attempts per client connection: the first and its retries, each on an endpoint not
  // tried yet. The tunnel counts them (it passes the tried workloads to pick()).
  unsigned max_attempts = 3;
  // A connect that has not completed after this counts as failed (ztunnel: a fixed 10 s). The
  // tunnel arms the timer; the picker lets a new probe through when a probe's outcome is older.
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);

  // Outlier ejection: after this many consecutive connect failures an endpoint is ejected for
  // base_ejection * 2^(n-1), where n counts its ejections since its last successful connect,
  // capped at max_ejection.
  unsigned eject_after_failures = 3;
  std::chrono::milliseconds base_ejection = std::chrono::seconds(5);
  std::chrono::milliseconds max_ejection = std::chrono::minutes(5);

  // Peak-EWMA of connect latency (Finagle, Linkerd): a sample above the estimate replaces it, a
  // lower one pulls it down with weight 1 - e^(-dt/latency_decay), dt the time since the previous
  // sample, but at least latency_sample_weight; an estimate no sample refreshes fades toward zero
  // with the same time constant. The minimum weight is ours: with the time weight alone, one
  // slow connect (a scheduling hiccup) would cost its endpoint most of its share for ~2 decay
  // times (20 s), however many connections it serves meanwhile; with it, about a dozen samples.
  std::chrono::milliseconds latency_decay = std::chrono::seconds(10);
  double latency_sample_weight = 0.2;
  // The estimate of an endpoint that has no sample yet.
  // 0: an endpoint nothing is known about yet looks as fast as the fastest, so it gets
  // connections and samples (a pessimistic guess would starve it of both for good).
  std::chrono::nanoseconds initial_latency{0};
  // Added to every estimate before comparing, and estimates within latency_tolerance of each other
  // count as equal: connect latencies inside one cluster differ by tens of microseconds from noise
  // alone, and without this the endpoint that happened to measure fastest would win every draw.
  std::chrono::nanoseconds latency_floor = std::chrono::milliseconds(5);
  double latency_tolerance = 0.25;

  // Seeds the picker's PRNG (std::mt19937_64); 0 takes a seed from std::random_device. Give every
  // worker a different one, or none.
  uint64_t seed = 0;
};

// Outlier detection on responses (Envoy's consecutive_5xx and consecutive_gateway_failure, as an
// Istio DestinationRule's outlierDetection configures them), for a proxy that sees HTTP status
// codes (the waypoint). Independent of the connect-failure ejection above: the node agent never
// reports responses, so its behaviour does not change.
struct OutlierPolicy {
  uint32_t consecutive_5xx = 0;      // any 5xx; 0: off
  uint32_t consecutive_gateway = 0;  // 502, 503, 504; 0: off
  // An endpoint that stays in lowers its ejection count by one per interval (Envoy).
  std::chrono::milliseconds interval = std::chrono::seconds(10);
  // The n-th ejection in a row lasts base_ejection * n, at most max_ejection (Envoy's
  // max_ejection_time default; Istio does not set it).
  std::chrono::milliseconds base_ejection = std::chrono::seconds(30);
  std::chrono::milliseconds max_ejection = std::chrono::seconds(300);
  // No ejection while this share of the service's endpoints is ejected already (so one endpoint
  // can always be ejected, as in Envoy before always_eject_one_host).
  uint32_t max_ejection_percent = 10;
  // Below this share of endpoints not ejected, pick() ignores the outlier ejections (Envoy's
  // panic threshold); 0 never does, and a service whose endpoints are all ejected gets none.
  uint32_t min_health_percent = 0;
};

// What a response report did.
struct OutlierVerdict {
  enum class Kind { kNone, kEjected, kCapped };  // kCapped: max_ejection_percent said no
  Kind kind = Kind::kNone;
  std::string_view cause;  // "consecutive 5xx" or "consecutive gateway errors"
  uint32_t errors = 0;     // the consecutive errors that counted
  uint32_t ejections = 0;  // the endpoint's ejection count (the multiplier), when ejected
  std::chrono::milliseconds duration{0};
  size_t ejected = 0;  // the service's endpoints ejected before this one
};

// Where the client is, for Istio's routing preferences (LoadBalancing.routingPreference).
struct ClientLocality {
  std::string network;
  std::string cluster;
  std::string region;
  std::string zone;
  std::string subzone;
  std::string node;

  // The client workload's locality. The client runs on this node: `this_node`, when not empty,
  // is its node.
  static ClientLocality of(const model::Workload& client, std::string_view this_node = {});
};

// An endpoint as the picker keeps state for it: a workload and the target port it was picked on
// (a workload that backs two services may refuse on one port and accept on the other).
struct EndpointId {
  std::string workload_uid;
  uint16_t port = 0;

  auto operator<=>(const EndpointId&) const = default;
};

struct Pick {
  const model::Workload* workload = nullptr;  // points into the snapshot given to pick()
  EndpointId endpoint;                        // report the outcome of the connect with this
  std::string reason;  // why this endpoint, for logs and nodemeshctl ("p2c: a (...) over b (...)")
};

// One endpoint's state, for metrics and nodemeshctl.
struct EndpointStats {
  EndpointId endpoint;
  uint32_t active = 0;                     // connects in flight + established connections
  std::chrono::nanoseconds latency{0};     // the current connect latency estimate
  bool measured = false;                   // latency comes from samples (else initial_latency)
  uint32_t consecutive_failures = 0;       // connect failures since the last success
  uint32_t ejection_streak = 0;            // ejections since the last success: sets the back-off
  uint64_t ejections_total = 0;            // every ejection
  std::optional<TimePoint> ejected_until;  // set while ejected
  bool probation = false;  // the ejection ended; one connect at a time until one succeeds
  uint64_t connects_total = 0;
  uint64_t failures_total = 0;
  std::optional<TimePoint> outlier_ejected_until;  // set while ejected for its responses
  uint32_t outlier_ejections = 0;                  // the outlier ejection multiplier
};

class EndpointPicker {
 public:
  explicit EndpointPicker(LbOptions options = {});

  const LbOptions& options() const { return options_; }

  // The endpoint for a new connection to `service` on `service_port`. Candidates: the service's
  // endpoints (Snapshot::endpoints) whose workload exists, has an address, serves the port (the
  // endpoint's own port map first, else the service's target port), is healthy (unless the
  // service's health policy is AllowAll) and is not in `exclude_uids` (the workloads this
  // connection already tried). STRICT keeps only those matching every routing preference;
  // FAILOVER keeps those matching the longest prefix of them. Ejected endpoints are skipped unless
  // all candidates are ejected. Among the rest: power of two choices, weighted by capacity.
  // Errors: EINVAL when the service has no such port or is PASSTHROUGH (the tunnel then connects
  // to the original destination itself), EHOSTUNREACH when no endpoint is left, with the reasons.
  // With `outlier` (the service's outlier policy), endpoints ejected for their responses are
  // skipped as the policy's min_health_percent says.
  Result<Pick> pick(const model::Snapshot& snapshot, const model::Service& service,
                    uint16_t service_port, const ClientLocality& client,
                    std::span<const std::string> exclude_uids, TimePoint now,
                    const OutlierPolicy* outlier = nullptr);

  // Outcome reports. Every connectStarted() is followed by exactly one connectSucceeded() or
  // connectFailed() (a timeout is a failure), and every connectSucceeded() by one
  // connectionClosed(). Reports for endpoints the picker does not know are accepted.
  void connectStarted(const EndpointId& endpoint, TimePoint now);
  void connectSucceeded(const EndpointId& endpoint, std::chrono::nanoseconds latency,
                        TimePoint now);
  void connectFailed(const EndpointId& endpoint, TimePoint now);
  void connectionClosed(const EndpointId& endpoint);

  // The HTTP status of a response `endpoint` gave to a request of the service `cluster` (its
  // key; `cluster_size` endpoints), under that service's outlier policy. Counts consecutive
  // 5xx and gateway errors, and ejects the endpoint when a count reaches its threshold. Reports
  // of an endpoint ejected already count for nothing. Independent of the connect outcomes.
  OutlierVerdict responseReceived(const EndpointId& endpoint, int status,
                                  const OutlierPolicy& policy, std::string_view cluster,
                                  size_t cluster_size, TimePoint now);

  // Every endpoint the picker has state for, ordered by EndpointId.
  std::vector<EndpointStats> stats(TimePoint now) const;
  // Drops the state of endpoints with no active connection and no event for longer than both
  // max_ejection and 10 * latency_decay (removed workloads). Call it now and then, e.g. with
  // connection pool maintenance.
  void prune(TimePoint now);

 private:
  struct State {
    uint32_t active = 0;
    double latency_ns = 0;  // peak-EWMA at latency_at
    TimePoint latency_at;
    bool measured = false;
    uint32_t consecutive_failures = 0;
    uint32_t ejection_streak = 0;
    TimePoint ejected_until;
    bool probe_in_flight = false;
    TimePoint probe_started;
    TimePoint last_event;
    uint64_t ejections_total = 0;
    uint64_t connects_total = 0;
    uint64_t failures_total = 0;
    // Outlier detection on responses (responseReceived).
    uint32_t consecutive_5xx = 0;
    uint32_t consecutive_gateway = 0;
    uint32_t outlier_ejections = 0;  // the multiplier; lowered one per interval spent in
    TimePoint outlier_ejected_until;
    TimePoint outlier_decay_at;   // the multiplier was last lowered (or the ejection ended)
    std::string outlier_cluster;  // the service it was ejected from
  };
  struct Candidate {
    const model::Workload* workload;
    uint16_t port;
    unsigned rank;  // routing preferences matched (FAILOVER)
    bool usable;    // not ejected, no probe in flight
    bool outlier;   // ejected for its responses (and for nothing else)
    State* state;   // nullptr: nothing known yet
  };
  // Lookup by (uid, port) without building an EndpointId.
  struct KeyView {
    std::string_view workload_uid;
    uint16_t port;
  };
  struct KeyLess {
    using is_transparent = void;  // NOLINT(readability-identifier-naming): the std:: protocol
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return std::pair<std::string_view, uint16_t>(a.workload_uid, a.port) <
             std::pair<std::string_view, uint16_t>(b.workload_uid, b.port);
    }
  };

  State& state(const EndpointId& endpoint, TimePoint now);
  State* findState(std::string_view uid, uint16_t port);
  bool usable(const State& s, TimePoint now) const;
  double latencyEstimate(const State* s, TimePoint now) const;
  // An index into the group choose() is drawing from, with probability by cumulative_.
  size_t draw();
  Pick choose(const std::vector<const Candidate*>& group, TimePoint now);

  LbOptions options_;
  std::mt19937_64 rng_;
  std::map<EndpointId, State, KeyLess> states_;
  // Scratch space reused by pick(), so a pick does not allocate for them.
  std::vector<Candidate> candidates_;
  std::vector<const Candidate*> group_;
  std::vector<uint64_t> cumulative_;
};

}  // namespace nodemesh::tunnel::lb
