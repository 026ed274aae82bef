#include "waypoint/admin.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <set>

#include <nlohmann/json.hpp>

#include "model/mesh.h"
#include "waypoint/proxy/jwt_auth.h"
#include "waypoint/proxy/policy.h"
#include "waypoint/routing/explain.h"

namespace nodemesh::waypoint {

namespace {

using nlohmann::json;

// Whether `service` sends its traffic to the waypoint workload `self_uid`.
bool usesWaypoint(const model::Snapshot& snapshot, const model::Service& service,
                  const std::string& self_uid) {
  if (!service.waypoint) return false;
  model::WaypointTarget target = model::resolveWaypoint(snapshot, *service.waypoint);
  return std::any_of(target.workloads.begin(), target.workloads.end(),
                     [&](const model::Workload* w) { return w->uid == self_uid; });
}

json headerMatchesJson(const std::vector<model::HeaderMatch>& matches) {
  json out = json::array();
  for (const auto& m : matches) {
    out.push_back(
        {{"type", std::string(model::toString(m.type))}, {"name", m.name}, {"value", m.value}});
  }
  return out;
}

json matchJson(const model::HttpRouteMatch& m) {
  json j{{"path", {{"type", std::string(model::toString(m.path.type))}, {"value", m.path.value}}},
         {"headers", headerMatchesJson(m.headers)},
         {"queryParams", headerMatchesJson(m.query_params)}};
  if (m.method) j["method"] = *m.method;
  return j;
}

json matchJson(const model::GrpcRouteMatch& m) {
  json j{{"headers", headerMatchesJson(m.headers)}};
  if (m.method) {
    j["method"] = {{"type", std::string(model::toString(m.method->type))},
                   {"service", m.method->service},
                   {"method", m.method->method}};
  }
  return j;
}

json filtersJson(const std::vector<model::RouteFilter>& filters) {
  json out = json::array();
  for (const auto& f : filters) out.push_back(describeFilter(f));
  return out;
}

// A rule's backends as the engine resolves them: "namespace/name" (the route's namespace by
// default), the port (the parent's port when absent), the weight and its share, and whether
// the Service and port exist (a missing one gets its share of requests answered 500).
json backendsJson(const model::Snapshot& snapshot, const std::vector<model::RouteBackendRef>& refs,
                  const std::string& route_namespace) {
  uint64_t total = 0;
  for (const auto& b : refs) total += b.weight;
  json out = json::array();
  for (const auto& b : refs) {
    const std::string name = b.ref.namespace_name.value_or(route_namespace) + "/" + b.ref.name;
    const model::Service* svc = snapshot.serviceByName(name);
    json j{{"service", name},
           {"weight", b.weight},
           {"percent", total == 0 ? 0.0 : 100.0 * b.weight / static_cast<double>(total)},
           {"filters", filtersJson(b.filters)}};
    j["port"] = b.ref.port ? json(*b.ref.port) : json(nullptr);
    j["exists"] = svc != nullptr && (!b.ref.port || svc->ports.count(*b.ref.port) > 0);
    out.push_back(std::move(j));
  }
  return out;
}

json parentsJson(const model::Snapshot& snapshot, const std::vector<model::ParentRef>& parents,
                 const std::string& route_namespace, const std::string& self_uid) {
  json out = json::array();
  for (const auto& p : parents) {
    if (!p.isService()) continue;  // Gateway parents are ignored by a mesh waypoint
    const std::string name = p.namespace_name.value_or(route_namespace) + "/" + p.name;
    const model::Service* svc = snapshot.serviceByName(name);
    json j{{"service", name}, {"exists", svc != nullptr}};
    j["port"] = p.port ? json(*p.port) : json(nullptr);
    if (p.section_name) j["sectionName"] = *p.section_name;
    j["servedHere"] = svc != nullptr && usesWaypoint(snapshot, *svc, self_uid);
    out.push_back(std::move(j));
  }
  return out;
}

template <typename Route>
json routeJson(const model::Snapshot& snapshot, const Route& route, RouteKind kind,
               const std::string& self_uid) {
  const std::string& ns = route.metadata.namespace_name;
  json j{{"kind", std::string(toString(kind))},
         {"name", route.key()},
         {"parents", parentsJson(snapshot, route.parent_refs, ns, self_uid)},
         {"hostnames", route.hostnames}};
  if (route.metadata.creation_timestamp) {
    j["creationTimestamp"] = fmt::format(
        "{:%Y-%m-%dT%H:%M:%SZ}",
        fmt::gmtime(std::chrono::system_clock::to_time_t(std::chrono::system_clock::time_point(
            route.metadata.creation_timestamp->time_since_epoch()))));
  }
  json rules = json::array();
  for (size_t i = 0; i < route.rules.size(); ++i) {
    const auto& rule = route.rules[i];
    json r{{"index", i},
           {"name", rule.name.value_or("")},
           {"matches", json::array()},
           {"filters", filtersJson(rule.filters)},
           {"backends", backendsJson(snapshot, rule.backend_refs, ns)}};
    for (const auto& m : rule.matches) r["matches"].push_back(matchJson(m));
    if constexpr (std::is_same_v<Route, model::HttpRoute>) {
      if (rule.timeouts.request) r["timeouts"]["requestMs"] = rule.timeouts.request->count();
      if (rule.timeouts.backend_request) {
        r["timeouts"]["backendRequestMs"] = rule.timeouts.backend_request->count();
      }
      if (rule.retry) {
        json retry{{"codes", rule.retry->codes}};
        if (rule.retry->attempts) retry["attempts"] = *rule.retry->attempts;
        if (rule.retry->backoff) retry["backoffMs"] = rule.retry->backoff->count();
        r["retry"] = std::move(retry);
      }
    }
    rules.push_back(std::move(r));
  }
  j["rules"] = std::move(rules);
  return j;
}

http::HttpResponse jsonResponse(int status, const json& body) {
  http::HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = body.dump(2) + "\n";
  return r;
}

http::HttpResponse badRequest(const std::string& message) {
  return jsonResponse(400, json{{"error", message}});
}

bool isToken(std::string_view s) {
  // RFC 9110 section 5.6.2 tchar.
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

bool hasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

}  // namespace

json routesJson(const model::Snapshot& snapshot, const std::string& self_uid) {
  json services = json::array();
  std::set<const model::HttpRoute*> http;
  std::set<const model::GrpcRoute*> grpc;
  for (const model::Service& s : snapshot.services()) {
    if (!usesWaypoint(snapshot, s, self_uid)) continue;
    json ports = json::array();
    for (const auto& [port, target] : s.ports) ports.push_back(port);
    services.push_back({{"service", s.namespace_name + "/" + s.name},
                        {"hostname", s.hostname},
                        {"ports", std::move(ports)}});
    model::AttachedRoutes attached = snapshot.routesForService(s.key());
    http.insert(attached.http.begin(), attached.http.end());
    grpc.insert(attached.grpc.begin(), attached.grpc.end());
  }
  // In file order, HTTPRoutes first.
  json routes = json::array();
  for (const model::HttpRoute& r : snapshot.httpRoutes()) {
    if (http.count(&r)) routes.push_back(routeJson(snapshot, r, RouteKind::Http, self_uid));
  }
  for (const model::GrpcRoute& r : snapshot.grpcRoutes()) {
    if (grpc.count(&r)) routes.push_back(routeJson(snapshot, r, RouteKind::Grpc, self_uid));
  }
  return json{
      {"waypoint", self_uid}, {"services", std::move(services)}, {"routes", std::move(routes)}};
}

namespace {

// RequestAuthentication and AuthorizationPolicy for a forwarded request, by the code the data
// path runs (WaypointJwt::check, then WaypointPolicy::check, proxy.cc routeToEndpoint): the
// token of `request` (its authorization header) is verified now, and the policies are checked
// against each endpoint of the backend (their selectors may differ). A 401 or 403 becomes the
// explanation's status.
void explainAccess(const model::SnapshotPtr& snapshot, const model::Service& service,
                   const ChosenBackend& backend, RequestHead request,
                   const std::string& source_principal, json& j, std::string& text) {
  WaypointJwt jwt;
  jwt.setSnapshot(snapshot);
  const JwtCheck check = jwt.check(service, request, std::chrono::system_clock::now());
  json a;
  a["sourcePrincipal"] = source_principal.empty() ? json(nullptr) : json(source_principal);
  std::string line;
  switch (check.result) {
    case JwtCheck::Result::kNotApplicable:
      a["jwt"] = {{"result", "none"}};
      line = "no RequestAuthentication applies";
      break;
    case JwtCheck::Result::kNoToken:
      a["jwt"] = {{"result", "missing"}};
      line = "no token: the request goes on unauthenticated (the policies decide)";
      break;
    case JwtCheck::Result::kAuthenticated:
      a["jwt"] = {{"result", "authenticated"}, {"principal", check.auth.principal}};
      line = "token verified: request principal " + check.auth.principal;
      break;
    case JwtCheck::Result::kRejected:
      a["jwt"] = {{"result", "rejected"}, {"reason", check.summary()}};
      line = fmt::format("token refused: 401 {}", check.failure->message());
      break;
  }
  text += "  authentication: " + line + "\n";
  if (check.result == JwtCheck::Result::kRejected) {
    j["status"] = 401;
    j["outcome"] = "respond 401 (jwt)";
    j["authorization"] = a;
    return;
  }
  WaypointPolicy policy;
  policy.setSnapshot(snapshot);
  std::string host;
  std::string path;
  policy::RequestAttributes attributes = requestAttributes(request, host, path);
  if (check.result == JwtCheck::Result::kAuthenticated) attributes.auth = &check.auth;
  json per_endpoint = json::array();
  bool denied = false;
  const auto service_port = backend.service->ports.find(backend.port);
  for (const model::Endpoint& ep : snapshot->endpoints(*backend.service)) {
    const model::Workload* w = snapshot->workloadByUid(ep.workload_uid);
    if (!w || w->workload_ips.empty() || service_port == backend.service->ports.end()) continue;
    const auto target_port = ep.ports.find(backend.port);
    const SocketAddress address{w->workload_ips.front(), target_port != ep.ports.end()
                                                             ? target_port->second
                                                             : service_port->second};
    const PolicyFacts facts{source_principal, std::nullopt, w, address, &attributes};
    const PolicyDecision d = policy.check(facts);
    denied = denied || !d.allowed;
    json one = {{"workload", w->namespace_name + "/" + w->name},
                {"result", d.allowed ? "allow" : "deny"},
                {"policy", d.policy.empty() ? json(nullptr) : json(d.policy)},
                {"rule", d.rule ? json(*d.rule) : json(nullptr)},
                {"reason", d.reason}};
    text += fmt::format("  authorization for {}: {}{}\n", w->namespace_name + "/" + w->name,
                        d.allowed ? "" : "403, ", d.reason);
    per_endpoint.push_back(std::move(one));
  }
  a["endpoints"] = std::move(per_endpoint);
  j["authorization"] = std::move(a);
  if (denied) {
    j["status"] = 403;
    j["outcome"] = "respond 403 (RBAC) for at least one endpoint";
  }
}

}  // namespace

http::HttpResponse explainRequest(const model::SnapshotPtr& snapshot, const std::string& self_uid,
                                  const QueryParams& query) {
  if (!snapshot) return jsonResponse(503, json{{"error", "no config yet"}});
  static const std::set<std::string, std::less<>> kSingle = {
      "service", "port", "method", "path", "host", "grpc", "source_namespace", "source_principal"};
  std::map<std::string, std::string, std::less<>> single;
  std::vector<std::string> headers;
  for (const auto& [key, value] : query) {
    if (key == "header") {
      headers.push_back(value);
    } else if (!kSingle.count(key)) {
      return badRequest("unknown parameter '" + key +
                        "' (known: service, port, method, path, host, header, grpc, "
                        "source_namespace, source_principal)");
    } else if (!single.emplace(key, value).second) {
      return badRequest("parameter '" + key + "' given more than once");
    }
  }
  auto get = [&single](std::string_view key) -> const std::string* {
    auto it = single.find(key);
    return it == single.end() ? nullptr : &it->second;
  };

  const std::string* service_name = get("service");
  if (!service_name || service_name->empty()) {
    return badRequest("missing parameter 'service' (namespace/name, e.g. shop/cart)");
  }
  if (std::count(service_name->begin(), service_name->end(), '/') != 1 ||
      service_name->front() == '/' || service_name->back() == '/') {
    return badRequest("service: want namespace/name, got '" + *service_name + "'");
  }
  const model::Service* service = snapshot->serviceByName(*service_name);
  if (!service) service = snapshot->serviceByKey(*service_name);  // namespace/hostname
  if (!service) return badRequest("service " + *service_name + " is not in the config");

  const std::string* port_text = get("port");
  if (!port_text) return badRequest("missing parameter 'port' (a port of the service)");
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text->data(), port_text->data() + port_text->size(), port);
  if (ec != std::errc() || end != port_text->data() + port_text->size() || port == 0 ||
      port > 65535) {
    return badRequest("port: want 1-65535, got '" + *port_text + "'");
  }
  if (!service->ports.count(static_cast<uint16_t>(port))) {
    std::string ports;
    for (const auto& [p, target] : service->ports) {
      if (!ports.empty()) ports += ", ";
      ports += std::to_string(p);
    }
    return badRequest(fmt::format("port {} is not a port of {} (ports: {})", port, *service_name,
                                  ports.empty() ? "none" : ports));
  }

