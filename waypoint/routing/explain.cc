#include "waypoint/routing/explain.h"

#include <cstdio>
#include <variant>

#include <fmt/format.h>

#include "waypoint/routing/retry_policy.h"

namespace nodemesh::waypoint {
namespace {

// The reason of a forwarding decision ("HTTPRoute shop/cart rule 0 match 0 -> shop/cart-v2:80"),
// which routing leaves out of the request path.
std::string forwardReason(const RouteDecision& d) {
  if (!d.matched || !d.backend || d.backend->service == nullptr) return "";
  return fmt::format("{} -> {}/{}:{}", d.matched->describe(), d.backend->service->namespace_name,
                     d.backend->service->name, d.backend->port);
}

std::string describePath(const model::PathModifier& p) {
  return std::string(model::toString(p.type)) + " '" + p.value + "'";
}

std::string describeHeaders(const model::HeaderModifier& m) {
  std::string out;
  auto part = [&](const std::string& text) { out += (out.empty() ? "" : "; ") + text; };
  for (const auto& h : m.set) part("set " + h.name + ": " + h.value);
  for (const auto& h : m.add) part("add " + h.name + ": " + h.value);
  for (const auto& name : m.remove) part("remove " + name);
  return out;
}

double percentOf(uint32_t numerator, uint32_t denominator) {
  return denominator == 0 ? 0 : 100.0 * numerator / denominator;
}

std::string outcomeOf(const RouteDecision& d) {
  if (d.action == RouteAction::Forward) return d.default_route ? "forward (default)" : "forward";
  std::string out =
      (d.status >= 300 && d.status < 400 ? "redirect " : "respond ") + std::to_string(d.status);
  if (!d.response_flag.empty()) out += " (" + d.response_flag + ")";
  return out;
}

}  // namespace

std::string describeFilter(const model::RouteFilter& filter) {
  std::string out(model::toString(filter.type));
  out += ": ";
  if (const auto* h = std::get_if<model::HeaderModifier>(&filter.config)) {
    out += describeHeaders(*h);
  } else if (const auto* r = std::get_if<model::RequestRedirect>(&filter.config)) {
    out += "status " + std::to_string(r->status_code);
    if (r->scheme) out += ", scheme " + *r->scheme;
    if (r->hostname) out += ", hostname " + *r->hostname;
    if (r->port) out += ", port " + std::to_string(*r->port);
    if (r->path) out += ", path " + describePath(*r->path);
  } else if (const auto* u = std::get_if<model::UrlRewrite>(&filter.config)) {
    std::string parts;
    if (u->hostname) parts += "hostname " + *u->hostname;
    if (u->path) parts += (parts.empty() ? "path " : ", path ") + describePath(*u->path);
    out += parts;
  } else if (const auto* m = std::get_if<model::RequestMirror>(&filter.config)) {
    out += "to " + m->backend.name + " (" + std::to_string(m->numerator) + "/" +
           std::to_string(m->denominator) + ")";
  }
  return out;
}

RouteExplanation explainRoute(const RouteTable& table, const RouteTarget& target,
                              const RequestHead& request) {
  RouteExplanation e;
  e.target = target;
  e.request = request;
  SeededRandom random(0);
  e.decision = table.route(target, request, random, &e.trace);
  if (e.decision.reason.empty()) e.decision.reason = forwardReason(e.decision);
  e.outcome = outcomeOf(e.decision);
  if (!e.decision.matched) return e;
  const MatchedRule& m = *e.decision.matched;
  const std::string& ns = m.route->namespace_name;
  uint64_t total = 0;
  for (const model::RouteBackendRef& b : *m.backend_refs) total += b.weight;
  auto describe_mirror = [&](const model::RouteFilter& f) {
    if (const auto* mirror = std::get_if<model::RequestMirror>(&f.config)) {
      std::string name = mirror->backend.namespace_name.value_or(ns) + "/" + mirror->backend.name;
      e.mirrors.push_back(
          RouteExplanation::Mirror{name, mirror->backend.port.value_or(target.port),
                                   percentOf(mirror->numerator, mirror->denominator),
                                   table.snapshot().serviceByName(name) != nullptr});
    }
  };
  for (const model::RouteBackendRef& b : *m.backend_refs) {
    RouteExplanation::Backend out;
    out.service = b.ref.namespace_name.value_or(ns) + "/" + b.ref.name;
    out.port = b.ref.port.value_or(target.port);
    out.weight = b.weight;
    out.percent = total == 0 ? 0 : 100.0 * b.weight / static_cast<double>(total);
    const model::Service* svc = table.snapshot().serviceByName(out.service);
    out.exists = svc != nullptr && svc->ports.count(out.port) > 0;
    for (const model::RouteFilter& f : b.filters) {
      out.filters.push_back(describeFilter(f));
      describe_mirror(f);
    }
    e.backends.push_back(std::move(out));
  }
  for (const model::RouteFilter& f : *m.rule_filters) {
    e.filters.push_back(describeFilter(f));
    describe_mirror(f);
  }
  return e;
}

nlohmann::json RouteExplanation::toJson() const {
  nlohmann::json j;
  j["service"] = target.service_key;
  j["port"] = target.port;
  j["sourceNamespace"] = target.source_namespace;
  j["grpc"] = target.grpc;
  j["request"] = {
      {"method", request.method}, {"authority", request.authority}, {"path", request.path}};
  j["outcome"] = outcome;
  j["status"] = decision.status;
  j["responseFlag"] = decision.response_flag;
  j["reason"] = decision.reason;
  if (decision.matched) {
    const MatchedRule& m = *decision.matched;
    j["route"] = {{"kind", std::string(toString(m.kind))},
                  {"name", m.route->key()},
                  {"rule", m.rule_index},
                  {"ruleName", m.rule_name.value_or("")},
                  {"match", m.match_index}};
  }
  if (decision.response) {
    if (auto location = headerValue(decision.response->headers, "location")) {
      j["location"] = *location;
    }
  }
  j["backends"] = nlohmann::json::array();
  for (const Backend& b : backends) {
    j["backends"].push_back({{"service", b.service},
                             {"port", b.port},
                             {"weight", b.weight},
                             {"percent", b.percent},
                             {"exists", b.exists},
                             {"filters", b.filters}});
  }
  j["filters"] = filters;
  if (decision.action == RouteAction::Forward) {
    const RetryPolicy retry = RetryPolicy::of(decision.retry);
    j["retry"] = {{"attempts", retry.attempts},
                  {"codes", retry.codes},
                  {"backoffMs", retry.backoff.count()},
                  {"source", retry.from_route ? "rule" : "default"}};
  }
  j["mirrors"] = nlohmann::json::array();
  for (const Mirror& m : mirrors) {
    j["mirrors"].push_back(
        {{"service", m.service}, {"port", m.port}, {"percent", m.percent}, {"exists", m.exists}});
  }
  j["candidates"] = nlohmann::json::array();
  for (const MatchedRule& m : trace.matches) j["candidates"].push_back(m.describe());
  j["notes"] = trace.notes;
  return j;
}

std::string RouteExplanation::toText() const {
  std::string out = request.method + " " + request.authority + request.path + " -> " +
                    target.service_key + ":" + std::to_string(target.port) + "\n";
  out += "  outcome: " + outcome + " - " + decision.reason + "\n";
  for (size_t i = 0; i < trace.matches.size(); ++i) {
    out += std::string(i == 0 ? "  winner: " : "  also matched: ") + trace.matches[i].describe() +
           "\n";
  }
  for (const Backend& b : backends) {
    char percent[16];
    std::snprintf(percent, sizeof(percent), "%.1f", b.percent);
    out += "  backend " + b.service + ":" + std::to_string(b.port) + " weight " +
           std::to_string(b.weight) + " (" + percent + "%)" + (b.exists ? "" : " MISSING: 500") +
           "\n";
    for (const std::string& f : b.filters) out += "    filter " + f + "\n";
  }
  for (const std::string& f : filters) out += "  filter " + f + "\n";
  if (decision.action == RouteAction::Forward) {
    out += "  retry: " + RetryPolicy::of(decision.retry).describe() + "\n";
  }
  for (const Mirror& m : mirrors) {
    out += "  mirror " + m.service + ":" + std::to_string(m.port) + " " +
           std::to_string(static_cast<int>(m.percent)) + "%" +
           (m.exists ? "" : " (missing, dropped)") + "\n";
  }
  for (const std::string& n : trace.notes) out += "  note: " + n + "\n";
  return out;
}

}  // namespace nodemesh::waypoint
