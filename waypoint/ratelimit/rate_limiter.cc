#include "waypoint/ratelimit/rate_limiter.h"

#include <fmt/format.h>

#include <utility>

namespace nodemesh::waypoint {

namespace {

// The shared state of keys beyond kMaxKeys. Identities and header values never hold a NUL (the
// codecs reject it), so this key cannot collide with a real one.
constexpr std::string_view kOverflowKey{"\0overflow", 9};

std::string targetKey(std::string_view kind, std::string_view key) {
  std::string out(kind);
  out += ' ';
  out += key;
  return out;
}

std::string_view targetKind(model::RateLimitTargetRef::Kind kind) {
  switch (kind) {
    case model::RateLimitTargetRef::Kind::kService:
      return "Service";
    case model::RateLimitTargetRef::Kind::kHttpRoute:
      return "HTTPRoute";
    case model::RateLimitTargetRef::Kind::kGrpcRoute:
      return "GRPCRoute";
  }
  return "";
}

// "ns/sa" of a SPIFFE ID spiffe://<trust domain>/ns/<ns>/sa/<sa>; empty for anything else.
// Overrides name ServiceAccounts, which mean the same identity in any trust domain.
std::string serviceAccountOf(std::string_view principal) {
  constexpr std::string_view kScheme = "spiffe://";
  if (principal.substr(0, kScheme.size()) != kScheme) return {};
  std::string_view rest = principal.substr(kScheme.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return {};
  rest = rest.substr(slash);
  if (rest.substr(0, 4) != "/ns/") return {};
  rest = rest.substr(4);
  const size_t sa = rest.find("/sa/");
  if (sa == std::string_view::npos || sa == 0) return {};
  std::string_view ns = rest.substr(0, sa);
  std::string_view name = rest.substr(sa + 4);
  if (name.empty() || name.find('/') != std::string_view::npos) return {};
  return std::string(ns) + "/" + std::string(name);
}

int64_t ceilSeconds(std::chrono::nanoseconds d) {
  const int64_t ns = d.count();
  if (ns <= 0) return 0;
  return (ns + 999'999'999) / 1'000'000'000;
}

}  // namespace

std::string_view rateLimitKindName(RateLimitKind kind) {
  switch (kind) {
    case RateLimitKind::kTotal:
      return "total";
    case RateLimitKind::kIdentity:
      return "identity";
    case RateLimitKind::kOverride:
      return "override";
    case RateLimitKind::kHeader:
      return "header";
  }
  return "total";
}

Headers RateLimitVerdict::responseHeaders() const {
  Headers out;
  if (!limited) return out;
  // A retry sooner than this would be rejected too; a 10 ms wait still says 1 (RFC 9110's
  // delay-seconds are whole seconds).
  const int64_t retry = std::max<int64_t>(ceilSeconds(retry_after), 1);
  out.push_back({"retry-after", std::to_string(retry)});
  // draft-ietf-httpapi-ratelimit-headers-08 §4/§5: the policy as a String item named after the
  // policy and its limit, quota q per window w seconds (the burst is one second's worth); the
  // current state: r remaining units, t seconds until requests pass again.
  const std::string name = fmt::format("\"{}/{}\"", policy, rateLimitKindName(kind));
  out.push_back({"ratelimit-policy", fmt::format("{};q={};w=1", name, requests_per_second)});
  out.push_back({"ratelimit", fmt::format("{};r=0;t={}", name, retry)});
  return out;
}

RateLimiter::RateLimiter(ClockFn clock) : clock_(std::move(clock)) {}

void RateLimiter::setSnapshot(const model::SnapshotPtr& snapshot) {
  std::map<std::string, std::shared_ptr<Compiled>, std::less<>> old;
  for (auto& p : policies_) old.emplace(p->spec.key(), std::move(p));
  policies_.clear();
  by_target_.clear();
  if (!snapshot) return;
  for (const model::RateLimitPolicy& spec : snapshot->rateLimitPolicies()) {
    std::shared_ptr<Compiled> c;
    if (auto it = old.find(spec.key()); it != old.end() && it->second->spec == spec) {
      c = it->second;  // unchanged: keeps its state
    } else {
      c = std::make_shared<Compiled>();
      c->spec = spec;
      if (spec.total_rps) c->total = GcraLimit::perSecond(*spec.total_rps);
      if (spec.identity_rps) c->identity = GcraLimit::perSecond(*spec.identity_rps);
      if (spec.header) c->header = GcraLimit::perSecond(spec.header->requests_per_second);
      for (const model::RateLimitOverride& o : spec.overrides) {
        for (const model::RateLimitClientRef& ref : o.client_refs) {
          c->override_of.emplace(ref.namespace_name + "/" + ref.name, c->overrides.size());
        }
        c->overrides.push_back(GcraLimit::perSecond(o.requests_per_second));
      }
    }
    for (const model::RateLimitTargetRef& t : spec.target_refs) {
      by_target_.emplace(targetKey(targetKind(t.kind), spec.metadata.namespace_name + "/" + t.name),
                         policies_.size());
    }
    policies_.push_back(std::move(c));
  }
}

RateClock::time_point& RateLimiter::stateFor(
    std::unordered_map<std::string, RateClock::time_point>& tats, std::string_view key,
    RateClock::time_point now) {
  if (auto it = tats.find(std::string(key)); it != tats.end()) return it->second;
  if (tats.size() >= kMaxKeys) {
    std::erase_if(tats, [now](const auto& kv) { return kv.second <= now; });
  }
  if (tats.size() >= kMaxKeys) key = kOverflowKey;
  return tats.try_emplace(std::string(key), RateClock::time_point{}).first->second;
}

RateLimitVerdict RateLimiter::check(const RateLimitRequest& request) {
  RateLimitVerdict verdict;
  if (policies_.empty()) return verdict;
  // The policies that apply: the service's and the matched route's (one policy per target, so
  // at most two).
  std::vector<Compiled*> applying;
  auto add = [&](std::string_view kind, std::string_view key) {
    if (key.empty()) return;
    auto it = by_target_.find(targetKey(kind, key));
    if (it == by_target_.end()) return;
    Compiled* c = policies_[it->second].get();
    for (const Compiled* a : applying) {
      if (a == c) return;  // one policy targeting both the service and its route
    }
    applying.push_back(c);
  };
  add("Service", request.service);
  add(request.route_kind, request.route);
  if (applying.empty()) return verdict;

  const RateClock::time_point now = clock_();
  struct Step {
    Compiled* policy;
    RateLimitKind kind;
    const GcraLimit* limit;
    RateClock::time_point* tat;
    GcraResult result;
  };
  std::vector<Step> steps;
  std::string account;  // computed once, only when some policy has overrides
  bool account_done = false;
  for (Compiled* c : applying) {
    if (c->total) steps.push_back({c, RateLimitKind::kTotal, &*c->total, &c->total_tat, {}});
    const GcraLimit* per_client = c->identity ? &*c->identity : nullptr;
    RateLimitKind per_client_kind = RateLimitKind::kIdentity;
    if (!c->override_of.empty()) {
      if (!account_done) {
        account = serviceAccountOf(request.principal);
        account_done = true;
      }
      if (auto it = c->override_of.find(account); !account.empty() && it != c->override_of.end()) {
        per_client = &c->overrides[it->second];
        per_client_kind = RateLimitKind::kOverride;
      }
    }
    if (per_client) {
      steps.push_back({c,
                       per_client_kind,
                       per_client,
                       &stateFor(c->identity_tats, request.principal, now),
                       {}});
    }
    if (c->header && request.headers) {
      if (auto value = headerValue(*request.headers, c->spec.header->name)) {
        steps.push_back(
            {c, RateLimitKind::kHeader, &*c->header, &stateFor(c->header_tats, *value, now), {}});
      }
    }
  }
  // Two steps may share a state only through the overflow key of one map; charging it twice
  // for one request is the overflow's (documented) cost.
  const Step* worst = nullptr;
  for (Step& s : steps) {
    s.result = gcraCheck(*s.tat, now, *s.limit);
    if (!s.result.allowed && (!worst || s.result.retry_after > worst->result.retry_after)) {
      worst = &s;
    }
  }
  if (!worst) {
    for (Step& s : steps) *s.tat = s.result.tat;
    return verdict;
  }
  verdict.limited = true;
  verdict.policy = worst->policy->spec.key();
  verdict.kind = worst->kind;
  verdict.requests_per_second = worst->limit->requests_per_second;
  verdict.retry_after = worst->result.retry_after;
  verdict.reset = worst->result.reset;
  ++rejected_[verdict.policy][static_cast<size_t>(verdict.kind)];
  return verdict;
}

void RateLimiter::prune() {
  const RateClock::time_point now = clock_();
  for (auto& c : policies_) {
    std::erase_if(c->identity_tats, [now](const auto& kv) { return kv.second <= now; });
    std::erase_if(c->header_tats, [now](const auto& kv) { return kv.second <= now; });
  }
}

std::vector<RateLimitCounter> RateLimiter::counters() const {
  std::vector<RateLimitCounter> out;
  for (const auto& [policy, counts] : rejected_) {
    for (size_t k = 0; k < kRateLimitKinds; ++k) {
      if (counts[k] == 0) continue;
      out.push_back({policy, static_cast<RateLimitKind>(k), counts[k]});
    }
  }
  return out;
}

size_t RateLimiter::keys() const {
  size_t n = 0;
  for (const auto& c : policies_) n += c->identity_tats.size() + c->header_tats.size();
  return n;
}

}  // namespace nodemesh::waypoint
