#include "agent/admin/admin_api.h"

#include <algorithm>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/admin/config_dump.h"
#include "telemetry/prometheus_text.h"

namespace nodemesh::agent::admin {

namespace {

using nlohmann::json;

HttpResponse jsonResponse(const json& j, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  return r;
}

HttpResponse errorResponse(int status, const std::string& message) {
  return jsonResponse({{"error", message}}, status);
}

std::string isoTime(std::chrono::system_clock::time_point t) {
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z",
                     std::chrono::time_point_cast<std::chrono::seconds>(t));
}

// The admin server listens on 127.0.0.1 only; this is a second line, in case a future
// change binds it elsewhere.
bool fromLoopback(const HttpRequest& req) {
  auto ip = IpAddress::parse(req.remote_addr);
  return ip && ip->isLoopback();
}

HttpResponse logging(const HttpRequest& req) {
  auto logger = spdlog::default_logger();
  if (req.method == "POST") {
    auto it = req.params.find("level");
    if (it == req.params.end()) return errorResponse(400, "missing ?level=");
    auto level = spdlog::level::from_str(it->second);
    // from_str maps anything unknown to "off"; only accept the names.
    static const std::vector<std::string> kLevels = {"trace", "debug", "info",
                                                     "warn",  "error", "off"};
    if (std::find(kLevels.begin(), kLevels.end(), it->second) == kLevels.end()) {
      return errorResponse(
          400, "unknown level '" + it->second + "' (trace, debug, info, warn, error, off)");
    }
    std::string before(spdlog::level::to_string_view(logger->level()).data());
    logger->set_level(level);
    spdlog::info("log level {} -> {} (admin API)", before, it->second);
  }
  return jsonResponse(
      {{"level", std::string(spdlog::level::to_string_view(logger->level()).data())}});
}

HttpResponse explainRoute(const AdminState& state, const HttpRequest& req) {
  auto src_it = req.params.find("src");
  auto dst_it = req.params.find("dst");
  if (src_it == req.params.end() || dst_it == req.params.end()) {
    return errorResponse(400, "usage: /explain?src=IP&dst=IP:PORT");
  }
  auto src = IpAddress::parse(src_it->second);
  if (!src) return errorResponse(400, "src: " + src.error().message);
  auto dst = SocketAddress::parse(dst_it->second);
  if (!dst) return errorResponse(400, "dst: " + dst.error().message + " (want IP:PORT)");
  if (dst->port == 0) return errorResponse(400, "dst: port 0");
  auto snapshot = state.snapshot();
  if (!snapshot) return errorResponse(503, "no config loaded yet");
  explain::AuthorizerChecker policies(snapshot);
  auto e = explain::explainConnection(*snapshot, captureView(state), policies, *src, *dst);
  return jsonResponse(explain::toJson(e));
}

constexpr std::string_view kIndex =
    "nodemesh admin API (127.0.0.1 only)\n"
    "  GET  /config_dump        workloads, services, policies, certificates, enrolled pods\n"
    "  GET  /connections        open connections with live byte counts\n"
    "  GET  /logging            the log level; POST /logging?level=debug sets it\n"
    "  GET  /explain?src=IP&dst=IP:PORT   what would happen to that connection\n"
    "  POST /quitquitquit       clean stop (as SIGTERM)\n";

}  // namespace

std::string Readiness::missing() const {
  std::string out;
  auto add = [&](bool ok, const char* what) {
    if (!ok) out += (out.empty() ? "" : ", ") + std::string(what);
  };
  add(!stopping_, "agent stopping");
  add(programs_, "capture programs not attached");
  add(config_, "no config loaded");
  add(tunnel_, "tunnel not started");
  add(pods_, "pods of the node not listed and enrolled yet");
  return out;
}

explain::CaptureView captureView(const AdminState& state) {
  AgentInfo info = state.info();
  explain::CaptureView view;
  view.node = info.node;
  view.exclude_outbound_ports = info.exclude_outbound_ports;
  view.exclude_inbound_ports = info.exclude_inbound_ports;
  view.exclude_cidrs = info.exclude_cidrs;
  view.same_node_fast_path = info.same_node_fast_path;
  for (const PodView& pod : state.pods()) {
    view.enrolled.push_back({pod.workload_uid, pod.name, pod.netns, pod.netns_cookie});
  }
  return view;
}