  RouteTarget target;
  target.service_key = service->key();
  target.port = static_cast<uint16_t>(port);
  if (const std::string* g = get("grpc")) {
    if (*g == "1" || *g == "true" || g->empty()) {
      target.grpc = true;
    } else if (*g != "0" && *g != "false") {
      return badRequest("grpc: want 1, true, 0 or false, got '" + *g + "'");
    }
  }
  if (const std::string* ns = get("source_namespace")) {
    if (!ns->empty() && !isToken(*ns)) return badRequest("source_namespace: invalid '" + *ns + "'");
    target.source_namespace = *ns;
  }
  std::string source_principal;
  if (const std::string* p = get("source_principal")) {
    if (!p->empty() && (!p->starts_with("spiffe://") || hasControl(*p) ||
                        p->find_first_of(" \t") != std::string::npos)) {
      return badRequest("source_principal: want a SPIFFE ID (spiffe://td/ns/N/sa/S), got '" + *p +
                        "'");
    }
    source_principal = *p;
  }

  RequestHead request;
  request.method = target.grpc ? "POST" : "GET";
  if (const std::string* m = get("method")) {
    if (!isToken(*m))
      return badRequest("method: want an HTTP method (GET, POST, ...), got '" + *m + "'");
    request.method = *m;
  }
  request.path = "/";
  if (const std::string* p = get("path")) {
    if (p->empty() || p->front() != '/' || hasControl(*p) || p->find(' ') != std::string::npos) {
      return badRequest("path: want an absolute path such as /api?x=1, got '" + *p + "'");
    }
    request.path = *p;
  }
  request.authority = service->hostname;
  if (const std::string* h = get("host")) {
    if (h->empty() || hasControl(*h) || h->find_first_of(" /@") != std::string::npos) {
      return badRequest("host: want a host[:port], got '" + *h + "'");
    }
    request.authority = *h;
  }
  for (const std::string& h : headers) {
    auto colon = h.find(':');
    std::string name = colon == std::string::npos ? h : h.substr(0, colon);
    if (colon == std::string::npos || !isToken(name)) {
      return badRequest("header: want name:value, got '" + h + "'");
    }
    std::string value = h.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    if (hasControl(value))
      return badRequest("header " + name + ": control characters in the value");
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (name == "host") {
      request.authority = value;  // as the codecs do: Host is the authority
    } else {
      request.headers.push_back({name, value});
    }
  }
  if (target.grpc && !headerValue(request.headers, "content-type")) {
    request.headers.push_back({"content-type", "application/grpc"});
  }

