#include "waypoint/proxy/proxy.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "waypoint/http1/detect.h"
#include "waypoint/proxy/heads.h"
#include "waypoint/routing/filters.h"

namespace nodemesh::waypoint {

namespace {

const model::GatewayAddress* waypointOf(const model::Snapshot& snapshot, const IpAddress& ip) {
  if (const model::Service* s = snapshot.serviceByVip(ip)) {
    return s->waypoint ? &*s->waypoint : nullptr;
  }
  const model::Workload* w = snapshot.workloadByIp(ip);
  return w && w->waypoint ? &*w->waypoint : nullptr;
}

}  // namespace

bool servedBy(const model::Snapshot& snapshot, const SocketAddress& dst,
              const std::string& self_uid) {
  const model::GatewayAddress* gateway = waypointOf(snapshot, dst.ip);
  if (!gateway) return false;
  model::WaypointTarget target = model::resolveWaypoint(snapshot, *gateway);
  return std::any_of(target.workloads.begin(), target.workloads.end(),
                     [&](const model::Workload* w) { return w->uid == self_uid; });
}

void Proxy::setSnapshot(model::SnapshotPtr snapshot) {
  table_ = snapshot ? std::make_shared<const RouteTable>(snapshot) : nullptr;
  policy_.setSnapshot(snapshot);
  jwt_.setSnapshot(snapshot);
  rate_limits_.setSnapshot(snapshot);
  // Routing preferences (locality) are the waypoint's own, as for an Envoy waypoint.
  const model::Workload* self = snapshot ? snapshot->workloadByUid(self_uid_) : nullptr;
  locality_ = self ? tunnel::lb::ClientLocality::of(*self) : tunnel::lb::ClientLocality{};
  cluster_sizes_.clear();
  if (snapshot) {
    for (const model::Service& s : snapshot->services()) {
      if (snapshot->destinationRuleFor(s)) cluster_sizes_[s.key()] = snapshot->endpoints(s).size();
    }
  }
  snapshot_ = std::move(snapshot);
}

UpstreamChoice Proxy::choose(const SocketAddress& dst) {
  UpstreamChoice c;
  if (!snapshot_) {
    c.status = hbone::kStatusServiceUnavailable;
    c.error = "no config yet";
    return c;
  }
  const model::Snapshot& snap = *snapshot_;
  if (!servedBy(snap, dst, self_uid_)) {
    c.status = hbone::kStatusBadRequest;
    c.error = dst.toString() + " does not use this waypoint";
    return c;
  }
  if (const model::Service* service = snap.serviceByVip(dst.ip)) {
    return chooseEndpoint(*service, dst.port);
  }
  // A pod addressed directly: it is the endpoint.
  c.workload = snap.workloadByIp(dst.ip);
  c.address = dst;
  if (!model::inMesh(*c.workload)) {
    c.status = hbone::kStatusServiceUnavailable;
    c.error = "workload " + c.workload->namespace_name + "/" + c.workload->name +
              " is not in the mesh (the waypoint sends over HBONE only)";
  }
  return c;
}

UpstreamChoice Proxy::chooseEndpoint(const model::Service& service, uint16_t port,
                                     const std::vector<std::string>& avoid) {
  UpstreamChoice c;
  c.service = &service;
  auto fail = [&c](int status, std::string why) {
    c.status = status;
    c.error = std::move(why);
    return c;
  };
  auto service_port = service.ports.find(port);
  if (service_port == service.ports.end()) {
    return fail(hbone::kStatusBadRequest,
                "port " + std::to_string(port) + " is not a port of " + service.key());
  }
  const model::Snapshot& snap = *snapshot_;
  // The waypoint sends over HBONE only: endpoints outside the mesh are not candidates.
  std::vector<std::string> outside;
  for (const model::Endpoint& ep : snap.endpoints(service)) {
    const model::Workload* w = snap.workloadByUid(ep.workload_uid);
    if (w && !model::inMesh(*w)) outside.push_back(w->uid);
  }
  const std::optional<tunnel::lb::OutlierPolicy> outlier = outlierPolicy(service);
  auto pick = picker_.pick(snap, service, port, locality_, outside, Clock::now(),
                           outlier ? &*outlier : nullptr);
  if (!avoid.empty()) {
    // A retry: an endpoint not tried yet if there is one (Envoy's previous_hosts), else any.
    std::vector<std::string> left_out = outside;
    left_out.insert(left_out.end(), avoid.begin(), avoid.end());
    auto other = picker_.pick(snap, service, port, locality_, left_out, Clock::now(),
                              outlier ? &*outlier : nullptr);
    if (other) pick = std::move(other);
  }
  if (!pick) {
    return fail(hbone::kStatusServiceUnavailable,
                fmt::format("no healthy endpoint in the mesh for {}: {}", service.key(),
                            pick.error().message));
  }
  c.workload = pick->workload;
  c.address = SocketAddress{pick->workload->workload_ips.front(), pick->endpoint.port};
  return c;
}

void Proxy::onConnectRequest(HboneConn& conn, hbone::StreamId stream,
                             const hbone::ConnectRequest& request) {
  ++stats_.streams;
  auto refuse = [&](int status, const std::string& why) {
    ++stats_.refused;
    spdlog::info("waypoint: CONNECT {} from {} refused with {}: {}", request.authority,
                 conn.peer().toString(), status, why);
    (void)conn.respond(stream, status);
  };
  if (!conn.peerIdentity()) return refuse(hbone::kStatusUnauthorized, "no client certificate");
  if (!snapshot_) return refuse(hbone::kStatusServiceUnavailable, "no config yet");
  if (!servedBy(*snapshot_, request.target, self_uid_)) {
    return refuse(hbone::kStatusBadRequest,
                  request.target.toString() + " does not use this waypoint");
  }
  // Answered now, as Envoy's waypoint does: the protocol is only known from the client's first
  // bytes, and an HTTP client gets its errors as HTTP responses.
  (void)conn.respond(stream, hbone::kStatusOk);
  inbound_.emplace_back();
  Inbound& in = inbound_.back();
  in.conn = &conn;
  in.stream = stream;
  in.request = request;
  in.since = Clock::now();
  in.router.proxy = this;
  in.router.dst = request.target;
  in.router.source_namespace = conn.peerIdentity()->ns();
  in.router.source_principal = conn.peerIdentity()->toString();
  in.router.source_address = connectHeaders(request).forwarded_for;
  if (!in.router.source_address) in.router.source_address = conn.peer();
  in.sniffer = std::make_unique<Sniffer>();
  in.sniffer->proxy = this;
  in.sniffer->inbound = &in;
  conn.attach(stream, in.sniffer.get());
}

void Proxy::Sniffer::onStreamData(std::span<const uint8_t> data) {
  bytes.insert(bytes.end(), data.begin(), data.end());
  if (http1::detectProtocol(bytes) != http1::DetectedProtocol::kNeedMore) {
    proxy->detected(*inbound);
  }
}

void Proxy::Sniffer::onStreamEnd() {
  ended = true;
  proxy->startPassthrough(*inbound);
}

void Proxy::Sniffer::onStreamClosed(uint32_t /*error_code*/, const std::string& /*why*/) {
  inbound->done = true;  // the client went away before saying anything
}

void Proxy::detected(Inbound& in) {
  const http1::DetectedProtocol protocol = http1::detectProtocol(in.sniffer->bytes);
  if (protocol == http1::DetectedProtocol::kHttp2) return startHttp2(in);
  if (protocol != http1::DetectedProtocol::kHttp1) return startPassthrough(in);
  ++stats_.http1;
  Inbound* p = &in;
  in.http1 =
      std::make_unique<Http1Session>(*in.conn, in.stream, in.router, [p] { p->done = true; });
  std::vector<uint8_t> first = std::move(in.sniffer->bytes);
  if (auto st = in.http1->start(std::move(first)); !st) {
    spdlog::warn("waypoint: HTTP/1.1 session: {}", st.error().message);
    (void)in.conn->reset(in.stream, hbone::kH2InternalError);
    in.conn->detach(in.stream, /*reset=*/false);
    in.done = true;
  }
}

void Proxy::startHttp2(Inbound& in) {
  ++stats_.http2;
  Inbound* p = &in;
  in.http2 = std::make_unique<Http2Session>(*in.conn, in.stream, in.router, h2_upstreams_,
                                            [p] { p->done = true; });
  std::vector<uint8_t> first = std::move(in.sniffer->bytes);
  if (auto st = in.http2->start(std::move(first)); !st) {
    spdlog::warn("waypoint: HTTP/2 session: {}", st.error().message);
    (void)in.conn->reset(in.stream, hbone::kH2InternalError);
    in.conn->detach(in.stream, /*reset=*/false);
    in.done = true;
  }
}

void Proxy::startPassthrough(Inbound& in) {
  if (in.join || in.http1 || in.http2) return;
  ++stats_.passthrough;
  Inbound* p = &in;
  in.join = std::make_unique<StreamJoin>(
      *in.conn, in.stream, [p] { p->done = true; }, /*answered=*/true);
  in.join->prefill(std::move(in.sniffer->bytes), in.sniffer->ended);
  UpstreamChoice choice = choose(in.request.target);
  if (choice.status != hbone::kStatusOk) return in.join->refuse(choice.status, choice.error);
  const PolicyFacts facts{in.router.source_principal, in.router.source_address, choice.workload,
                          choice.address};
  if (auto d = policy_.authorize(PolicySubject::kConnection, facts); !d.allowed) {
    return in.join->refuse(hbone::kStatusUnauthorized, d.reason);  // answered 200: a reset
  }
  std::string error;
  HboneConn* up = connectionFor(choice, &error);
  if (!up) return in.join->refuse(hbone::kStatusServiceUnavailable, error);
  in.endpoint_uid = choice.workload->uid;
  in.endpoint_port = choice.address.port;
  endpointStarted(in.endpoint_uid, in.endpoint_port);
  ++stats_.active;
  reportPassthrough(in, /*closing=*/false);
  in.join->connect(*up, choice.address.toString(), connectHeaders(in.request));
}

HboneConn* Proxy::connectionFor(const UpstreamChoice& choice, std::string* error) {
  const model::Workload& w = *choice.workload;
  auto peer_id = identity::SpiffeId::create(w.trust_domain, w.namespace_name, w.service_account);
  if (!peer_id) {
    *error = peer_id.error().message;
    return nullptr;
  }
  return conns_->clientFor(*peer_id, SocketAddress{choice.address.ip, 15008}, error);
}

hbone::ConnectHeaders Proxy::connectHeaders(const hbone::ConnectRequest& request) const {
  hbone::ConnectHeaders headers;
  // The original client, as the node agent told us (forwarded: for="ip:port").
  const std::string& fwd = request.forwarded;
  if (auto at = fwd.find("for=\""); at != std::string::npos) {
    auto end = fwd.find('"', at + 5);
    if (end != std::string::npos) {
      if (auto addr = SocketAddress::parse(fwd.substr(at + 5, end - at - 5))) {
        headers.forwarded_for = *addr;
      }
    }
  }
  headers.baggage = request.baggage;
  headers.traceparent = request.traceparent;
  return headers;
}

Proxy::Routed Proxy::InboundRouter::routeToEndpoint(RequestHead& head, bool grpc, bool http2) {
  Routed d;
  auto fail = [&d](int status, std::string why) {
    d.status = status;
    d.error = std::move(why);
    return d;
  };
  std::shared_ptr<const RouteTable> table = proxy->table_;
  const model::Service* service = table ? table->snapshot().serviceByVip(dst.ip) : nullptr;
  if (!service) {
    d.choice = proxy->choose(dst);  // a pod addressed directly: no routes
  } else {
    RouteTarget target;
    target.service_key = service->key();
    target.port = dst.port;
    target.source_namespace = source_namespace;
    target.grpc = grpc;
    d.table = table;
    d.decision = table->route(target, head, proxy->route_random_);
    const RouteDecision& decision = *d.decision;
    if (decision.action == RouteAction::Respond) {
      if (decision.response) d.response_headers = decision.response->headers;
      return fail(decision.status, decision.reason);
    }
    const ChosenBackend& backend = *decision.backend;
    d.choice = proxy->chooseEndpoint(*backend.service, backend.port);
  }
  if (d.choice.status != hbone::kStatusOk) {
    return fail(d.choice.status == hbone::kStatusBadRequest ? 404 : 503, d.choice.error);
  }
  // RequestAuthentication first (Envoy's jwt_authn filter runs before its RBAC filter): a token
  // that is present must verify; a valid one gives the policies its principal and claims.
  JwtCheck jwt;
  if (service) {
    jwt = proxy->jwt_.check(*service, head, std::chrono::system_clock::now());
    d.authz.jwt = jwt.summary();
    if (jwt.result == JwtCheck::Result::kRejected) {
      d.response_headers.push_back({"www-authenticate", jwt.www_authenticate});
      return fail(401, std::string(jwt.failure->message()));
    }
    // The token header removed, claims added: the HTTP/1.1 head is rebuilt from `head`.
    if (jwt.result == JwtCheck::Result::kAuthenticated) d.filtered = true;
  }
  // Policies see the request as the client sent it (Envoy's RBAC filter runs before the
  // router's filters), with its HTTP attributes.
  std::string policy_host;
  std::string policy_path;
  policy::RequestAttributes request = requestAttributes(head, policy_host, policy_path);
  if (jwt.result == JwtCheck::Result::kAuthenticated) request.auth = &jwt.auth;
  const PolicyFacts facts{source_principal, source_address, d.choice.workload, d.choice.address,
                          &request};
  std::string jwt_summary = std::move(d.authz.jwt);
  d.authz = proxy->policy_.authorize(PolicySubject::kRequest, facts);
  d.authz.jwt = std::move(jwt_summary);
  if (!d.authz.allowed) {
    return fail(403, "RBAC: access denied");  // Envoy's RBAC filter's answer
  }
  if (d.decision && !d.decision->default_route) {
    applyRequestFilters(*d.decision, head);
    d.filtered = true;
  }
  // Rate limits last: a request refused for another reason is not charged to its client.
  RateLimitRequest limit_request;
  std::string service_name;
  if (service) service_name = service->namespace_name + "/" + service->name;
  limit_request.service = service_name;
  std::string route_key;
  if (d.decision && d.decision->matched && d.decision->matched->route) {
    route_key = d.decision->matched->route->key();
    limit_request.route_kind = toString(d.decision->matched->kind);
    limit_request.route = route_key;
  }
  limit_request.principal = source_principal;
  limit_request.headers = &head.headers;
  if (RateLimitVerdict v = proxy->rate_limits_.check(limit_request); v.limited) {
    d.response_headers = v.responseHeaders();
    d.flag = ResponseFlag::kRateLimited;
    return fail(429, "local_rate_limited");  // Envoy's local rate limit filter's body
  }
  // Circuit breaking (DestinationRule connectionPool) on the backend the request would go to.
  if (d.choice.service) {
    if (auto why = proxy->overflow(*d.choice.service, http2)) {
      ++proxy->stats_.upstream_overflow;
      spdlog::debug("waypoint: circuit breaker: {}", *why);
      d.flag = ResponseFlag::kUpstreamOverflow;
      // Envoy's body for an overflow.
      return fail(503,
                  "upstream connect error or disconnect/reset before headers. reset reason: "
                  "overflow");
    }
  }
  return d;
}

RouteResult Proxy::InboundRouter::route(const http1::RequestHead& head,
                                        const http1::RequestInfo& info) {
  RouteResult r;
  auto fail = [&r](int status, std::string why) {
    r.status = status;
    r.error = std::move(why);
    return r;
  };
  RequestHead routed = toRoutingHead(head, info);
  Routed d = routeToEndpoint(routed, /*grpc=*/false, /*http2=*/false);
  r.authz = std::move(d.authz);
  const bool forwarded = d.decision && d.decision->action == RouteAction::Forward;
  if (forwarded) {
    r.table = d.table;
    r.decision = std::move(d.decision);
  }
  if (d.status != hbone::kStatusOk) {
    for (const auto& h : d.response_headers) r.response_headers.add(h.name, h.value);
    r.flag = d.flag;
    return fail(d.status, d.error);
  }
  if (d.filtered) r.forward = toHttp1Head(routed, head.version);
  // RequestMirror: an endpoint of each mirror service; one that has none is skipped.
  if (r.decision) {
    for (const MirrorTarget& m : r.decision->mirrors) {
      UpstreamChoice mc = proxy->chooseEndpoint(*m.service, m.port);
      std::string mirror_error;
      HboneConn* mirror_conn =
          mc.status == hbone::kStatusOk ? proxy->connectionFor(mc, &mirror_error) : nullptr;
      if (mirror_conn) r.mirrors.push_back({mirror_conn, mc.address.toString(), mc.workload->uid});
    }
  }
  const UpstreamChoice& choice = d.choice;
  std::string error;
  r.conn = proxy->connectionFor(choice, &error);
  if (!r.conn) return fail(503, error);
  r.authority = choice.address.toString();
  r.endpoint_uid = choice.workload->uid;
  r.endpoint_port = choice.address.port;
  if (choice.service) {
    r.service_key = choice.service->key();
    const model::DestinationRule* rule = proxy->ruleFor(*choice.service);
    if (rule && rule->connection_pool) {
      r.max_requests_per_connection =
          rule->connection_pool->max_requests_per_connection.value_or(0);
    }
  }
  proxy->endpointStarted(r.endpoint_uid, r.endpoint_port, r.service_key);
  if (!r.service_key.empty()) proxy->retryBudget(r.service_key).deposit(Clock::now());
  return r;
}

UpstreamChoice Proxy::InboundRouter::retryChoice(const std::optional<RouteDecision>& decision,
                                                 const std::vector<std::string>& tried) {
  UpstreamChoice choice;
  auto fail = [&choice](std::string why) {
    choice.status = 503;
    choice.error = std::move(why);
    return choice;
  };
  if (!proxy->snapshot_) return fail("no config");
  if (decision && decision->backend) {
    // The snapshot may have changed since the first attempt: the backend as it is now.
    const std::string key = decision->backend->service->key();
    const model::Service* service = proxy->snapshot_->serviceByKey(key);
    if (!service) return fail("backend " + key + " is gone");
    choice = proxy->chooseEndpoint(*service, decision->backend->port, tried);
  } else {
    choice = proxy->choose(dst);  // a pod addressed directly: the same pod
  }
  if (choice.status != hbone::kStatusOk) choice.status = 503;
  return choice;
}

RetryPick Proxy::InboundRouter::retarget(const std::optional<RouteDecision>& decision,
                                         const std::vector<std::string>& tried) {
  RetryPick p;
  auto fail = [&p](std::string why) {
    p.status = 503;
    p.error = std::move(why);
    return p;
  };
  UpstreamChoice choice = retryChoice(decision, tried);
  if (choice.status != hbone::kStatusOk) return fail(std::move(choice.error));
  std::string error;
  HboneConn* conn = proxy->connectionFor(choice, &error);
  if (!conn) return fail(error);
  p.target =
      UpstreamTarget{conn, choice.address.toString(), choice.workload->uid, choice.address.port};
  proxy->endpointStarted(p.target.endpoint_uid, p.target.endpoint_port,
                         choice.service ? choice.service->key() : std::string());
  return p;
}

H2RetryPick Proxy::InboundRouter::retargetH2(const std::optional<RouteDecision>& decision,
                                             const std::vector<std::string>& tried) {
  H2RetryPick p;
  auto fail = [&p](std::string why) {
    p.status = 503;
    p.error = std::move(why);
    return p;
  };
  UpstreamChoice choice = retryChoice(decision, tried);
  if (choice.status != hbone::kStatusOk) return fail(std::move(choice.error));
  auto connect = h2Connect(choice);
  if (!connect) return fail(connect.error().message);
  p.authority = choice.address.toString();
  p.endpoint_uid = choice.workload->uid;
  p.endpoint_port = choice.address.port;
  if (choice.service) p.service_key = choice.service->key();
  p.connect = std::move(*connect);
  proxy->endpointStarted(p.endpoint_uid, p.endpoint_port, p.service_key, /*http2=*/true);
  return p;
}

bool Proxy::InboundRouter::admitRetry(std::string_view service_key) {
  if (service_key.empty()) return true;  // a pod addressed directly: its attempts bound it
  return proxy->retryBudget(service_key).withdraw(Clock::now());
}

RetryBudget& Proxy::retryBudget(std::string_view service_key) {
  auto it = retry_budgets_.find(service_key);
  if (it == retry_budgets_.end()) {
    it = retry_budgets_.emplace(std::string(service_key), retry_budget_).first;
  }
  return it->second;
}

H2RouteResult Proxy::InboundRouter::routeH2(const RequestHead& head, bool grpc) {
  H2RouteResult r;
  r.forward = head;
  Routed d = routeToEndpoint(r.forward, grpc, /*http2=*/true);
  r.authz = std::move(d.authz);
  r.table = std::move(d.table);
  r.decision = std::move(d.decision);
  if (d.status != hbone::kStatusOk) {
    r.status = d.status;
    r.error = std::move(d.error);
    r.response_headers = std::move(d.response_headers);
    r.flag = d.flag;
    return r;
  }
  auto connect = h2Connect(d.choice);
  if (!connect) {
    r.status = 503;
    r.error = connect.error().message;
    return r;
  }
  r.authority = d.choice.address.toString();
  r.endpoint_uid = d.choice.workload->uid;
  r.endpoint_port = d.choice.address.port;
  r.connect = std::move(*connect);
  // RequestMirror: an endpoint of each mirror service; one that has none is skipped.
  if (r.decision) {
    for (const MirrorTarget& m : r.decision->mirrors) {
      UpstreamChoice mc = proxy->chooseEndpoint(*m.service, m.port);
      if (mc.status != hbone::kStatusOk) continue;
      if (auto mirror_connect = h2Connect(mc)) {
        r.mirrors.push_back({mc.address.toString(), std::move(*mirror_connect)});
      }
    }
  }
  if (d.choice.service) r.service_key = d.choice.service->key();
  proxy->endpointStarted(r.endpoint_uid, r.endpoint_port, r.service_key, /*http2=*/true);
  if (!r.service_key.empty()) proxy->retryBudget(r.service_key).deposit(Clock::now());
  return r;
}

Result<std::function<HboneConn*(std::string*)>> Proxy::InboundRouter::h2Connect(
    const UpstreamChoice& choice) const {
  const model::Workload& w = *choice.workload;
  // Kept by value: a retry may connect after the snapshot changed.
  auto peer_id = identity::SpiffeId::create(w.trust_domain, w.namespace_name, w.service_account);
  if (!peer_id) return peer_id.error();
  return std::function<HboneConn*(std::string*)>(
      [conns = proxy->conns_, id = std::move(*peer_id),
       hbone = SocketAddress{choice.address.ip, 15008}](std::string* error) {
        return conns->clientFor(id, hbone, error);
      });
}

void Proxy::InboundRouter::finished(const EndpointOutcome& outcome) {
  proxy->endpointDone(outcome);
}

void Proxy::InboundRouter::requestDone(const ExchangeRecord& x) {
  if (!proxy->telemetry_ || !proxy->snapshot_) return;
  const model::Snapshot& snap = *proxy->snapshot_;
  RequestRecord r;
  r.source_workload = source_address ? snap.workloadByIp(source_address->ip) : nullptr;
  r.source_principal = source_principal;
  r.source_address = source_address;
  r.destination_service = snap.serviceByVip(dst.ip);
  r.destination_workload = x.endpoint_uid.empty() ? nullptr : snap.workloadByUid(x.endpoint_uid);
  std::string destination_principal =
      r.destination_workload ? r.destination_workload->identity() : "";
  r.destination_principal = destination_principal;
  r.upstream_host = x.upstream_host;
  r.upstream_attempts = x.upstream_attempts;
  r.route_name = x.route_name;
  r.authz_result = x.authz.result();
  r.authz_policy = x.authz.policy;
  r.jwt = x.authz.jwt;
  r.authz_rule = x.authz.rule;
  r.method = x.method;
  r.authority = x.authority;
  r.path = x.path;
  r.http_version = x.http2                                ? HttpVersion::kHttp2
                   : x.version == http1::Version::kHttp10 ? HttpVersion::kHttp10
                                                          : HttpVersion::kHttp11;
  r.grpc = x.grpc;
  r.grpc_status = x.grpc_status;
  r.user_agent = x.user_agent;
  r.request_id = x.request_id;
  r.trace_id = x.trace_id;
  r.span_id = x.span_id;
  r.response_code = x.response_code;
  r.response_flags = x.flags;
  r.request_bytes = x.request_bytes;
  r.response_bytes = x.response_bytes;
  r.start_time = x.start;
  r.duration = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - x.start_steady);
  proxy->telemetry_->onRequest(r);
}

