#include "tunnel/lb/endpoint_picker.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>

namespace nodemesh::tunnel::lb {
namespace {

using model::LoadBalancingMode;
using model::LoadBalancingScope;

double toNanos(std::chrono::nanoseconds d) {
  return static_cast<double>(d.count());
}

// Elapsed time in nanoseconds, never negative (reports may arrive with a slightly older `now`).
double elapsedNanos(TimePoint from, TimePoint to) {
  return to > from ? toNanos(to - from) : 0.0;
}

bool matches(LoadBalancingScope scope, const ClientLocality& client, const model::Workload& w) {
  switch (scope) {
    case LoadBalancingScope::Region:
      return client.region == w.locality.region;
    case LoadBalancingScope::Zone:
      return client.zone == w.locality.zone;
    case LoadBalancingScope::Subzone:
      return client.subzone == w.locality.subzone;
    case LoadBalancingScope::Node:
      return client.node == w.node;
    case LoadBalancingScope::Cluster:
      return client.cluster == w.cluster_id;
    case LoadBalancingScope::Network:
      return client.network == w.network;
  }
  return false;
}

// How many routing preferences the workload matches, in order, up to the first it does not:
// ztunnel's rank. [Network, Region, Zone] against a workload in the client's network and region
// but another zone is 2.
unsigned matchedPreferences(const std::vector<LoadBalancingScope>& preferences,
                            const ClientLocality& client, const model::Workload& w) {
  unsigned n = 0;
  for (LoadBalancingScope scope : preferences) {
    if (!matches(scope, client, w)) break;
    ++n;
  }
  return n;
}

std::string scopeList(const std::vector<LoadBalancingScope>& scopes, size_t count) {
  std::string out;
  for (size_t i = 0; i < count && i < scopes.size(); ++i) {
    if (!out.empty()) out += ", ";
    out += model::toString(scopes[i]);
  }
  return out;
}

// The target port for `service_port` on this endpoint: the endpoint's own mapping first, then the
// service's (0 there means "each endpoint says"). 0 when the endpoint cannot serve the port.
uint16_t targetPort(const model::Endpoint& ep, uint16_t service_port, uint16_t service_target) {
  auto it = ep.ports.find(service_port);
  if (it != ep.ports.end() && it->second != 0) return it->second;
  return service_target;
}

std::string displayName(const model::Workload& w) {
  return w.name.empty() ? w.uid : w.name;
}

std::string formatLatency(double ns) {
  return fmt::format("{:.2f}ms", ns / 1e6);
}

// Why endpoints were left out, for the error when none is left.
struct Skipped {
  unsigned unknown_workload = 0;
  unsigned no_port = 0;
  unsigned unhealthy = 0;
  unsigned no_address = 0;
  unsigned tried = 0;
  unsigned strict_mismatch = 0;

