// nodemesh-bench: runs the benchmark suite of bench/README.md on a simulated two-node cluster
// and writes <out>/latest.json and <out>/latest.md (and dated copies for full runs).
//
// For each repeat, each mode (direct, nodemesh, stunnel, haproxy) is started fresh, runs every
// scenario, and is stopped; the reported figure is the median over the repeats. No figure is
// asserted: the exit status says whether every scenario produced its numbers and the cluster
// was removed without leftovers (0), or not (1); 77 means the environment cannot run it
// (no root, no network namespaces) and NODEMESH_REQUIRE_PRIVILEGED is not set.
//
// This file is the command line (parseCommand), the machine's checks (prepareMachine) and the
// report (runInfo, writeReport); the run loop is bench/suite.cc.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <optional>
#include <variant>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "bench/bench_env.h"
#include "bench/modes.h"
#include "bench/report.h"
#include "bench/scenarios.h"
#include "bench/suite.h"
#include "sim/interrupt.h"
#include "sim/privileged.h"
#include "sim/process.h"
#include "sim/testapp_client.h"

#ifndef NODEMESH_SOURCE_DIR
#error "NODEMESH_SOURCE_DIR must be defined by the build"
#endif

namespace nodemesh::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double toSeconds(milliseconds ms) {
  return std::chrono::duration<double>(ms).count();
}

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitSkipped = 77;  // CTest's SKIP_RETURN_CODE
constexpr rlim_t kFdLimit = 200000;
// Descriptors a tunnel process needs besides two per relayed connection (listeners, logs, ...).
constexpr rlim_t kFdReserve = 200;

std::string utcNow(const char* format) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), format, &tm);
  return buf;
}