void Proxy::reportPassthrough(const Inbound& in, bool closing) {
  if (!telemetry_ || !snapshot_) return;
  const model::Snapshot& snap = *snapshot_;
  PassthroughRecord r;
  r.source_workload =
      in.router.source_address ? snap.workloadByIp(in.router.source_address->ip) : nullptr;
  r.source_principal = in.router.source_principal;
  r.destination_service = snap.serviceByVip(in.router.dst.ip);
  r.destination_workload = snap.workloadByUid(in.endpoint_uid);
  std::string destination_principal =
      r.destination_workload ? r.destination_workload->identity() : "";
  r.destination_principal = destination_principal;
  if (closing && in.join) {
    r.bytes_from_client = in.join->totals().to_upstream;
    r.bytes_to_client = in.join->totals().to_downstream;
    if (!in.join->error().empty()) r.response_flags.set(ResponseFlag::kUpstreamConnectionFailure);
  }
  if (closing) {
    telemetry_->onPassthroughClose(r);
  } else {
    telemetry_->onPassthroughOpen(r);
  }
}

void Proxy::endpointStarted(const std::string& uid, uint16_t port, const std::string& service_key,
                            bool http2) {
  picker_.connectStarted(tunnel::lb::EndpointId{uid, port}, Clock::now());
  if (service_key.empty()) return;
  ClusterLoad& load = cluster_load_[service_key];
  ++load.total;
  if (!http2) ++load.http1;
}