  std::string describe(const std::vector<LoadBalancingScope>& preferences) const {
    std::vector<std::string> parts;
    auto add = [&parts](unsigned n, std::string_view what) {
      if (n > 0) parts.push_back(fmt::format("{} {}", n, what));
    };
    add(unhealthy, "unhealthy");
    add(strict_mismatch, "outside the STRICT routing preference [" +
                             scopeList(preferences, preferences.size()) + "]");
    add(tried, "already tried");
    add(no_port, "not serving the port");
    add(no_address, "without an address");
    add(unknown_workload, "with an unknown workload");
    return fmt::format("{}", fmt::join(parts, ", "));
  }
};

}  // namespace

ClientLocality ClientLocality::of(const model::Workload& client, std::string_view this_node) {
  ClientLocality c;
  c.network = client.network;
  c.cluster = client.cluster_id;
  c.region = client.locality.region;
  c.zone = client.locality.zone;
  c.subzone = client.locality.subzone;
  c.node = this_node.empty() ? client.node : std::string(this_node);
  return c;
}

EndpointPicker::EndpointPicker(LbOptions options)
    : options_(options), rng_(options.seed != 0 ? options.seed : std::random_device{}()) {}

Result<Pick> EndpointPicker::pick(const model::Snapshot& snapshot, const model::Service& service,
                                  uint16_t service_port, const ClientLocality& client,
                                  std::span<const std::string> exclude_uids, TimePoint now,
                                  const OutlierPolicy* outlier) {
  const model::LoadBalancing* lb = service.load_balancing ? &*service.load_balancing : nullptr;
  const LoadBalancingMode mode = lb != nullptr ? lb->mode : LoadBalancingMode::UnspecifiedMode;
  static const std::vector<LoadBalancingScope> kNoPreferences;
  const std::vector<LoadBalancingScope>& preferences =
      lb != nullptr ? lb->routing_preference : kNoPreferences;
  const bool ranked = mode == LoadBalancingMode::Strict || mode == LoadBalancingMode::Failover;
  const bool allow_unhealthy =
      lb != nullptr && lb->health_policy == model::LoadBalancingHealthPolicy::AllowAll;

  if (mode == LoadBalancingMode::Passthrough) {
    return Error{EINVAL, fmt::format("service {} is PASSTHROUGH: no endpoint to pick, connect to "
                                     "the original destination",
                                     service.key())};
  }
  auto service_target = service.ports.find(service_port);
  if (service_target == service.ports.end()) {
    return Error{EINVAL, fmt::format("service {} has no port {}", service.key(), service_port)};
  }

  candidates_.clear();
  Skipped skipped;
  const std::vector<model::Endpoint> endpoints = snapshot.endpoints(service);
  for (const model::Endpoint& ep : endpoints) {
    const model::Workload* w = snapshot.workloadByUid(ep.workload_uid);
    if (w == nullptr) {
      ++skipped.unknown_workload;
      continue;
    }
    const uint16_t port = targetPort(ep, service_port, service_target->second);
    if (port == 0) {
      ++skipped.no_port;
      continue;
    }
    if (!allow_unhealthy && (ep.status == model::HealthStatus::Unhealthy ||
                             w->status == model::HealthStatus::Unhealthy)) {
      ++skipped.unhealthy;
      continue;
    }
    // ztunnel also reaches address-less workloads of other networks through their network
    // gateway; the tunnel has no gateway support yet.
    if (w->workload_ips.empty() && w->hostname.empty()) {
      ++skipped.no_address;
      continue;
    }
    if (std::find(exclude_uids.begin(), exclude_uids.end(), w->uid) != exclude_uids.end()) {
      ++skipped.tried;
      continue;
    }
    const unsigned rank = ranked ? matchedPreferences(preferences, client, *w) : 0;
    if (mode == LoadBalancingMode::Strict && rank < preferences.size()) {
      ++skipped.strict_mismatch;
      continue;
    }
    State* s = findState(w->uid, port);
    // Outlier ejections count only under an outlier policy (a rule removed since frees them).
    const bool connect_ok = s == nullptr || usable(*s, now);
    const bool outlier_out = outlier != nullptr && s != nullptr && now < s->outlier_ejected_until;
    candidates_.push_back(
        Candidate{w, port, rank, connect_ok && !outlier_out, outlier_out && connect_ok, s});
  }
  if (candidates_.empty()) {
    return Error{EHOSTUNREACH,
                 fmt::format("service {} port {}: no endpoint left{}", service.key(), service_port,
                             endpoints.empty() ? std::string(" (it has none)")
                                               : " (" + skipped.describe(preferences) + ")")};
  }

  // Outlier detection's panic threshold (Istio's minHealthPercent, Envoy's
  // healthy_panic_threshold): with fewer endpoints in than that, its ejections are ignored. At 0
  // (Istio's default) never: a service whose endpoints are all ejected for their responses has
  // none to offer (Envoy's 503 "no healthy upstream").
  if (outlier != nullptr) {
    const auto in = static_cast<size_t>(std::count_if(candidates_.begin(), candidates_.end(),
                                                      [](const Candidate& c) { return c.usable; }));
    const auto out = static_cast<size_t>(std::count_if(
        candidates_.begin(), candidates_.end(), [](const Candidate& c) { return c.outlier; }));
    if (out > 0 &&
        in * 100 < static_cast<size_t>(outlier->min_health_percent) * candidates_.size()) {
      for (Candidate& c : candidates_) c.usable = c.usable || c.outlier;
    } else if (in == 0 && out == candidates_.size()) {
      return Error{EHOSTUNREACH,
                   fmt::format("service {} port {}: all {} endpoints ejected by outlier detection",
                               service.key(), service_port, out)};
    }
  }

  // Ejected endpoints count as gone, also for FAILOVER (an ejected same-node endpoint fails over
  // to the next locality). Only when every candidate is ejected do they all come back (Envoy's
  // panic mode): a connect that may fail beats certain failure.
  const bool panic = std::none_of(candidates_.begin(), candidates_.end(),
                                  [](const Candidate& c) { return c.usable; });
  unsigned best_rank = 0;
  for (const Candidate& c : candidates_) {
    if (panic || c.usable) best_rank = std::max(best_rank, c.rank);
  }
  group_.clear();
  for (const Candidate& c : candidates_) {
    if ((panic || c.usable) && c.rank == best_rank) group_.push_back(&c);
  }

  Pick chosen = choose(group_, now);
  std::string locality;
  if (mode == LoadBalancingMode::Strict && !preferences.empty()) {
    locality = "strict [" + scopeList(preferences, preferences.size()) + "]; ";
  } else if (mode == LoadBalancingMode::Failover && !preferences.empty()) {
    locality =
        best_rank == 0
            ? "failover: matches none of [" + scopeList(preferences, preferences.size()) + "]; "
            : fmt::format("failover: matches [{}] ({} of {}); ", scopeList(preferences, best_rank),
                          best_rank, preferences.size());
  }
  if (panic) {
    locality += fmt::format("all {} candidates ejected, trying one anyway; ", candidates_.size());
  }
  chosen.reason = locality + chosen.reason;
  return chosen;
}

size_t EndpointPicker::draw() {
  std::uniform_int_distribution<uint64_t> dist(0, cumulative_.back() - 1);
  const uint64_t x = dist(rng_);
  return static_cast<size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), x) -
                             cumulative_.begin());
}