std::vector<std::string> splitList(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

void writeText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// The 10,000 idle connections need one or two descriptors each in every tunnel process (children
// inherit the limit). Raising the hard limit needs CAP_SYS_RESOURCE; without it the soft limit
// goes up to the hard one. Returns the limit in force.
rlim_t raiseFdLimit() {
  rlimit lim{kFdLimit, kFdLimit};
  if (::setrlimit(RLIMIT_NOFILE, &lim) == 0) return kFdLimit;
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur;
}

struct IdleCap {
  int connections;
  std::string why;
};

// How many idle connections every mode of the run can hold under the descriptor limit (in
// hundreds). The load generator's client and server, and a nodemesh agent on either side, hold
// one descriptor per connection (the HBONE connections are shared); HAProxy holds both ends of
// each connection in one process; stunnel also serves at most RLIMIT_NOFILE x 125/256 clients
// (its max_clients).
IdleCap idleCap(const std::vector<std::string>& modes, int fd_limit) {
  const int usable = fd_limit - static_cast<int>(kFdReserve);
  // An agent's own descriptors (each pod's listeners per worker, rings, pooled HBONE
  // connections) are about 300: at 19,800 connections under a limit of 20,000 it ran out.
  IdleCap cap{fd_limit - 1000,
              "an agent and the load generator hold one descriptor per connection"};
  auto has = [&](const char* mode) {
    return std::find(modes.begin(), modes.end(), mode) != modes.end();
  };
  if (has("haproxy")) cap = {usable / 2, "HAProxy holds two descriptors per connection"};
  if (has("stunnel")) {
    cap = {std::min(usable / 2, fd_limit * 125 / 256),
           "stunnel holds two descriptors per connection and serves at most RLIMIT_NOFILE x "
           "125/256 clients"};
  }
  cap.connections = cap.connections / 100 * 100;
  return cap;
}

// What the command line asks for, checked.
struct Command {
  Options o;
  std::vector<std::string> order;  // the scenarios, in kScenarioOrder
  bool waypoint_suite = false;     // --waypoint
  bool l7 = false;                 // some mode runs some scenario through an L7 hop
  std::string stem;                // of the report's files: latest or waypoint-l7
  std::string text;                // the command, for the report
};

// Parses and checks the command line; an exit status instead when there is nothing to run
// (--help, a bad option).
std::variant<Command, int> parseCommand(int argc, char** argv) {
  Command c;
  Options& o = c.o;
  o.source_dir = NODEMESH_SOURCE_DIR;
  std::string modes = "direct,nodemesh,stunnel,haproxy";
  std::string scenarios;
  int repeats = 0;
  int idle = 0;
  CLI::App app{"nodemesh benchmarks against direct TCP, stunnel and HAProxy (bench/README.md)"};
  app.add_flag("--quick", o.quick, "1 repeat of ~1 s runs, 1,000 idle connections (CI)");
  app.add_option("--repeats", repeats, "runs per mode and scenario (default 3; --quick: 1)");
  app.add_option("--out", o.out_dir,
                 "where latest.json/latest.md go (default bench/results; --quick: "
                 "<build>/bench-quick)");
  app.add_option("--modes", modes,
                 "comma-separated subset of direct,nodemesh,stunnel,haproxy (and of waypoint,"
                 "haproxy-l7,nginx-l7: the L7 modes, which run only the L7 scenarios)");
  app.add_option("--scenarios", scenarios,
                 "comma-separated subset of http,latency,conn-rate,throughput,idle (and of "
                 "l7-h1,l7-h1-max,l7-h2,l7-h2-max: HTTP/1.1 and HTTP/2 through an L7 hop)");
  app.add_option("--idle-connections", idle, "idle connections (default 10000; --quick: 1000)");
  int conn_rate_seconds = 0;
  app.add_option("--conn-rate-seconds", conn_rate_seconds,
                 "length of the connection-rate run (default 5; --quick: 1)");
  app.add_option("--agent-flag", o.agent_flags, "extra nodemesh-agent flag (repeatable)")
      ->allow_extra_args(false);
  std::string baseline;
  std::vector<std::string> variants;
  app.add_option("--baseline-agent", baseline,
                 "another nodemesh-agent build, run as the extra mode nodemesh-baseline (a "
                 "change's before and after in one run); same as --agent-variant baseline=PATH");
  app.add_option("--agent-variant", variants,
                 "NAME=PATH: another nodemesh-agent build, run as the extra mode nodemesh-NAME "
                 "(repeatable)")
      ->allow_extra_args(false);
  app.add_option("--perf-dir", o.perf_dir,
                 "profile the nodemesh agents (of every nodemesh mode, baseline and variants "
                 "too; or the mode's L7 proxy) with perf record during "
                 "each scenario, into "
                 "DIR/<mode>-<scenario>-<repeat>.data");
  bool no_pin = false;
  app.add_flag("--no-pin", no_pin,
               "let every process float over the machine's CPUs (default: each simulated node "
               "on a CPU of its own)");
  app.add_flag("--same-node", o.same_node,
               "client and server pods on one node (modes direct and nodemesh only): the agent's "
               "same-node fast path; HBONE within the node with "
               "--agent-flag=--no-same-node-fast-path or a variant that passes it");
  app.add_option("--congestion-control", o.congestion_control,
                 "TCP congestion control in the pods, for every mode (host: the host's default)")
      ->capture_default_str();
  app.add_flag("--keep-logs", o.keep_logs, "keep the cluster's work directory (process logs)");
  app.add_flag("--waypoint", c.waypoint_suite,
               "the waypoint benchmark instead: modes direct,nodemesh,waypoint,haproxy-l7,"
               "nginx-l7, scenarios l7-h1,l7-h1-max,l7-h2,l7-h2-max, results in waypoint-l7.md and "
               ".json");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (c.waypoint_suite) {
    if (modes == "direct,nodemesh,stunnel,haproxy")
      modes = "direct,nodemesh,waypoint,haproxy-l7,nginx-l7";
    if (scenarios.empty()) scenarios = "l7-h1,l7-h1-max,l7-h2,l7-h2-max";
  }
  if (o.quick) {
    o.repeats = 1;
    o.l7_max_window = milliseconds(1000);
    o.throughput_time = milliseconds(1000);
    o.latency_time = milliseconds(1000);
    o.latency_runs = 1;
    o.conn_rate_time = milliseconds(1000);
    o.http_warmup = milliseconds(300);
    o.http_window = milliseconds(1000);
    o.idle_connections = 1000;
  }
  if (repeats > 0) o.repeats = repeats;
  if (idle > 0) o.idle_connections = idle;
  o.pin = !no_pin;
  if (conn_rate_seconds > 0) o.conn_rate_time = std::chrono::seconds(conn_rate_seconds);
  o.modes = splitList(modes);
  if (!baseline.empty()) variants.insert(variants.begin(), "baseline=" + baseline);
  for (const auto& v : variants) {
    auto eq = v.find('=');
    if (eq == std::string::npos || eq == 0 || v.find_first_of(",/", 0) < eq) {
      std::cerr << "nodemesh-bench: --agent-variant wants NAME=PATH, got " << v << "\n";
      return kExitFailed;
    }
    o.agent_variants.emplace_back(v.substr(0, eq), v.substr(eq + 1));
  }
  {
    auto it = std::find(o.modes.begin(), o.modes.end(), "nodemesh");
    it = it == o.modes.end() ? it : it + 1;
    for (const auto& [name, path] : o.agent_variants) {
      if (std::find(o.modes.begin(), o.modes.end(), "nodemesh-" + name) != o.modes.end()) continue;
      it = o.modes.insert(it, "nodemesh-" + name) + 1;
    }
  }
  for (const auto& m : o.modes) {
    if (!isKnownMode(m, o)) {
      std::cerr << "nodemesh-bench: unknown mode " << m << "\n";
      return kExitFailed;
    }
    if (o.same_node && m != "direct" && m.rfind("nodemesh", 0) != 0) {
      std::cerr << "nodemesh-bench: --same-node runs only the direct and nodemesh modes, not " << m
                << "\n";
      return kExitFailed;
    }
  }
  if (!o.perf_dir.empty()) {
    std::error_code ec;
    fs::create_directories(o.perf_dir, ec);
    if (ec) {
      std::cerr << "nodemesh-bench: --perf-dir " << o.perf_dir << ": " << ec.message() << "\n";
      return kExitFailed;
    }
  }
  std::vector<std::string>& order = c.order;
  std::vector<std::string> wanted = splitList(scenarios);
  for (const char* s : kScenarioOrder) {
    if (wanted.empty() || std::find(wanted.begin(), wanted.end(), s) != wanted.end()) {
      order.emplace_back(s);
    }
  }
  if (order.empty()) {
    std::cerr << "nodemesh-bench: no known scenario in '" << scenarios << "'\n";
    return kExitFailed;
  }
  // Whether any selected mode runs any selected scenario through an L7 hop.
  for (const auto& m : o.modes) {
    for (const auto& sc : order) c.l7 = c.l7 || (isL7Scenario(sc) && modeRuns(m, sc));
  }
  c.stem = c.waypoint_suite ? "waypoint-l7" : "latest";
  if (o.out_dir.empty()) {
    o.out_dir = o.quick ? (fs::path(sim::binDir()).parent_path() / "bench-quick").string()
                        : o.source_dir + "/bench/results";
  }
  c.text = "bench/run";
  for (int i = 1; i < argc; ++i) c.text += std::string(" ") + argv[i];
  return c;
}

// Whether this machine can run `c`: privileges, tools, the descriptor limit (which may lower
// the idle connections). An exit status when it cannot.
std::optional<int> prepareMachine(Command& c) {
  Options& o = c.o;
  if (auto problem = sim::privilegedEnvironmentProblem()) {
    if (sim::privilegedTestsRequired()) {
      std::cerr << "nodemesh-bench: cannot run (NODEMESH_REQUIRE_PRIVILEGED=1): " << *problem
                << "\n";
      return kExitFailed;
    }
    std::cerr << "nodemesh-bench: skipped: " << *problem << "\n";
    return kExitSkipped;
  }
  std::vector<std::string> tools = {
      "iperf3", "sockperf", "stunnel", "haproxy",        "openssl",    "ss",
      "sysctl", "taskset",  "curl",    sim::agentPath(), loadgenPath()};
  if (c.l7) tools.insert(tools.end(), {"h2load", "nginx"});
  if (std::find(o.modes.begin(), o.modes.end(), "waypoint") != o.modes.end()) {
    tools.push_back(sim::waypointPath());
  }
  for (const std::string& tool : tools) {
    if (!sim::findExecutable(tool)) {
      std::cerr << "nodemesh-bench: " << tool
                << " not found (scripts/install-deps.sh installs the tools; bench/run builds)\n";
      return kExitFailed;
    }
  }
  o.fd_limit = static_cast<int>(raiseFdLimit());
  const IdleCap cap = idleCap(o.modes, o.fd_limit);
  if (o.idle_connections > cap.connections) {
    o.idle_note = fmt::format(
        "{} idle connections instead of {}: RLIMIT_NOFILE is {} here (no CAP_SYS_RESOURCE to "
        "raise it), and {}",
        cap.connections, o.idle_connections, o.fd_limit, cap.why);
    logLine(o.idle_note);
    o.idle_connections = cap.connections;
  }
  return std::nullopt;
}

// The run's settings and circumstances, for the report.
nlohmann::json runInfo(const Command& c, const SuiteOutcome& outcome, double elapsed) {
  const Options& o = c.o;
  const std::vector<double>& background_vcpu = outcome.background_vcpu;
  return {{"date", utcNow("%Y-%m-%d %H:%M")},
          {"command", c.text},
          {"quick", o.quick},
          {"repeats", o.repeats},
          {"elapsed_s", static_cast<int>(elapsed)},
          {"modes", o.modes},
          {"scenarios", c.order},
          {"settings",
           {{"throughput_s", toSeconds(o.throughput_time)},
            {"latency_s", toSeconds(o.latency_time)},
            {"latency_runs", o.latency_runs},
            {"conn_rate_s", toSeconds(o.conn_rate_time)},
            {"conn_rate_concurrency", o.conn_rate_concurrency},
            {"http_rate", o.http_rate},
            {"http_connections", o.http_connections},
            {"http_window_s", toSeconds(o.http_window)},
            {"http_warmup_s", toSeconds(o.http_warmup)},
            {"l7_max_window_s", toSeconds(o.l7_max_window)},
            {"l7_h1_connections", o.l7_h1_connections},
            {"l7_h2_connections", o.l7_h2_connections},
            {"l7_h2_streams", o.l7_h2_streams},
            {"idle_connections", o.idle_connections},
            {"idle_note", o.idle_note},
            {"fd_limit", o.fd_limit},
            {"pinned", o.pin},
            {"same_node", o.same_node},
            {"congestion_control", outcome.congestion_used},
            {"congestion_control_requested", o.congestion_control},
            {"congestion_control_fallback", outcome.congestion_fallback},
            {"agent_flags", o.agent_flags},
            {"agent_variants", o.agent_variants}}},
          {"leftovers", outcome.leftovers},
          {"background_vcpu",
           {{"mean", background_vcpu.empty()
                         ? 0.0
                         : std::accumulate(background_vcpu.begin(), background_vcpu.end(), 0.0) /
                               static_cast<double>(background_vcpu.size())},
            {"max", background_vcpu.empty()
                        ? 0.0
                        : *std::max_element(background_vcpu.begin(), background_vcpu.end())}}}};
}

// Writes the report (and dated copies of a full run); the exit status of the run.
int writeReport(const Command& c, Results& results, const nlohmann::json& machine,
                const nlohmann::json& run_info, double elapsed) {
  const Options& o = c.o;
  std::vector<std::string> missing = results.missing(c.order);
  for (const auto& m : missing) results.addError("no figure for " + m);

  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  const std::string md = results.toMarkdown(machine, run_info);
  const std::string json = results.toJson(machine, run_info).dump(2) + "\n";
  writeText(fs::path(o.out_dir) / (c.stem + ".md"), md);
  writeText(fs::path(o.out_dir) / (c.stem + ".json"), json);
  if (!o.quick && !c.waypoint_suite) {
    const std::string stamp = utcNow("%Y-%m-%d");
    writeText(fs::path(o.out_dir) / (stamp + ".md"), md);
    writeText(fs::path(o.out_dir) / (stamp + ".json"), json);
  }
  std::cout << md;
  logLine(
      fmt::format("{:.0f} s; results in {}/{}.md and {}.json", elapsed, o.out_dir, c.stem, c.stem));
  if (!results.errors().empty()) {
    logLine(fmt::format("{} problem(s):", results.errors().size()));
    for (const auto& e : results.errors()) logLine("  " + e);
    return kExitFailed;
  }
  return kExitOk;
}

int run(int argc, char** argv) {
  auto parsed = parseCommand(argc, argv);
  if (const int* code = std::get_if<int>(&parsed)) return *code;
  sim::cleanUpWhenInterrupted();
  Command& c = std::get<Command>(parsed);
  if (auto code = prepareMachine(c)) return *code;
  const auto started = Clock::now();
  const nlohmann::json machine = describeMachine(c.o.source_dir);
  Results results = c.waypoint_suite
                        ? Results(c.o.modes, "waypoint", {std::begin(kL7Peers), std::end(kL7Peers)})
                        : Results(c.o.modes);
  const SuiteOutcome outcome = runSuite(c.o, c.order, results);
  for (const auto& l : outcome.leftovers) results.addError("left behind: " + l);
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  return writeReport(c, results, machine, runInfo(c, outcome, elapsed), elapsed);
}

}  // namespace
}  // namespace nodemesh::bench

int main(int argc, char** argv) {
  nodemesh::sim::runSweeperIfAsked();
  try {
    return nodemesh::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nodemesh-bench: %s\n", e.what());
    return 1;
  }
}