void Proxy::endpointDone(const EndpointOutcome& outcome) {
  const tunnel::lb::EndpointId id{std::string(outcome.endpoint_uid), outcome.endpoint_port};
  if (!outcome.service.empty()) {
    auto it = cluster_load_.find(outcome.service);
    if (it != cluster_load_.end()) {
      if (it->second.total > 0) --it->second.total;
      if (!outcome.http2 && it->second.http1 > 0) --it->second.http1;
      if (it->second.total == 0) cluster_load_.erase(it);
    }
  }
  switch (outcome.kind) {
    case EndpointOutcome::Kind::kResponded:
      picker_.connectSucceeded(id, outcome.latency, Clock::now());
      picker_.connectionClosed(id);
      responseSeen(outcome);
      break;
    case EndpointOutcome::Kind::kFailed:
      picker_.connectFailed(id, Clock::now());
      break;
    case EndpointOutcome::Kind::kAbandoned:
      picker_.connectionClosed(id);
      break;
  }
}

const model::DestinationRule* Proxy::ruleFor(const model::Service& service) const {
  return snapshot_ ? snapshot_->destinationRuleFor(service) : nullptr;
}

std::optional<tunnel::lb::OutlierPolicy> Proxy::outlierPolicy(const model::Service& service) const {
  const model::DestinationRule* rule = ruleFor(service);
  if (!rule || !rule->outlier_detection) return std::nullopt;
  const model::OutlierDetection& od = *rule->outlier_detection;
  tunnel::lb::OutlierPolicy p;
  p.consecutive_5xx = od.consecutive_5xx_errors;
  p.consecutive_gateway = od.consecutive_gateway_errors;
  p.interval = od.interval;
  p.base_ejection = od.base_ejection_time;
  p.max_ejection_percent = od.max_ejection_percent;
  p.min_health_percent = od.min_health_percent;
  return p;
}

