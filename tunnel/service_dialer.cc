#include "tunnel/service_dialer.h"

#include <cerrno>

#include <spdlog/spdlog.h>

#include "model/mesh.h"
#include "tunnel/pod_listeners.h"

namespace nodemesh::tunnel {

ServiceDialer::ServiceDialer(const TunnelOptions& options, TunnelCounters& counters,
                             PodListeners& pods, Connector& connector)
    : options_(options),
      counters_(counters),
      pods_(pods),
      connector_(connector),
      picker_(lb::LbOptions{.max_attempts = options.connect_attempts,
                            .connect_timeout = options.connect_timeout}) {}

void ServiceDialer::start(Pod& pod, UniqueFd app, const SocketAddress& app_addr,
                          std::unique_ptr<ServiceTarget> target, const std::string& last_error) {
  const auto now = Clock::now();
  const model::Service& service = *target->service;
  const model::Workload* client =
      pod.ips.empty() ? nullptr : target->snapshot->workloadByIp(pod.ips[0]);
  lb::ClientLocality locality;
  if (client) {
    locality = lb::ClientLocality::of(*client, options_.node);
  } else {
    locality.node = options_.node;
  }
  auto pick =
      picker_.pick(*target->snapshot, service, target->vip.port, locality, target->tried, now);
  ConnectionRecord record;
  record.direction = Direction::kOutbound;
  record.pod = pod.name;
  record.src = app_addr;
  if (!pick && pick.error().code == EINVAL && target->tried.empty()) {
    // Not a port of the service, or PASSTHROUGH: the original destination, as plain TCP.
    record.dst = target->vip;
    return connector_.relayTcp(pod, std::move(app), std::move(record), nullptr, true);
  }
  record.dst_service = service.key();
  record.service_addr = target->vip;
  record.attempts = static_cast<unsigned>(target->tried.size());
  if (!pick) {
    record.dst = target->vip;
    bump(counters_.failed_connect);
    spdlog::warn("{}: load balancing: no endpoint for {} ({}): {}", pod.name, service.key(),
                 target->vip.toString(), pick.error().message);
    // Counted as opened at the first attempt, if there was one.
    return connector_.refuse(pod, std::move(app), std::move(record), target->tried.empty(),
                             "no endpoint for service " + service.key() + ": " +
                                 pick.error().message +
                                 (last_error.empty() ? "" : "; last attempt: " + last_error));
  }
  const model::Workload& w = *pick->workload;
  const IpAddress* ip = &w.workload_ips.front();  // the picker only offers workloads with one
  for (const auto& a : w.workload_ips) {
    if (a.isV4() == target->vip.ip.isV4()) {
      ip = &a;
      break;
    }
  }
  const SocketAddress dst{*ip, pick->endpoint.port};
  target->endpoint = pick->endpoint;
  target->endpoint_name = w.namespace_name + "/" + w.name;
  target->tried.push_back(w.uid);
  target->attempt_start = now;
  target->outcome_reported = false;
  target->established = false;
  if (pick->reason.find("probe after ejection") != std::string::npos) {
    spdlog::info("{}: load balancing: probing {} ({}) again after its ejection", pod.name,
                 target->endpoint_name, dst.toString());
  }
  spdlog::debug("{}: load balancing: {} -> {}: {}", pod.name, target->vip.toString(),
                dst.toString(), pick->reason);
  picker_.connectStarted(pick->endpoint, now);
  if (model::reachedByHbone(w, pod.identity.has_value())) {
    return connector_.relayHbone(pod, std::move(app), app_addr, dst, w, std::move(target));
  }
  record.dst = dst;
  record.attempts = static_cast<unsigned>(target->tried.size());
  const bool first = target->tried.size() == 1;
  connector_.relayTcp(pod, std::move(app), std::move(record), std::move(target), first);
}

bool ServiceDialer::retry(std::unique_ptr<ServiceTarget>& target, UniqueFd& app,
                          const SocketAddress& app_addr, const std::string& why) {
  const auto now = Clock::now();
  auto ejections = [&] {
    for (const auto& s : picker_.stats(now)) {
      if (s.endpoint == target->endpoint) return s.ejections_total;
    }
    return uint64_t{0};
  };
  const uint64_t before = ejections();
  picker_.connectFailed(target->endpoint, now);
  target->outcome_reported = true;
  for (const auto& s : picker_.stats(now)) {
    if (s.endpoint == target->endpoint && s.ejections_total > before && s.ejected_until) {
      spdlog::info(
          "load balancing: ejected {} ({}:{}) for {} ms after {} consecutive connect failure(s) "
          "(ejection {} since its last success)",
          target->endpoint_name, target->endpoint.workload_uid, target->endpoint.port,
          std::chrono::duration_cast<std::chrono::milliseconds>(*s.ejected_until - now).count(),
          s.ejection_streak > 1 ? 1 : picker_.options().eject_after_failures, s.ejection_streak);
    }
  }
  Pod* pod = pods_.find(target->pod_cookie);
  if (target->tried.size() >= options_.connect_attempts || !pod) return false;
  bump(counters_.connect_retries);
  spdlog::info(
      "{}: load balancing: {} for {} failed ({}); retrying on another endpoint "
      "(attempt {} of {})",
      pod->name, target->endpoint_name, target->vip.toString(), why, target->tried.size() + 1,
      options_.connect_attempts);
  start(*pod, std::move(app), app_addr, std::move(target), why);
  return true;
}

void ServiceDialer::established(ServiceTarget& target) {
  const auto now = Clock::now();
  picker_.connectSucceeded(target.endpoint, now - target.attempt_start, now);
  target.outcome_reported = true;
  target.established = true;
}

void ServiceDialer::ended(ServiceTarget& target) {
  if (target.established) {
    picker_.connectionClosed(target.endpoint);
  } else if (!target.outcome_reported) {
    picker_.connectFailed(target.endpoint, Clock::now());
  }
  target.established = false;
  target.outcome_reported = true;
}

}  // namespace nodemesh::tunnel
