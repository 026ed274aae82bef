// nodemeshctl: the node debugging CLI. Talks to the agent's admin API (127.0.0.1:15000 in the
// node's network namespace) and reads the agent's BPF pins directly (`bpf`, `pods` counters),
// which works while the agent is down. See docs/cli.md.
#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/admin_client.h"
#include "cli/completion.h"
#include "cli/doctor.h"
#include "cli/output.h"
#include "cli/views.h"
#include "cli/waypoint_views.h"
#include "common/bpf_pins.h"
#include "common/ip_address.h"

namespace nodemesh::cli {
namespace {

// Exit codes (docs/cli.md).
constexpr int kExitOk = 0;
constexpr int kExitNo = 1;           // explain: not allowed; doctor: a check failed
constexpr int kExitUsage = 2;        // bad arguments
constexpr int kExitUnavailable = 3;  // the agent or the pins cannot be read

struct Options {
  std::string admin = "http://127.0.0.1:15000";
  std::string output = "table";
  std::string namespace_name;
  std::string node;
  std::string bpffs = "/sys/fs/bpf/nodemesh";
  double timeout_s = 5;
  size_t width = 0;
  // positional arguments
  std::string src;
  std::string dst;
  std::string level;
  std::string shell;
  // waypoint explain
  std::string service;
  int port = 0;
  std::string method;
  std::string path;
  std::string host;
  std::vector<std::string> headers;
  bool grpc = false;
  std::string source_namespace;
  std::string source_principal;
};

size_t terminalWidth(const Options& o) {
  if (o.width > 0) return o.width;
  winsize ws{};
  if (::isatty(STDOUT_FILENO) && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) {
    return ws.ws_col;
  }
  return kDefaultWidth;
}

void print(const View& v, const Options& o) {
  if (o.output == "json") {
    std::cout << v.data.dump(2) << "\n";
  } else if (o.output == "yaml") {
    std::cout << toYaml(v.data);
  } else {
    std::cout << v.table;
  }
}

int fail(const Error& e, int code = kExitUnavailable) {
  std::cerr << "nodemeshctl: " << e.message << "\n";
  return code;
}

AdminClient client(const Options& o) {
  return AdminClient(o.admin, std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
}

Filters filters(const Options& o) {
  return Filters{o.namespace_name, o.node};
}

int dumpCommand(const Options& o, const std::string& what) {
  auto dump = client(o).get("/config_dump");
  if (!dump) return fail(dump.error());
  const size_t w = terminalWidth(o);
  View v;
  if (what == "workloads") v = workloadsView(*dump, filters(o), w);
  if (what == "services") v = servicesView(*dump, filters(o), w);
  if (what == "policies") v = policiesView(*dump, filters(o), w);
  if (what == "certs") v = certsView(*dump, filters(o), std::chrono::system_clock::now(), w);
  if (what == "control-plane") v = controlPlaneView(*dump, w);
  print(v, o);
  return kExitOk;
}

int connectionsCommand(const Options& o) {
  auto list = client(o).get("/connections");
  if (!list) return fail(list.error());
  print(connectionsView(*list, filters(o), terminalWidth(o)), o);
  return kExitOk;
}

int podsCommand(const Options& o) {
  const std::string maps = o.bpffs + "/maps";
  std::optional<nlohmann::json> dump;
  std::vector<uint64_t> cookies;
  if (auto d = client(o).get("/config_dump")) {
    dump = *d;
    for (const auto& p : (*dump)["enrolledPods"]) cookies.push_back(p.value("netnsCookie", 0ull));
  } else {
    std::cerr << "nodemeshctl: " << d.error().message
              << "\nnodemeshctl: listing the pods the pins know, without names\n";
    auto pinned = bpfpins::readEnrolledCookies(maps);
    if (!pinned) return fail(pinned.error());
    cookies = *pinned;
  }
  std::vector<PodCounters> pods;
  bool warned = false;
  for (uint64_t cookie : cookies) {
    auto counters = bpfpins::readPinnedCounters(maps, cookie);
    if (!counters && !warned) {
      std::cerr << "nodemeshctl: counters: " << counters.error().message
                << " (is --bpffs the agent's?)\n";
      warned = true;
    }
    pods.push_back({cookie, counters ? *counters : std::map<std::string, uint64_t>{}});
  }
  print(podsView(dump, pods, filters(o), terminalWidth(o)), o);
  return kExitOk;
}

int bpfCommand(const Options& o) {
  auto pins = bpfpins::inspectPins(o.bpffs);
  if (!pins) return fail(pins.error());
  std::optional<std::map<std::string, uint64_t>> counters;
  if (auto c = bpfpins::readPinnedCounters(o.bpffs + "/maps")) counters = *c;
  print(bpfView(*pins, counters, terminalWidth(o)), o);
  return kExitOk;
}

int explainCommand(const Options& o) {
  auto src = IpAddress::parse(o.src);
  if (!src) return fail(Error::invalid("SRC: " + src.error().message), kExitUsage);
  auto dst = SocketAddress::parse(o.dst);
  if (!dst || dst->port == 0) {
    return fail(Error::invalid("DST: want IP:PORT, got '" + o.dst + "'"), kExitUsage);
  }
  auto e = client(o).get("/explain", {{"src", src->toString()}, {"dst", dst->toString()}});
  if (!e) return fail(e.error());
  print(explainView(*e, terminalWidth(o)), o);
  return e->value("verdict", "") == "allow" ? kExitOk : kExitNo;
}

int doctorCommand(const Options& o) {
  DoctorOptions d;
  d.bpffs = o.bpffs;
  auto checks = runDoctor(d);
  print(doctorView(checks, terminalWidth(o)), o);
  for (const auto& c : checks) {
    if (c.status == CheckStatus::kFail) return kExitNo;
  }
  return kExitOk;
}

int logLevelCommand(const Options& o) {
  auto r = o.level.empty() ? client(o).get("/logging")
                           : client(o).post("/logging", {{"level", o.level}});
  if (!r) return fail(r.error(), r.error().code == EINVAL ? kExitUsage : kExitUnavailable);
  View v;
  v.data = *r;
  v.table = r->value("level", "?") + "\n";
  print(v, o);
  return kExitOk;
}

// An admin API error: HTTP 4xx means the request was wrong (usage), anything else that the
// admin API could not be read.
int failRequest(const Error& e) {
  return fail(e, e.code == EINVAL ? kExitUsage : kExitUnavailable);
}

int waypointRoutesCommand(const Options& o) {
  auto routes = client(o).get("/routes");
  if (!routes) return failRequest(routes.error());
  print(waypointRoutesView(*routes, terminalWidth(o)), o);
  return kExitOk;
}

int waypointExplainCommand(const Options& o) {
  const size_t slash = o.service.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == o.service.size() ||
      o.service.find('/', slash + 1) != std::string::npos) {
    return fail(Error::invalid("--service: want namespace/name, got '" + o.service + "'"),
                kExitUsage);
  }
  std::vector<std::pair<std::string, std::string>> query = {{"service", o.service},
                                                            {"port", std::to_string(o.port)}};
  if (!o.method.empty()) query.emplace_back("method", o.method);
  if (!o.path.empty()) query.emplace_back("path", o.path);
  if (!o.host.empty()) query.emplace_back("host", o.host);
  for (const std::string& h : o.headers) {
    if (h.find(':') == std::string::npos || h.front() == ':') {
      return fail(Error::invalid("-H: want 'name: value', got '" + h + "'"), kExitUsage);
    }
    query.emplace_back("header", h);
  }
  if (o.grpc) query.emplace_back("grpc", "1");
  if (!o.source_namespace.empty()) query.emplace_back("source_namespace", o.source_namespace);
  if (!o.source_principal.empty()) query.emplace_back("source_principal", o.source_principal);
  auto e = client(o).getQuery("/explain/request", query);
  if (!e) return failRequest(e.error());
  print(waypointExplainView(*e), o);
  // Like `explain`: 1 when the answer is no (the waypoint itself would answer 4xx/5xx).
  return e->value("status", 0) >= 400 ? kExitNo : kExitOk;
}

int ctlMain(int argc, char** argv) {
  Options o;
  CLI::App app{
      "nodemeshctl: what happened to my connection? Inspects the nodemesh agent of "
      "this node (admin API on 127.0.0.1:15000, BPF pins under --bpffs).",
      "nodemeshctl"};
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--admin", o.admin, "the agent's admin API")->capture_default_str();
  app.add_option("-o,--output", o.output, "output format")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "json", "yaml"}));
  app.add_option("-n,--namespace", o.namespace_name, "only this namespace");
  app.add_option("--node", o.node, "only this node's workloads (pods: only if it is this node)");
  app.add_option("--bpffs", o.bpffs, "the agent's pin directory (its --bpffs)")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "seconds to wait for the agent")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--width", o.width, "table width in columns (default: the terminal's, else 120)");
  app.footer(
      "Examples:\n"
      "  nodemeshctl workloads -n shop\n"
      "  nodemeshctl explain 10.244.1.10 10.96.0.20:80\n"
      "  nodemeshctl connections -o json\n"
      "  nodemeshctl doctor\n"
      "  nodemeshctl waypoint explain --service shop/cart --port 80 --path /api\n"
      "  source <(nodemeshctl completion bash)\n"
      "Exit codes: 0 ok; 1 explain: not allowed, doctor: a check failed; 2 usage error;\n"
      "3 the agent's admin API or the pins cannot be read.\n"
      "Run it in the node's network namespace (the admin API listens on 127.0.0.1 only).");

  auto* workloads = app.add_subcommand("workloads",
                                       "workloads in the config, and which are "
                                       "enrolled here");
  workloads->footer(
      "Examples:\n  nodemeshctl workloads\n  nodemeshctl workloads -n shop --node "
      "node1 -o yaml");
  auto* services = app.add_subcommand("services", "services: VIPs, ports, endpoints");
  services->footer("Example: nodemeshctl services -n shop");
  auto* policies = app.add_subcommand("policies", "authorization policies and their rules");
  policies->footer("Example: nodemeshctl policies -o yaml");
  auto* certs = app.add_subcommand("certs", "this node's workload certificates (no keys)");
  certs->footer("Example: nodemeshctl certs -n shop");
  auto* control_plane = app.add_subcommand(
      "control-plane",
      "where the config and certificates come from: the local file or istiod (connection, "
      "ACKed versions, last NACK and why), the CA and each identity's certificate state");
  control_plane->footer("Example: nodemeshctl control-plane -o json");
  auto* connections =
      app.add_subcommand("connections", "open connections: addresses, identities, bytes, age");
  connections->footer(
      "Examples:\n  nodemeshctl connections\n  watch -n1 nodemeshctl connections "
      "-n shop");
  auto* pods = app.add_subcommand(
      "pods", "enrolled pods, their netns and capture counters (counters from the pins)");
  pods->footer("Example: nodemeshctl pods --bpffs /sys/fs/bpf/nodemesh");
  auto* bpf = app.add_subcommand(
      "bpf", "programs, links, maps and counters, read from the pins (agent not needed)");
  bpf->footer("Example: nodemeshctl bpf --bpffs /sys/fs/bpf/nodemesh -o json");
  auto* explain =
      app.add_subcommand("explain",
                         "the whole story of a would-be connection: capture, service resolution, "
                         "transport, policy verdict and deciding rule");
  explain->add_option("SRC", o.src, "source IP (a pod's address)")->required();
  explain->add_option("DST", o.dst, "destination IP:PORT (a pod or a service VIP)")->required();
  explain->footer(
      "Examples:\n  nodemeshctl explain 10.244.1.10 10.244.2.20:8080\n"
      "  nodemeshctl explain 10.244.1.10 10.96.0.20:80 -o json\n"
      "Exit code 0 when the connection would be allowed, 1 when not.");
  auto* doctor = app.add_subcommand(
      "doctor",
      "can this host run the agent? kernel, BTF, cgroup2, bpffs, BPF program and map "
      "types, io_uring, capabilities, ports");
  doctor->footer(
      "Examples:\n  nodemeshctl doctor\n  nodemeshctl doctor --bpffs "
      "/sys/fs/bpf/nodemesh-test\nExit code 1 when a check fails.");
  auto* log_level = app.add_subcommand("log-level", "show or set the agent's log level");
  log_level->add_option("LEVEL", o.level, "trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  log_level->footer("Examples:\n  nodemeshctl log-level\n  nodemeshctl log-level debug");
  auto* waypoint = app.add_subcommand(
      "waypoint", "a waypoint's routes, and which rule and backend would serve a request");
  waypoint->require_subcommand(1);
  waypoint->footer(
      "Talks to the waypoint's admin API: run it in the waypoint pod's network namespace, or\n"
      "point --admin at it.");
  auto* waypoint_routes = waypoint->add_subcommand(
      "routes", "the HTTPRoutes and GRPCRoutes of the services that use this waypoint");
  waypoint_routes->footer(
      "Examples:\n  nodemeshctl waypoint routes\n  nodemeshctl waypoint routes -o json");
  auto* waypoint_explain = waypoint->add_subcommand(
      "explain", "the route, rule and backend that would serve a request, and why");
  waypoint_explain->add_option("--service", o.service, "the destination service, namespace/name")
      ->required();
  waypoint_explain->add_option("--port", o.port, "the service port the client connects to")
      ->required()
      ->check(CLI::Range(1, 65535));
  waypoint_explain->add_option("--method", o.method, "HTTP method (default GET, POST with --grpc)");
  waypoint_explain->add_option("--path", o.path, "path and query (default /)");
  waypoint_explain->add_option("--host", o.host,
                               "Host / :authority (default the service's hostname)");
  waypoint_explain->add_option("-H,--header", o.headers, "a request header 'name: value' (repeat)");
  waypoint_explain->add_flag("--grpc", o.grpc, "a gRPC request (GRPCRoutes apply)");
  waypoint_explain->add_option("--source-namespace", o.source_namespace,
                               "the client's namespace (consumer routes)");
  waypoint_explain->add_option(
      "--source-principal", o.source_principal,
      "the client's SPIFFE ID, for the authorization policies (default: none, as plaintext)");
  waypoint_explain->footer(
      "Examples:\n  nodemeshctl waypoint explain --service shop/cart --port 80 --path /api\n"
      "  nodemeshctl waypoint explain --service shop/cart --port 80 -H 'x-user-group: beta'\n"
      "  nodemeshctl waypoint explain --service shop/cart --port 80 --method POST \\\n"
      "      --source-principal spiffe://cluster.local/ns/shop/sa/frontend \\\n"
      "      -H \"authorization: Bearer $TOKEN\"\n"
      "  nodemeshctl waypoint explain --service shop/greeter --port 9090 --grpc \\\n"
      "      --path /helloworld.Greeter/SayHello\n"
      "Exit code 0 when the request would be forwarded or redirected, 1 when the waypoint\n"
      "would answer it with an error itself (no route, no backend, a refused token: 401, an\n"
      "authorization policy: 403).");
  auto* completion = app.add_subcommand("completion", "print a shell completion script");
  completion->add_option("SHELL", o.shell, "bash")->required()->check(CLI::IsMember({"bash"}));
  completion->footer("Example: source <(nodemeshctl completion bash)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  if (*workloads) return dumpCommand(o, "workloads");
  if (*services) return dumpCommand(o, "services");
  if (*policies) return dumpCommand(o, "policies");
  if (*certs) return dumpCommand(o, "certs");
  if (*control_plane) return dumpCommand(o, "control-plane");
  if (*connections) return connectionsCommand(o);
  if (*pods) return podsCommand(o);
  if (*bpf) return bpfCommand(o);
  if (*explain) return explainCommand(o);
  if (*doctor) return doctorCommand(o);
  if (*log_level) return logLevelCommand(o);
  if (*waypoint_routes) return waypointRoutesCommand(o);
  if (*waypoint_explain) return waypointExplainCommand(o);
  if (*completion) {
    std::cout << bashCompletion(app);
    return kExitOk;
  }
  return kExitUsage;
}

}  // namespace
}  // namespace nodemesh::cli

int main(int argc, char** argv) {
  try {
    return nodemesh::cli::ctlMain(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "nodemeshctl: " << e.what() << "\n";
    return 3;
  }
}