void Proxy::responseSeen(const EndpointOutcome& outcome) {
  if (outcome.service.empty() || !snapshot_) return;
  const model::Service* service = snapshot_->serviceByKey(outcome.service);
  if (!service) return;  // gone with a new snapshot
  const std::optional<tunnel::lb::OutlierPolicy> policy = outlierPolicy(*service);
  if (!policy) return;
  auto size = cluster_sizes_.find(outcome.service);
  const size_t endpoints = size != cluster_sizes_.end() ? size->second : 1;
  const tunnel::lb::EndpointId id{std::string(outcome.endpoint_uid), outcome.endpoint_port};
  const tunnel::lb::OutlierVerdict v = picker_.responseReceived(
      id, outcome.status, *policy, outcome.service, endpoints, Clock::now());
  const model::Workload* w = snapshot_->workloadByUid(outcome.endpoint_uid);
  const std::string name =
      w ? w->namespace_name + "/" + w->name : std::string(outcome.endpoint_uid);
  if (v.kind == tunnel::lb::OutlierVerdict::Kind::kEjected) {
    ++stats_.outlier_ejections;
    spdlog::info(
        "waypoint: outlier detection: ejected {} ({}:{}) of {} for {} ms after {} {} responses "
        "(ejection {} in a row)",
        name, outcome.endpoint_uid, outcome.endpoint_port, outcome.service, v.duration.count(),
        v.errors, v.cause, v.ejections);
  } else if (v.kind == tunnel::lb::OutlierVerdict::Kind::kCapped) {
    spdlog::info(
        "waypoint: outlier detection: {} ({}:{}) of {} not ejected after {} {} responses: {} of "
        "its {} endpoints are ejected already (maxEjectionPercent {})",
        name, outcome.endpoint_uid, outcome.endpoint_port, outcome.service, v.errors, v.cause,
        v.ejected, endpoints, policy->max_ejection_percent);
  }
}

