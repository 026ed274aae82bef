#include "tunnel/inbound_authorizer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "tunnel/stream_bridge.h"
#include "tunnel/tcp_relay.h"

namespace nodemesh::tunnel {

bool InboundAuthorizer::check(ConnectionRecord& r, const std::string& peer_identity) {
  auto auth = mesh_.authorizer();
  if (!auth) return true;  // no config yet: no policy
  const model::Workload* w = auth->snapshot()->workloadByIp(r.dst.ip);
  bool allowed = false;
  if (!w) {
    r.reason = "no workload in the config has the address " + r.dst.ip.toString();
  } else {
    policy::ConnectionAttributes attrs{r.src.ip, r.dst.ip, r.dst.port, std::nullopt};
    if (!peer_identity.empty()) attrs.source_identity = peer_identity;
    auto verdict = auth->check(*w, attrs);
    allowed = verdict.allowed;
    r.reason = verdict.reason();
    r.policy = std::string(verdict.policy);
    for (std::string_view unmatched : verdict.unmatched_allow) {
      if (!r.policy.empty()) r.policy += ',';
      r.policy += unmatched;
    }
    if (verdict.dry_run_allowed != verdict.allowed || !verdict.dry_run.empty()) {
      std::string matched;
      for (const auto& m : verdict.dry_run) {
        matched += fmt::format(" {}#{}", m.policy, m.rule);
      }
      spdlog::info("{}: dry-run policies for {} -> {}: would be {}; matched:{}", r.pod,
                   r.src.toString(), r.dst.toString(),
                   verdict.dry_run_allowed ? "allowed" : "denied",
                   matched.empty() ? " none" : matched);
    }
  }
  r.denied = !allowed;
  return allowed;
}

bool InboundAuthorizer::authorize(ConnectionRecord& r, const std::string& peer_identity) {
  const bool allowed = check(r, peer_identity);
  if (!allowed) bump(counters_.denied);
  return allowed;
}

void InboundAuthorizer::revokeDenied(TcpRelay& relay, StreamBridges& bridges) {
  for (TcpConnection* c : relay.openInbound()) {
    // A same-node delivery is checked as its server pod's inbound record, with the client's
    // identity; a plaintext inbound connection has none.
    ConnectionRecord& r = c->delivery ? *c->delivery : c->record;
    ConnectionRecord probe = r;
    if (check(probe, c->delivery ? r.src_identity : "")) continue;
    bump(counters_.closed_by_policy);
    r.denied = true;
    r.policy = probe.policy;
    r.reason = probe.reason;
    relay.abort(c, "closed by policy change: " + probe.reason);
  }
  for (StreamBridge* b : bridges.openInbound()) {
    ConnectionRecord probe = b->record;
    if (check(probe, b->record.src_identity)) continue;
    bump(counters_.closed_by_policy);
    b->record.denied = true;
    b->record.policy = probe.policy;
    b->record.reason = probe.reason;
    b->abort("closed by policy change: " + probe.reason);
  }
}

}  // namespace nodemesh::tunnel