Pick EndpointPicker::choose(const std::vector<const Candidate*>& group, TimePoint now) {
  auto result = [now](const Candidate& c, std::string reason) {
    if (c.state != nullptr && c.state->ejection_streak > 0 && now >= c.state->ejected_until) {
      reason += " (probe after ejection)";
    }
    return Pick{c.workload, EndpointId{c.workload->uid, c.port}, std::move(reason)};
  };
  if (group.size() == 1) return result(*group[0], "only candidate");

  // Two different candidates, each drawn with probability proportional to capacity (0 never
  // drawn, unless every candidate has 0: then all count as 1). Distinct, as in the power of two
  // choices: drawing the same endpoint twice would hand it the connection without a comparison
  // (a third of all picks over three endpoints), however loaded or slow it is.
  cumulative_.clear();
  uint64_t total = 0;
  for (const Candidate* c : group) cumulative_.push_back(total += c->workload->capacity);
  if (total == 0) {
    for (size_t i = 0; i < cumulative_.size(); ++i) cumulative_[i] = i + 1;
  }
  const size_t ia = draw();
  size_t ib = draw();
  for (int tries = 0; ib == ia && tries < 16; ++tries) ib = draw();
  if (ib == ia) {
    // Every other candidate has capacity 0 (or the weights are that skewed): no comparison.
    return result(*group[ia], fmt::format("p2c: {} is the only candidate with capacity",
                                          displayName(*group[ia]->workload)));
  }
  const Candidate& a = *group[ia];
  const Candidate& b = *group[ib];

  // Cost: peak-EWMA connect latency (plus the floor) times the load per unit of capacity,
  // Linkerd's latency * (active + 1) for capacity 1. Latencies within the tolerance count as equal.
  const double lat_a = latencyEstimate(a.state, now);
  const double lat_b = latencyEstimate(b.state, now);
  double cmp_a = lat_a + toNanos(options_.latency_floor);
  double cmp_b = lat_b + toNanos(options_.latency_floor);
  if (std::max(cmp_a, cmp_b) <= std::min(cmp_a, cmp_b) * (1.0 + options_.latency_tolerance)) {
    cmp_a = cmp_b = std::max(cmp_a, cmp_b);
  }
  auto load = [](const Candidate& c) {
    const double active = c.state != nullptr ? c.state->active : 0;
    return 1.0 + active / std::max<uint32_t>(c.workload->capacity, 1);
  };
  const double cost_a = cmp_a * load(a);
  const double cost_b = cmp_b * load(b);
  const bool b_wins = cost_b < cost_a;
  const Candidate& winner = b_wins ? b : a;
  const Candidate& loser = b_wins ? a : b;
  // A loser whose latency estimate is what made it lose gets that estimate lowered by one
  // sample's weight: an endpoint whose estimate rose on one slow connect (a scheduling hiccup,
  // the TLS handshake of a new pooled connection) wins again after about a dozen comparisons,
  // instead of losing every one (and so never getting the samples that would bring its estimate
  // down) until the estimate decays with time. A truly slow endpoint wins one of those
  // comparisons now and then, measures slow again, and goes back to losing.
  if (loser.state != nullptr && loser.state->measured && (b_wins ? cmp_a > cmp_b : cmp_b > cmp_a) &&
      load(loser) <= load(winner)) {
    loser.state->latency_ns *= 1.0 - options_.latency_sample_weight;
  }
  auto describe = [](const Candidate& c, double latency) {
    return fmt::format("{} (active {}, latency {})", displayName(*c.workload),
                       c.state != nullptr ? c.state->active : 0, formatLatency(latency));
  };
  return result(winner, fmt::format("p2c: {} over {}{}", describe(winner, b_wins ? lat_b : lat_a),
                                    describe(loser, b_wins ? lat_a : lat_b),
                                    cost_a == cost_b ? ", equal cost" : ""));
}