std::optional<std::string> Proxy::overflow(const model::Service& service, bool http2) const {
  const model::DestinationRule* rule = ruleFor(service);
  if (!rule || !rule->connection_pool) return std::nullopt;
  const model::ConnectionPool& pool = *rule->connection_pool;
  auto it = cluster_load_.find(service.key());
  const ClusterLoad load = it != cluster_load_.end() ? it->second : ClusterLoad{};
  // Envoy's max_requests (Istio's http2MaxRequests) bounds the requests in flight of either
  // protocol.
  if (pool.http2_max_requests && load.total >= *pool.http2_max_requests) {
    return fmt::format("{}: {} requests in flight, http2MaxRequests {}", service.key(), load.total,
                       *pool.http2_max_requests);
  }
  // HTTP/1.1: each request in flight holds a connection. The waypoint does not queue a request
  // for a free connection: what Envoy would hold pending is sent at once on a connection of its
  // own, so the bound is maxConnections + http1MaxPendingRequests (either unset: unlimited).
  if (!http2 && pool.max_connections && pool.http1_max_pending_requests) {
    const uint64_t limit =
        uint64_t{*pool.max_connections} + uint64_t{*pool.http1_max_pending_requests};
    if (load.http1 >= limit) {
      return fmt::format(
          "{}: {} HTTP/1.1 requests in flight, maxConnections {} + "
          "http1MaxPendingRequests {}",
          service.key(), load.http1, *pool.max_connections, *pool.http1_max_pending_requests);
    }
  }
  return std::nullopt;
}