  RouteTable table(snapshot);
  RouteExplanation e = explainRoute(table, target, request);
  json j = e.toJson();
  std::string text = e.toText();
  const bool served = usesWaypoint(*snapshot, *service, self_uid);
  j["servedByThisWaypoint"] = served;
  if (!served) {
    const std::string note =
        *service_name + " does not use this waypoint: its traffic never reaches it";
    j["notes"].push_back(note);
    text += "  note: " + note + "\n";
  }
  if (e.decision.action == RouteAction::Forward && e.decision.backend) {
    explainAccess(snapshot, *service, *e.decision.backend, request, source_principal, j, text);
  }
  j["text"] = text;
  return jsonResponse(200, j);
}

namespace {

// One line per DestinationRule: its host, the service it names and the traffic policy applied,
// defaults filled in.
std::string destinationRulesText(const model::Snapshot& snapshot) {
  std::string out;
  for (const model::DestinationRule& d : snapshot.destinationRules()) {
    out += fmt::format("DestinationRule {} host {}", d.key(), d.service_host);
    if (d.outlier_detection) {
      const model::OutlierDetection& o = *d.outlier_detection;
      out += fmt::format(
          " outlierDetection{{consecutive5xxErrors: {}, consecutiveGatewayErrors: {}, interval: "
          "{}ms, baseEjectionTime: {}ms, maxEjectionPercent: {}, minHealthPercent: {}}}",
          o.consecutive_5xx_errors, o.consecutive_gateway_errors, o.interval.count(),
          o.base_ejection_time.count(), o.max_ejection_percent, o.min_health_percent);
    }
    if (d.connection_pool) {
      const model::ConnectionPool& p = *d.connection_pool;
      auto limit = [](const std::optional<uint32_t>& v) {
        return v ? std::to_string(*v) : std::string("unlimited");
      };
      out += fmt::format(
          " connectionPool{{maxConnections: {}, http1MaxPendingRequests: {}, http2MaxRequests: "
          "{}, maxRequestsPerConnection: {}}}",
          limit(p.max_connections), limit(p.http1_max_pending_requests),
          limit(p.http2_max_requests), limit(p.max_requests_per_connection));
    }
    out += "\n";
  }
  return out;
}

// {"namespace/name": {"total": n, "identity": n, ...}}, the limits that rejected something.
// {"authenticated": n, "failures": {"expired": n, ...}}
nlohmann::json jwtJson(const JwtStats& stats) {
  nlohmann::json failures = nlohmann::json::object();
  for (size_t i = 0; i < stats.failures.size(); ++i) {
    failures[std::string(auth::toString(static_cast<auth::JwtFailureReason>(i)))] =
        stats.failures[i];
  }
  return {{"authenticated", stats.authenticated}, {"failures", std::move(failures)}};
}

nlohmann::json rateLimitedJson(const std::vector<RateLimitCounter>& counters) {
  nlohmann::json j = nlohmann::json::object();
  for (const RateLimitCounter& c : counters) {
    j[c.policy][std::string(rateLimitKindName(c.kind))] = c.rejected;
  }
  return j;
}

}  // namespace

Result<std::unique_ptr<AdminServers>> AdminServers::start(const AdminInfo& info, AdminPorts ports,
                                                          const StatsFn& stats,
                                                          const SnapshotFn& snapshot,
                                                          const RequestTelemetry* telemetry) {
  std::unique_ptr<AdminServers> s(new AdminServers());
  AdminServers* self = s.get();
  std::vector<http::Route> readiness{{"GET", "/healthz/ready", [self](const http::HttpRequest&) {
                                        http::HttpResponse r;
                                        if (self->stopping_) {
                                          r.status = 503;
                                          r.body = "not ready: stopping\n";
                                        } else {
                                          r.body = "ready\n";
                                        }
                                        return r;
                                      }}};
  std::vector<http::Route> metrics{
      {"GET", "/metrics", [stats, telemetry](const http::HttpRequest&) {
         http::HttpResponse r;
         r.content_type = "text/plain; version=0.0.4";
         r.body = renderWaypointMetrics(stats(), telemetry);
         return r;
       }}};
  std::vector<http::Route> admin{
      {"GET", "/stats",
       [stats, info](const http::HttpRequest&) {
         LoopStats st = stats();
         nlohmann::json j{{"workload", info.workload},
                          {"identity", info.identity},
                          {"config", info.config},
                          {"hbone",
                           {{"accepted", st.connections.accepted},
                            {"connected", st.connections.connected},
                            {"handshake_failures", st.connections.handshake_failures},
                            {"pooled", st.connections.pooled},
                            {"open", st.connections.open},
                            // At most 16 KiB per buffer once idle for a second.
                            {"buffer_bytes", st.connections.buffer_bytes}}},
                          {"streams",
                           {{"total", st.proxy.streams},
                            {"refused", st.proxy.refused},
                            {"active", st.proxy.active}}},
                          {"policyDenials",
                           {{"connections", st.proxy.policy.denied_connections},
                            {"requests", st.proxy.policy.denied_requests}}},
                          {"jwt", jwtJson(st.proxy.jwt)},
                          {"rateLimited", rateLimitedJson(st.proxy.rate_limited)},
                          {"http1_upstream",
                           {{"connects", st.proxy.upstream.connects},
                            {"reuses", st.proxy.upstream.reuses},
                            {"retries", st.proxy.upstream.retries},
                            {"idle", st.proxy.upstream.idle},
                            {"idle_closed", st.proxy.upstream.idle_closed}}},
                          {"mirrors",
                           {{"started", st.proxy.upstream.mirrors},
                            {"failed", st.proxy.upstream.mirrors_failed},
                            {"cancelled", st.proxy.upstream.mirrors_cancelled}}},
                          {"route_timeouts", st.proxy.upstream.request_timeouts},
                          {"retries",
                           {{"on_status", st.proxy.retry.on_status},
                            {"on_failure", st.proxy.retry.on_failure},
                            {"budget_exhausted", st.proxy.retry.budget_exhausted},
                            {"limit_exceeded", st.proxy.retry.limit_exceeded}}},
                          {"outlier_ejections", st.proxy.outlier_ejections},
                          {"upstream_overflow", st.proxy.upstream_overflow},
                          // Flow-control credit not given back yet: 0 when idle.
                          {"flow",
                           {{"hbone_unconsumed_bytes", st.connections.unconsumed_bytes},
                            {"http2_unconsumed_bytes", st.proxy.http2_unconsumed_bytes}}}};
         http::HttpResponse r;
         r.content_type = "application/json";
         r.body = j.dump(2) + "\n";
         return r;
       }},
      {"GET", "/config_dump",
       [snapshot](const http::HttpRequest&) {
         http::HttpResponse r;
         model::SnapshotPtr snap = snapshot();
         r.body = snap ? snap->summary() + "\n" : "no config\n";
         if (snap) r.body += destinationRulesText(*snap);
         return r;
       }},
      {"GET", "/routes",
       [snapshot, uid = info.workload](const http::HttpRequest&) {
         model::SnapshotPtr snap = snapshot();
         if (!snap) return jsonResponse(503, json{{"error", "no config yet"}});
         return jsonResponse(200, routesJson(*snap, uid));
       }},
      {"GET", "/explain/request", [snapshot, uid = info.workload](const http::HttpRequest& req) {
         return explainRequest(snapshot(), uid, req.query);
       }}};
  auto serve = [](const char* name, const char* address, uint16_t port, size_t threads,
                  std::vector<http::Route> routes) {
    http::HttpServerOptions o;
    o.name = name;
    o.address = address;
    o.port = port;
    o.threads = threads;
    return http::HttpServer::start(o, std::move(routes));
  };
  auto a = serve("admin", "127.0.0.1", ports.admin, 1, std::move(admin));
  if (!a) return a.error();
  s->admin_ = std::move(*a);
  auto m = serve("metrics", "0.0.0.0", ports.metrics, 1, std::move(metrics));
  if (!m) return m.error();
  s->metrics_ = std::move(*m);
  auto r = serve("readiness", "0.0.0.0", ports.readiness, 1, std::move(readiness));
  if (!r) return r.error();
  s->readiness_ = std::move(*r);
  return s;
}

}  // namespace nodemesh::waypoint