void EndpointPicker::connectStarted(const EndpointId& endpoint, TimePoint now) {
  State& s = state(endpoint, now);
  ++s.active;
  ++s.connects_total;
  if (s.ejection_streak > 0 && now >= s.ejected_until) {
    s.probe_in_flight = true;
    s.probe_started = now;
  }
}

void EndpointPicker::connectSucceeded(const EndpointId& endpoint, std::chrono::nanoseconds latency,
                                      TimePoint now) {
  State& s = state(endpoint, now);
  s.consecutive_failures = 0;
  s.ejection_streak = 0;
  s.probe_in_flight = false;

  const double sample = std::max(toNanos(latency), 0.0);
  if (!s.measured || sample >= s.latency_ns) {
    s.latency_ns = sample;  // the peak: a slower sample counts at once
  } else {
    const double w =
        std::min(std::exp(-elapsedNanos(s.latency_at, now) / toNanos(options_.latency_decay)),
                 1.0 - options_.latency_sample_weight);
    s.latency_ns = s.latency_ns * w + sample * (1.0 - w);
  }
  s.latency_at = now;
  s.measured = true;
}

void EndpointPicker::connectFailed(const EndpointId& endpoint, TimePoint now) {
  State& s = state(endpoint, now);
  if (s.active > 0) --s.active;
  ++s.failures_total;
  ++s.consecutive_failures;
  s.probe_in_flight = false;
  // A connect that started before the ejection and failed during it adds nothing: the endpoint
  // is out already.
  if (now < s.ejected_until) return;
  // On probation (an ejection ended, no success since) one failure is enough.
  if (s.ejection_streak == 0 && s.consecutive_failures < options_.eject_after_failures) return;

  ++s.ejection_streak;
  ++s.ejections_total;
  s.consecutive_failures = 0;
  // base * 2^(streak-1), capped (doubling stops at the cap, so it cannot overflow).
  std::chrono::milliseconds backoff = options_.base_ejection;
  for (uint32_t i = 1; i < s.ejection_streak && backoff < options_.max_ejection; ++i) backoff *= 2;
  s.ejected_until = now + std::min(backoff, options_.max_ejection);
}

void EndpointPicker::connectionClosed(const EndpointId& endpoint) {
  auto it = states_.find(endpoint);
  if (it != states_.end() && it->second.active > 0) --it->second.active;
}