void Proxy::onTimer() {
  const auto now = Clock::now();
  if (now >= next_prune_) {
    picker_.prune(now);    // the state of endpoints that are gone
    rate_limits_.prune();  // per-client limiter states back to full
    std::erase_if(retry_budgets_, [now](const auto& b) { return b.second.idle(now); });
    next_prune_ = now + std::chrono::seconds(10);
  }
  h2_upstreams_.onTimer(now);
  upstreams_.onTimer(now);
  stats_.upstream = upstreams_.stats();
  for (Inbound& in : inbound_) {
    if (in.http1) in.http1->onTimer(now, request_timeout_);
    if (in.http2) in.http2->onTimer(now, request_timeout_);
    if (!in.done && !in.join && !in.http1 && !in.http2 &&
        now - in.since >= std::chrono::seconds(1)) {
      startPassthrough(in);  // a protocol where the server speaks first
    }
  }
}

ProxyStats Proxy::stats() const {
  ProxyStats s = stats_;
  s.policy = policy_.stats();
  s.jwt = jwt_.stats();
  s.rate_limited = rate_limits_.counters();
  s.http2_unconsumed_bytes = h2_upstreams_.unconsumedBytes();
  for (const Inbound& in : inbound_) {
    if (in.http2) s.http2_unconsumed_bytes += in.http2->unconsumedBytes();
  }
  return s;
}