json connectionsJson(const std::vector<tunnel::ConnectionInfo>& connections) {
  auto sorted = connections;
  // Ordered by pod, direction, then addresses (as text: SocketAddress's <=> trips clang-tidy 14).
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return std::make_tuple(a.pod, a.direction, a.src.toString(), a.dst.toString()) <
           std::make_tuple(b.pod, b.direction, b.src.toString(), b.dst.toString());
  });

  json list = json::array();
  for (const auto& c : sorted) {
    list.push_back({
        {"direction", c.direction == tunnel::Direction::kOutbound ? "outbound" : "inbound"},
        {"pod", c.pod},
        {"src", c.src.toString()},
        {"dst", c.dst.toString()},
        {"dst_service", c.dst_service},
        {"transport", tunnel::transportName(c.transport)},
        {"src_identity", c.src_identity},
        {"dst_identity", c.dst_identity},
        {"bytes_to_dst", c.bytes_to_dst},
        {"bytes_from_dst", c.bytes_from_dst},
        {"age_ms", c.age.count()},
        {"state", c.state},
    });
  }
  return {{"connections", list}};
}

json configDump(const AdminState& state) {
  json out;
  AgentInfo info = state.info();
  json cidrs = json::array();
  for (const auto& c : info.exclude_cidrs) cidrs.push_back(c.toString());
  out["agent"] = {{"node", info.node},
                  {"bpffs", info.bpffs},
                  {"cgroup", info.cgroup},
                  {"config", info.config},
                  {"trustDomain", info.trust_domain},
                  {"excludeOutboundPorts", info.exclude_outbound_ports},
                  {"excludeInboundPorts", info.exclude_inbound_ports},
                  {"excludeCidrs", cidrs},
                  {"sameNodeFastPath", info.same_node_fast_path}};
  auto snapshot = state.snapshot();
  out["controlPlane"] = state.controlPlane();
  out["workloads"] = json::array();
  out["services"] = json::array();
  out["policies"] = json::array();
  if (snapshot) {
    for (const auto& w : snapshot->workloads()) out["workloads"].push_back(workloadJson(w));
    for (const auto& s : snapshot->services()) {
      out["services"].push_back(serviceJson(*snapshot, s));
    }
    for (const auto& p : snapshot->policies()) out["policies"].push_back(policyJson(p));
  }
  // ztunnel's shape: one entry per identity, its chain, no private key.
  out["certificates"] = json::array();
  for (const auto& c : state.certificates()) {
    out["certificates"].push_back({{"identity", c.identity},
                                   {"state", "Available"},
                                   {"certChain",
                                    {{{"serialNumber", c.serial},
                                      {"validFrom", isoTime(c.not_before)},
                                      {"expirationTime", isoTime(c.not_after)},
                                      {"pem", c.pem}}}}});
  }
  out["enrolledPods"] = json::array();
  for (const auto& p : state.pods()) {
    out["enrolledPods"].push_back({{"name", p.name},
                                   {"workloadUid", p.workload_uid},
                                   {"netns", p.netns},
                                   {"netnsCookie", p.netns_cookie},
                                   {"ips", p.ips}});
  }
  return out;
}

std::vector<Route> adminRoutes(AdminState& state) {
  // Every handler first refuses anything that is not loopback.
  auto guarded = [](HttpHandler h) -> HttpHandler {
    return [h = std::move(h)](const HttpRequest& req) {
      if (!fromLoopback(req)) return errorResponse(403, "the admin API answers loopback only");
      return h(req);
    };
  };
  std::vector<Route> routes;
  routes.push_back({"GET", "/", guarded([](const HttpRequest&) {
                      HttpResponse r;
                      r.body = std::string(kIndex);
                      return r;
                    })});
  routes.push_back({"GET", "/config_dump", guarded([&state](const HttpRequest&) {
                      return jsonResponse(configDump(state));
                    })});
  routes.push_back({"GET", "/connections", guarded([&state](const HttpRequest&) {
                      return jsonResponse(connectionsJson(state.connections()));
                    })});
  routes.push_back({"GET", "/logging", guarded(logging)});
  routes.push_back({"POST", "/logging", guarded(logging)});
  routes.push_back({"GET", "/explain", guarded([&state](const HttpRequest& req) {
                      return explainRoute(state, req);
                    })});
  routes.push_back({"POST", "/quitquitquit", guarded([&state](const HttpRequest&) {
                      spdlog::info("/quitquitquit: stopping");
                      state.quit();
                      HttpResponse r;
                      r.body = "OK\n";
                      return r;
                    })});
  return routes;
}

std::vector<Route> readinessRoutes(const Readiness& readiness) {
  return {{"GET", "/healthz/ready", [&readiness](const HttpRequest&) {
             HttpResponse r;
             if (readiness.ready()) {
               r.body = "ready\n";
             } else {
               r.status = 503;
               r.body = "not ready: " + readiness.missing() + "\n";
             }
             return r;
           }}};
}

std::vector<Route> metricsRoutes(std::function<metrics::AgentMetricsInput()> gather) {
  auto handler = [gather = std::move(gather)](const HttpRequest&) {
    HttpResponse r;
    r.content_type = telemetry::kPrometheusContentType;
    r.body = metrics::renderAgentMetrics(gather());
    return r;
  };
  return {{"GET", "/metrics", handler}, {"GET", "/stats/prometheus", handler}};
}

}  // namespace nodemesh::agent::admin