OutlierVerdict EndpointPicker::responseReceived(const EndpointId& endpoint, int status,
                                                const OutlierPolicy& policy,
                                                std::string_view cluster, size_t cluster_size,
                                                TimePoint now) {
  OutlierVerdict v;
  State& s = state(endpoint, now);
  // A response to a request sent before the ejection adds nothing: the endpoint is out already.
  if (now < s.outlier_ejected_until) return v;
  // Envoy lowers the multiplier of an endpoint that is in by one on each interval tick; done here
  // lazily, one step per whole interval since the ejection ended (or the last step).
  if (s.outlier_ejections > 0 && policy.interval.count() > 0 && now > s.outlier_decay_at) {
    const auto steps = (now - s.outlier_decay_at) / policy.interval;
    s.outlier_ejections -= static_cast<uint32_t>(std::min<int64_t>(steps, s.outlier_ejections));
    s.outlier_decay_at += steps * policy.interval;
  }
  const bool server_error = status >= 500 && status <= 599;
  const bool gateway_error = status == 502 || status == 503 || status == 504;
  s.consecutive_5xx = server_error ? s.consecutive_5xx + 1 : 0;
  s.consecutive_gateway = gateway_error ? s.consecutive_gateway + 1 : 0;
  // Envoy checks gateway errors first: the more specific cause is the one logged.
  if (policy.consecutive_gateway > 0 && s.consecutive_gateway >= policy.consecutive_gateway) {
    v.cause = "consecutive gateway errors";
    v.errors = s.consecutive_gateway;
  } else if (policy.consecutive_5xx > 0 && s.consecutive_5xx >= policy.consecutive_5xx) {
    v.cause = "consecutive 5xx";
    v.errors = s.consecutive_5xx;
  } else {
    return v;
  }
  // Counted again from zero whether or not the ejection happens (Envoy).
  s.consecutive_5xx = 0;
  s.consecutive_gateway = 0;
  for (const auto& [id, other] : states_) {
    if (other.outlier_cluster == cluster && now < other.outlier_ejected_until) ++v.ejected;
  }
  if (v.ejected * 100 >= static_cast<size_t>(policy.max_ejection_percent) * cluster_size) {
    v.kind = OutlierVerdict::Kind::kCapped;
    return v;
  }
  // base * n, n the ejections in a row; n stops growing once the cap is reached (Envoy).
  if (policy.base_ejection * (s.outlier_ejections + 1) <= policy.max_ejection ||
      s.outlier_ejections == 0) {
    ++s.outlier_ejections;
  }
  v.kind = OutlierVerdict::Kind::kEjected;
  v.ejections = s.outlier_ejections;
  v.duration = std::min(policy.base_ejection * s.outlier_ejections, policy.max_ejection);
  s.outlier_ejected_until = now + v.duration;
  s.outlier_decay_at = s.outlier_ejected_until;
  s.outlier_cluster = std::string(cluster);
  ++s.ejections_total;
  return v;
}

std::vector<EndpointStats> EndpointPicker::stats(TimePoint now) const {
  std::vector<EndpointStats> out;
  out.reserve(states_.size());
  for (const auto& [id, s] : states_) {
    EndpointStats st;
    st.endpoint = id;
    st.active = s.active;
    st.latency = std::chrono::nanoseconds(static_cast<int64_t>(latencyEstimate(&s, now)));
    st.measured = s.measured;
    st.consecutive_failures = s.consecutive_failures;
    st.ejection_streak = s.ejection_streak;
    st.ejections_total = s.ejections_total;
    if (now < s.ejected_until) st.ejected_until = s.ejected_until;
    st.probation = s.ejection_streak > 0 && now >= s.ejected_until;
    st.connects_total = s.connects_total;
    st.failures_total = s.failures_total;
    if (now < s.outlier_ejected_until) st.outlier_ejected_until = s.outlier_ejected_until;
    st.outlier_ejections = s.outlier_ejections;
    out.push_back(std::move(st));
  }
  return out;
}

void EndpointPicker::prune(TimePoint now) {
  const auto keep_for =
      std::max<Clock::duration>(options_.max_ejection, 10 * options_.latency_decay);
  std::erase_if(states_, [&](const auto& entry) {
    const State& s = entry.second;
    return s.active == 0 && now >= s.ejected_until && now >= s.outlier_ejected_until &&
           now - s.last_event > keep_for;
  });
}

EndpointPicker::State& EndpointPicker::state(const EndpointId& endpoint, TimePoint now) {
  auto it = states_.find(endpoint);
  if (it == states_.end()) it = states_.emplace(endpoint, State{}).first;
  it->second.last_event = now;
  return it->second;
}

EndpointPicker::State* EndpointPicker::findState(std::string_view uid, uint16_t port) {
  auto it = states_.find(KeyView{uid, port});
  return it == states_.end() ? nullptr : &it->second;
}

bool EndpointPicker::usable(const State& s, TimePoint now) const {
  if (now < s.ejected_until) return false;
  // On probation one connect at a time; a probe whose outcome never came stops blocking after
  // the connect timeout.
  return !(s.ejection_streak > 0 && s.probe_in_flight &&
           now - s.probe_started < options_.connect_timeout);
}

double EndpointPicker::latencyEstimate(const State* s, TimePoint now) const {
  if (s == nullptr || !s->measured) return toNanos(options_.initial_latency);
  return s->latency_ns *
         std::exp(-elapsedNanos(s->latency_at, now) / toNanos(options_.latency_decay));
}

}  // namespace nodemesh::tunnel::lb