void Proxy::reap() {
  upstreams_.reap();
  stats_.upstream = upstreams_.stats();
  for (auto it = inbound_.begin(); it != inbound_.end();) {
    if (it->http1) it->http1->reap();
    if (it->http2) it->http2->reap();
    if (!it->done) {
      ++it;
      continue;
    }
    if (!it->endpoint_uid.empty()) {
      // A passthrough connection gives no latency sample; one that failed counts as a failure.
      const bool failed = it->join && !it->join->error().empty();
      endpointDone({it->endpoint_uid, it->endpoint_port,
                    failed ? EndpointOutcome::Kind::kFailed : EndpointOutcome::Kind::kAbandoned});
      --stats_.active;
      reportPassthrough(*it, /*closing=*/true);
    }
    if (it->join) {
      stats_.bytes_in += it->join->totals().to_upstream;
      stats_.bytes_out += it->join->totals().to_downstream;
    }
    if (it->http1) {
      stats_.requests += it->http1->requests();
      stats_.bytes_in += it->http1->bytesFromClient();
      stats_.bytes_out += it->http1->bytesToClient();
    }
    if (it->http2) {
      stats_.requests += it->http2->requests();
      stats_.bytes_in += it->http2->bytesFromClient();
      stats_.bytes_out += it->http2->bytesToClient();
    }
    it = inbound_.erase(it);
  }
  h2_upstreams_.reap();
  stats_.h2_upstreams = h2_upstreams_.stats();
}

}  // namespace nodemesh::waypoint
