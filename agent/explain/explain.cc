#include "agent/explain/explain.h"

#include <algorithm>

#include <fmt/format.h>

#include "capture_abi.h"
#include "model/mesh.h"

namespace nodemesh::agent::explain {

namespace {

WorkloadRef refOf(const model::Workload& w) {
  return WorkloadRef{w.namespace_name + "/" + w.name, w.uid, w.node,
                     std::string(model::toString(w.protocol)), w.identity()};
}

const EnrolledPodView* enrolledPod(const CaptureView& view, const model::Workload& w) {
  for (const auto& pod : view.enrolled) {
    if (pod.workload_uid == w.uid) return &pod;
  }
  return nullptr;
}

bool contains(const std::vector<uint16_t>& ports, uint16_t port) {
  return std::find(ports.begin(), ports.end(), port) != ports.end();
}

const Cidr* excludedCidr(const CaptureView& view, const IpAddress& ip) {
  for (const auto& c : view.exclude_cidrs) {
    if (c.contains(ip)) return &c;
  }
  return nullptr;
}

// The workload's address in the destination's family.
IpAddress addressOf(const model::Workload& w, const IpAddress& like) {
  for (const auto& ip : w.workload_ips) {
    if (ip.isV4() == like.isV4()) return ip;
  }
  return w.workload_ips.empty() ? like : w.workload_ips.front();
}

Capture outboundCapture(const CaptureView& view, const model::Workload* src,
                        const IpAddress& src_ip, const SocketAddress& dst,
                        std::optional<std::string>* netns) {
  Capture c;
  if (!src) {
    c.reason = "source_not_in_mesh";
    c.detail =
        src_ip.toString() + " is not a workload in the config: nothing captures its connections";
    return c;
  }
  const std::string key = src->namespace_name + "/" + src->name;
  if (src->network_mode == model::NetworkMode::HostNetwork) {
    c.reason = "host_network";
    c.detail = key + " uses the host network: never captured";
    return c;
  }
  if (src->protocol != model::Protocol::Hbone) {
    c.reason = "source_not_in_mesh";
    c.detail = key + " has protocol TCP: not in the mesh, its connections are not captured";
    return c;
  }
  if (src->node != view.node) {
    c.observed = false;
  } else if (const EnrolledPodView* pod = enrolledPod(view, *src)) {
    *netns = pod->netns;
  } else {
    c.reason = "not_enrolled";
    c.detail = key + " is not enrolled on " + view.node +
               ": no network namespace with its address was found (yet)";
    return c;
  }
  const std::string where = c.observed ? "enrolled on " + view.node
                                       : "on node " + src->node +
                                             " (assumed enrolled by its agent; its exclusions "
                                             "are not known here)";
  if (dst.ip.isLoopback()) {
    c.reason = "out_skip_loopback";
    c.detail = key + " " + where + "; loopback destinations are never captured";
    return c;
  }
  if (c.observed && contains(view.exclude_outbound_ports, dst.port)) {
    c.reason = "out_skip_excluded";
    c.detail = fmt::format("{} {}; destination port {} is excluded (--exclude-outbound-ports)", key,
                           where, dst.port);
    return c;
  }
  if (const Cidr* cidr = c.observed ? excludedCidr(view, dst.ip) : nullptr) {
    c.reason = "out_skip_excluded";
    c.detail = fmt::format("{} {}; {} is in excluded CIDR {} (--exclude-cidrs)", key, where,
                           dst.ip.toString(), cidr->toString());
    return c;
  }
  c.captured = true;
  c.reason = "out_captured";
  c.detail = fmt::format("{} {}; its connect to {} is redirected to its 127.0.0.1:{} listener", key,
                         where, dst.toString(), NM_PORT_OUTBOUND);
  return c;
}

// Everything after capture for one destination workload (or an unknown address).
Path pathTo(const CaptureView& view, const PolicyChecker& policies, const model::Workload* src,
            const IpAddress& src_ip, const Capture& capture, const model::Workload* dst_w,
            const SocketAddress& address) {
  Path p;
  p.address = address;
  if (dst_w) p.endpoint = refOf(*dst_w);
  // The data path's rule (model/mesh.h): a captured source is in the mesh (it has an identity),
  // so it reaches a destination in the mesh over HBONE, or within this node by the fast path.
  const bool dst_mesh = dst_w && model::inMesh(*dst_w);
  const std::string dst_key = dst_w ? p.endpoint->key : address.ip.toString();
  // The same-node fast path (tunnel/outbound.cc): both pods enrolled on this node, so the agent
  // owns both ends. (A source on another node is that node's agent's business: HBONE.)
  const bool same_node = capture.captured && capture.observed && dst_mesh &&
                         view.same_node_fast_path && dst_w->node == view.node &&
                         enrolledPod(view, *dst_w) != nullptr;

  // How it travels.
  if (!capture.captured) {
    p.transport = "passthrough";
    p.transport_detail = "not captured: the kernel routes the connection to " + address.toString() +
                         " directly, in plaintext";
  } else if (same_node) {
    p.transport = "local";
    p.transport_detail = fmt::format(
        "same node: {} and {} are both enrolled on {}, so its agent joins the two sockets "
        "itself, without TLS or HTTP/2 (the same-node fast path); it knows both identities, {} "
        "and {}",
        src ? src->namespace_name + "/" + src->name : src_ip.toString(), dst_key, view.node,
        src ? src->identity() : "-", dst_w->identity());
    p.source_identity = src ? std::optional<std::string>(src->identity()) : std::nullopt;
  } else if (dst_mesh) {
    p.transport = "hbone";
    p.transport_detail = fmt::format(
        "HBONE: mutual TLS to {}:{}, HTTP/2 CONNECT {}; the client proves {}, the server must "
        "prove {}",
        address.ip.toString(), NM_PORT_HBONE, address.toString(), src ? src->identity() : "-",
        dst_w->identity());
    p.source_identity = src ? std::optional<std::string>(src->identity()) : std::nullopt;
  } else {
    p.transport = "tcp";
    p.transport_detail =
        dst_w ? fmt::format("plain TCP from the tunnel to {}: {} has protocol {}, not in the mesh",
                            address.toString(), dst_key, model::toString(dst_w->protocol))
              : fmt::format("plain TCP from the tunnel to {}: not a workload in the config",
                            address.toString());
  }

  // Inbound capture at the destination.
  Inbound& in = p.inbound;
  if (!dst_mesh) {
    in.reason = "not_in_mesh";
    in.detail = dst_w ? dst_key + " is not in the mesh: delivered directly, no policy applies"
                      : address.ip.toString() +
                            " is not a workload in the config: no agent enforces policy there";
  } else {
    in.observed = dst_w->node == view.node;
    const EnrolledPodView* pod = in.observed ? enrolledPod(view, *dst_w) : nullptr;
    if (in.observed && !pod) {
      in.reason = "not_enrolled";
      in.detail = dst_key + " is not enrolled on " + view.node + ": nothing steers its inbound";
    } else if (p.transport == "local") {
      in.captured = true;
      in.reason = "same_node";
      in.detail = fmt::format(
          "the agent checks the connection as its {} would check an HBONE stream with the "
          "client's identity, and connects to {} in {} from {}",
          NM_PORT_HBONE, address.toString(), dst_key, src_ip.toString());
    } else if (p.transport == "hbone") {
      in.captured = true;
      in.listener = NM_PORT_HBONE;
      in.reason = "in_hbone_steered";
      in.detail = fmt::format(
          "arrives on {}'s {} listener; the tunnel verifies the client certificate and "
          "delivers to {} from {}",
          dst_key, NM_PORT_HBONE, address.toString(), src_ip.toString());
    } else if (in.observed && contains(view.exclude_inbound_ports, address.port)) {
      in.reason = "in_skip_excluded";
      in.detail = fmt::format(
          "port {} of {} is excluded (--exclude-inbound-ports): delivered "
          "directly, no policy",
          address.port, dst_key);
    } else if (const Cidr* cidr = in.observed ? excludedCidr(view, src_ip) : nullptr) {
      in.reason = "in_skip_excluded";
      in.detail = fmt::format(
          "source {} is in excluded CIDR {} (--exclude-cidrs): delivered directly, no policy",
          src_ip.toString(), cidr->toString());
    } else {
      in.captured = true;
      in.listener = NM_PORT_INBOUND;
      in.reason = "in_steered";
      in.detail = fmt::format(
          "plaintext: steered to {}'s {} listener (sk_lookup); no client identity{}", dst_key,
          NM_PORT_INBOUND,
          in.observed ? "" : " (node " + dst_w->node + "'s exclusions are not known here)");
    }
  }

  // Authorization, where the destination's tunnel sees the connection.
  if (dst_mesh) p.applicable_policies = policies.applicable(*dst_w);
  if (in.captured) {
    p.policy_enforced = true;
    ConnectionFacts facts;
    facts.source_ip = src_ip;
    facts.destination_ip = address.ip;
    facts.destination_port = address.port;
    facts.source_identity =
        in.listener == NM_PORT_HBONE || p.transport == "local" ? p.source_identity : std::nullopt;
    p.verdict = policies.check(*dst_w, facts);
  } else {
    p.verdict.allowed = true;
    p.verdict.reason = "not enforced: the destination's tunnel does not see the connection";
  }
  return p;
}

// The connection goes to a waypoint: one path per waypoint instance. The waypoint terminates
// HBONE itself (its pod is never captured) and picks the backend by its routes.
void waypointPaths(const model::OutboundDecision& route, const model::Workload* src,
                   const SocketAddress& dst, Explanation& e) {
  const model::WaypointTarget& waypoint = *route.waypoint;
  e.waypoint = waypoint.address->toString();
  e.waypoint_error = waypoint.error;
  for (const model::Workload* w : waypoint.workloads) {
    Path p;
    p.endpoint = refOf(*w);
    p.address = SocketAddress{addressOf(*w, dst.ip), waypoint.address->hbone_mtls_port};
    p.transport = "hbone";
    p.transport_detail = fmt::format(
        "to waypoint {}: mutual TLS to {}, HTTP/2 CONNECT {} (the original destination); the "
        "client proves {}, the waypoint must prove {}",
        p.endpoint->key, p.address.toString(), dst.toString(), src ? src->identity() : "-",
        w->identity());
    p.source_identity = src ? std::optional<std::string>(src->identity()) : std::nullopt;
    p.inbound.reason = "waypoint";
    p.inbound.detail =
        "the waypoint terminates HBONE itself (its pod is not captured) and sends each request "
        "on to the backend its routes pick, over HBONE with its own identity";
    p.inbound.observed = w->node == e.node;
    p.verdict.allowed = true;
    p.verdict.reason = "decided at the waypoint and at the backend";
    e.paths.push_back(std::move(p));
  }
}

std::string verdictWord(const Path& p) {
  return p.verdict.allowed ? "allow" : "deny";
}

void tell(Explanation& e) {
  auto& s = e.story;
  if (e.source) {
    s.push_back(fmt::format("source {} is {} on node {} ({}, {})", e.src.toString(), e.source->key,
                            e.source->node, e.source->protocol, e.source->identity));
  } else {
    s.push_back(fmt::format("source {} is not a workload in the config", e.src.toString()));
  }
  s.push_back(fmt::format("{}: {} ({})", e.capture.captured ? "captured" : "not captured",
                          e.capture.detail, e.capture.reason));
  if (e.waypoint) {
    s.push_back(fmt::format("{} has a waypoint ({}): the tunnel sends the connection there{}",
                            e.service ? "service " + e.service->key : e.dst.ip.toString(),
                            *e.waypoint,
                            e.waypoint_error.empty() ? "" : "; but " + e.waypoint_error));
  } else if (e.service) {
    if (e.service->target_port) {
      s.push_back(
          fmt::format("{} is the VIP of service {}: port {} -> target port {} on {} "
                      "endpoint{}",
                      e.dst.ip.toString(), e.service->key, e.service->port, *e.service->target_port,
                      e.paths.size(), e.paths.size() == 1 ? "" : "s"));
    } else {
      s.push_back(fmt::format("{} is the VIP of service {}, but {} is not one of its ports",
                              e.dst.ip.toString(), e.service->key, e.service->port));
    }
    if (e.service->target_port && e.paths.size() > 1) {
      s.emplace_back(
          "the tunnel's load balancer picks one endpoint per connection (retrying "
          "another after a connect failure); each is explained below");
    }
  }
  for (const Path& p : e.paths) {
    std::string who = p.endpoint ? p.endpoint->key + " (" + p.address.toString() + ", node " +
                                       p.endpoint->node + ", " + p.endpoint->protocol + ")"
                                 : p.address.toString() + " (outside the config)";
    if (!p.skipped.empty()) {
      s.push_back("endpoint " + who + " skipped: " + p.skipped);
      continue;
    }
    s.push_back((e.waypoint  ? "waypoint "
                 : e.service ? "endpoint "
                             : "destination ") +
                who + ": " + p.transport_detail);
    s.push_back(fmt::format("inbound: {} ({})", p.inbound.detail, p.inbound.reason));
    if (p.policy_enforced) {
      s.push_back(fmt::format("policy: {} -> {}", p.verdict.reason, verdictWord(p)));
    }
  }
  s.push_back("verdict: " + e.verdict);
}

nlohmann::json workloadJson(const std::optional<WorkloadRef>& w) {
  if (!w) return nullptr;
  return {{"workload", w->key},
          {"uid", w->uid},
          {"node", w->node},
          {"protocol", w->protocol},
          {"identity", w->identity}};
}

}  // namespace

Explanation explainConnection(const model::Snapshot& snapshot, const CaptureView& view,
                              const PolicyChecker& policies, const IpAddress& src,
                              const SocketAddress& dst) {
  Explanation e;
  e.src = src;
  e.dst = dst;
  e.node = view.node;
  const model::Workload* src_w = snapshot.workloadByIp(src);
  if (src_w) e.source = refOf(*src_w);
  e.capture = outboundCapture(view, src_w, src, dst, &e.source_netns);

  // As the data path routes it (model::routeOutbound): a waypoint first, then a service VIP
  // before a workload address.
  model::OutboundSource source;
  source.has_identity = e.capture.captured && src_w && model::inMesh(*src_w);
  if (src_w) source.identity = src_w->identity();
  source.ip = src;
  const model::OutboundDecision route = model::routeOutbound(snapshot, dst.ip, source);
  const model::Service* service = route.service;
  const model::Workload* dst_w = service ? nullptr : snapshot.workloadByIp(dst.ip);
  if (service) {
    ServiceRef ref;
    ref.key = service->key();
    ref.name = service->name;
    ref.namespace_name = service->namespace_name;
    ref.hostname = service->hostname;
    ref.port = dst.port;
    auto port = service->ports.find(dst.port);
    if (port != service->ports.end()) ref.target_port = port->second;
    e.service = ref;
  }
  if (route.route == model::OutboundRoute::kWaypoint) {
    waypointPaths(route, src_w, dst, e);
  } else if (service) {
    const ServiceRef& ref = *e.service;
    const bool only_healthy =
        !service->load_balancing ||
        service->load_balancing->health_policy == model::LoadBalancingHealthPolicy::OnlyHealthy;
    const bool passthrough = service->load_balancing &&
                             service->load_balancing->mode == model::LoadBalancingMode::Passthrough;
    if (!ref.target_port || passthrough) {
      // The tunnel relays to the original destination (the VIP) as plain TCP.
      Path p = pathTo(view, policies, src_w, src, e.capture, nullptr, dst);
      if (p.transport == "tcp") {
        p.transport_detail =
            (passthrough
                 ? "service " + ref.key + " is PASSTHROUGH"
                 : "port " + std::to_string(dst.port) + " is not a port of service " + ref.key) +
            ": no endpoint is picked, the tunnel relays plain TCP to " + dst.toString();
      }
      e.paths.push_back(std::move(p));
    } else {
      for (const model::Endpoint& ep : snapshot.endpoints(*service)) {
        const model::Workload* w = snapshot.workloadByUid(ep.workload_uid);
        if (!w || w->workload_ips.empty()) continue;  // no address to send to
        uint16_t target = *ref.target_port;
        auto own = ep.ports.find(dst.port);
        if (own != ep.ports.end() && own->second != 0) target = own->second;
        SocketAddress address{addressOf(*w, dst.ip), target};
        Path p = pathTo(view, policies, src_w, src, e.capture, w, address);
        const bool unhealthy = w->status == model::HealthStatus::Unhealthy ||
                               ep.status == model::HealthStatus::Unhealthy;
        if (target == 0) {
          p.skipped = "its target port is unresolved (0)";
        } else if (only_healthy && unhealthy) {
          p.skipped = "unhealthy";
        }
        e.paths.push_back(std::move(p));
      }
    }
  } else {
    e.paths.push_back(pathTo(view, policies, src_w, src, e.capture, dst_w, dst));
  }

  size_t allowed = 0;
  size_t denied = 0;
  for (const Path& p : e.paths) {
    if (!p.skipped.empty()) continue;
    (p.verdict.allowed ? allowed : denied)++;
  }
  e.verdict = allowed + denied == 0 ? "no_endpoint"
              : denied == 0         ? "allow"
              : allowed == 0        ? "deny"
                                    : "mixed";
  tell(e);
  return e;
}

nlohmann::json toJson(const Explanation& e) {
  nlohmann::json j;
  j["query"] = {{"src", e.src.toString()}, {"dst", e.dst.toString()}, {"node", e.node}};
  j["source"] = workloadJson(e.source);
  if (e.source && e.source_netns) j["source"]["netns"] = *e.source_netns;
  j["capture"] = {{"captured", e.capture.captured},
                  {"reason", e.capture.reason},
                  {"detail", e.capture.detail},
                  {"observed", e.capture.observed}};
  if (e.service) {
    j["service"] = {{"service", e.service->key},
                    {"name", e.service->name},
                    {"namespace", e.service->namespace_name},
                    {"hostname", e.service->hostname},
                    {"port", e.service->port},
                    {"target_port", e.service->target_port ? nlohmann::json(*e.service->target_port)
                                                           : nlohmann::json(nullptr)}};
  } else {
    j["service"] = nullptr;
  }
  j["waypoint"] = e.waypoint ? nlohmann::json(*e.waypoint) : nlohmann::json(nullptr);
  if (!e.waypoint_error.empty()) j["waypoint_error"] = e.waypoint_error;
  j["paths"] = nlohmann::json::array();
  for (const Path& p : e.paths) {
    nlohmann::json path;
    path["endpoint"] = workloadJson(p.endpoint);
    path["address"] = p.address.toString();
    path["transport"] = p.transport;
    path["transport_detail"] = p.transport_detail;
    path["inbound"] = {{"captured", p.inbound.captured},
                       {"listener", p.inbound.listener},
                       {"reason", p.inbound.reason},
                       {"detail", p.inbound.detail},
                       {"observed", p.inbound.observed}};
    path["policy"] = {
        {"enforced", p.policy_enforced},
        {"allowed", p.verdict.allowed},
        {"outcome",
         p.verdict.outcome.empty() ? nlohmann::json(nullptr) : nlohmann::json(p.verdict.outcome)},
        {"policy",
         p.verdict.policy.empty() ? nlohmann::json(nullptr) : nlohmann::json(p.verdict.policy)},
        {"rule", p.verdict.rule ? nlohmann::json(*p.verdict.rule) : nlohmann::json(nullptr)},
        {"reason", p.verdict.reason},
        {"source_identity",
         p.source_identity ? nlohmann::json(*p.source_identity) : nlohmann::json(nullptr)},
        {"applicable", p.applicable_policies}};
    path["verdict"] = p.skipped.empty() ? verdictWord(p) : "skipped";
    if (!p.skipped.empty()) path["skipped"] = p.skipped;
    j["paths"].push_back(std::move(path));
  }
  j["verdict"] = e.verdict;
  j["story"] = e.story;
  return j;
}

}  // namespace nodemesh::agent::explain
