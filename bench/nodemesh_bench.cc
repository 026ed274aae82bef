// nodemesh-bench: runs the benchmark suite of bench/README.md on a simulated two-node cluster
// and writes <out>/latest.json and <out>/latest.md (and dated copies for full runs).
//
// For each repeat, each mode (direct, nodemesh, stunnel, haproxy) is started fresh, runs every
// scenario, and is stopped; the reported figure is the median over the repeats. No figure is
// asserted: the exit status says whether every scenario produced its numbers and the cluster
// was removed without leftovers (0), or not (1); 77 means the environment cannot run it
// (no root, no network namespaces) and NODEMESH_REQUIRE_PRIVILEGED is not set.
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "bench/bench_env.h"
#include "bench/modes.h"
#include "bench/report.h"
#include "bench/scenarios.h"
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

void log(const std::string& line) {
  std::fprintf(stderr, "[bench] %s\n", line.c_str());
  std::fflush(stderr);
}

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

std::string describeFigures(const Figures& f) {
  std::string out;
  for (const auto& [k, v] : f) out += fmt::format(" {}={:.4g}", k, v);
  return out;
}

void writeText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// CPU time used on the whole machine and inside the cluster's cgroups (everything the benchmark
// starts runs there), to tell how much other processes competed with a measurement.
struct CpuUse {
  double machine_busy_s = 0;
  double cluster_s = 0;
  Clock::time_point at;
};

CpuUse readCpuUse(const std::string& cluster_cgroup) {
  CpuUse u;
  u.at = Clock::now();
  std::istringstream stat(sim::readFile("/proc/stat"));
  std::string cpu;
  double user = 0;
  double nice = 0;
  double system = 0;
  double idle = 0;
  double iowait = 0;
  double irq = 0;
  double softirq = 0;
  double steal = 0;
  stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  u.machine_busy_s =
      (user + nice + system + irq + softirq + steal) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  std::istringstream cg(sim::readFile(cluster_cgroup + "/cpu.stat"));
  for (std::string key; cg >> key;) {
    double v = 0;
    cg >> v;
    if (key == "usage_usec") u.cluster_s = v / 1e6;
  }
  return u;
}

// vCPU used by processes outside the cluster between two readings.
double backgroundVcpu(const CpuUse& a, const CpuUse& b) {
  double wall = std::chrono::duration<double>(b.at - a.at).count();
  if (wall <= 0) return 0;
  return std::max(0.0, (b.machine_busy_s - a.machine_busy_s) - (b.cluster_s - a.cluster_s)) / wall;
}

// perf record on the tunnel processes for as long as it lives (cpu-clock: this VM has no
// hardware counters; DWARF call graphs: the build omits frame pointers).
class Profiler {
 public:
  Profiler(sim::SimCluster& cluster, const std::vector<pid_t>& pids, const std::string& out) {
    std::string list;
    for (pid_t p : pids) list += (list.empty() ? "" : ",") + std::to_string(p);
    sim::ProcessSpec spec;
    spec.argv = {"perf",         "record",      "-e", "cpu-clock", "-F", "499",
                 "--call-graph", "dwarf,32768", "-p", list,        "-o", out};
    spec.stdout_path = out + ".log";
    process_ = &cluster.startProcess(spec);
    std::this_thread::sleep_for(milliseconds(500));  // attached before the traffic starts
  }
  ~Profiler() {
    process_->signal(SIGINT);
    if (!process_->waitExit(std::chrono::seconds(60))) process_->kill();
  }
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

 private:
  sim::Process* process_;
};

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

int run(int argc, char** argv) {
  Options o;
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
               "client and server pods on one node (modes direct and nodemesh only): with "
               "--agent-flag=--same-node-fast-path or a variant that passes it, the agent's fast "
               "path; without, HBONE within the node");
  app.add_option("--congestion-control", o.congestion_control,
                 "TCP congestion control in the pods, for every mode (host: the host's default)")
      ->capture_default_str();
  app.add_flag("--keep-logs", o.keep_logs, "keep the cluster's work directory (process logs)");
  bool waypoint_suite = false;
  app.add_flag("--waypoint", waypoint_suite,
               "the waypoint benchmark instead: modes direct,nodemesh,waypoint,haproxy-l7,"
               "nginx-l7, scenarios l7-h1,l7-h1-max,l7-h2,l7-h2-max, results in waypoint-l7.md and "
               ".json");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (waypoint_suite) {
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
  std::vector<std::string> order;
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
  bool l7 = false;
  for (const auto& m : o.modes) {
    for (const auto& sc : order) l7 = l7 || (isL7Scenario(sc) && modeRuns(m, sc));
  }
  const std::string stem = waypoint_suite ? "waypoint-l7" : "latest";
  if (o.out_dir.empty()) {
    o.out_dir = o.quick ? (fs::path(sim::binDir()).parent_path() / "bench-quick").string()
                        : o.source_dir + "/bench/results";
  }

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
  if (l7) tools.insert(tools.end(), {"h2load", "nginx"});
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
    log(o.idle_note);
    o.idle_connections = cap.connections;
  }

  std::string command = "bench/run";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  const auto started = Clock::now();
  const nlohmann::json machine = describeMachine(o.source_dir);
  Results results = waypoint_suite
                        ? Results(o.modes, "waypoint", {std::begin(kL7Peers), std::end(kL7Peers)})
                        : Results(o.modes);
  std::vector<std::string> leftovers;
  std::vector<double> background_vcpu;  // per mode run
  std::string congestion_used;          // what the pods ran, after any fallback
  std::string congestion_fallback;      // why it is not o.congestion_control
  try {
    Environment env(o);
    log("cluster " + env.cluster().prefix() + " ready");
    congestion_used = env.congestionControlUsed();
    congestion_fallback = env.congestionControlFallback();
    if (!congestion_fallback.empty()) {
      log(fmt::format(
          "TCP congestion control in the pods: {}, the host's default, instead of {}: {}",
          congestion_used, o.congestion_control, congestion_fallback));
    }
    auto record_error = [&](const std::string& error) {
      results.addError(error);
      log(results.errors().back());
    };
    // Starts a mode; nullptr (the error recorded) when it could not start.
    auto start_mode = [&](const std::string& name, int r) -> std::unique_ptr<Mode> {
      std::unique_ptr<Mode> mode = makeMode(name, env);
      if (!mode) {
        results.addError("unknown mode " + name);
        return nullptr;
      }
      const auto t0 = Clock::now();
      try {
        mode->start();
        log(fmt::format("{}/{} {} started in {:.1f} s", r, o.repeats, name,
                        std::chrono::duration<double>(Clock::now() - t0).count()));
        return mode;
      } catch (const std::exception& e) {
        record_error(fmt::format("{} (repeat {}): start: {}", name, r, e.what()));
        try {
          mode->stop();
        } catch (const std::exception&) {
        }
        return nullptr;
      }
    };
    auto stop_mode = [&](Mode& mode, const std::string& name,
                         int r) -> std::optional<std::map<std::string, std::string>> {
      try {
        const auto stop0 = Clock::now();
        auto facts = mode.stop();
        log(fmt::format("{}/{} {} stopped in {:.1f} s", r, o.repeats, name,
                        std::chrono::duration<double>(Clock::now() - stop0).count()));
        return facts;
      } catch (const std::exception& e) {
        record_error(fmt::format("{} (repeat {}): stop: {}", name, r, e.what()));
        return std::nullopt;
      }
    };
    auto run_scenario = [&](ScenarioRunner& runner, Mode& mode, const std::string& name, int r,
                            const std::string& scenario,
                            const std::string& profile) -> std::optional<Figures> {
      // A peer (a baseline, not what is measured) that fails a scenario gets one more try on
      // the same running tunnel: under a CPU-heavy neighbour stunnel has reset a sockperf
      // connection once. The first failure stays in the report's facts; nodemesh and the
      // waypoint get no second try.
      const bool peer = name != "nodemesh" && name != "waypoint" && name != "direct";
      for (int attempt = 1;; ++attempt) {
        try {
          std::optional<Profiler> profiler;
          // The L7 proxy when the mode has one (the waypoint, HAProxy or nginx), else the
          // nodemesh agents.
          const std::vector<pid_t> proxy = mode.proxyPids();
          if (!o.perf_dir.empty() && (name.starts_with("nodemesh") || !proxy.empty())) {
            profiler.emplace(env.cluster(), proxy.empty() ? mode.tunnelPids() : proxy,
                             fmt::format("{}/{}-{}.data", o.perf_dir, name, profile));
          }
          const auto s0 = Clock::now();
          Figures f = runner.run(scenario);
          log(fmt::format("{}/{} {} {} ({:.1f} s):{}", r, o.repeats, name, scenario,
                          std::chrono::duration<double>(Clock::now() - s0).count(),
                          describeFigures(f)));
          return f;
        } catch (const std::exception& e) {
          const std::string what =
              fmt::format("{} (repeat {}): {}: {}", name, r, scenario, e.what());
          if (peer && attempt == 1) {
            log(what + "; trying once more");
            results.addFacts(name, r, {{"retried_" + scenario, e.what()}});
            continue;
          }
          record_error(what);
          return std::nullopt;
        }
      }
    };
    const bool latency = std::find(order.begin(), order.end(), "latency") != order.end();
    std::vector<std::string> per_mode = order;
    std::erase(per_mode, "latency");
    for (int r = 1; r <= o.repeats; ++r) {
      if (latency) {
        // Latency first, the modes taking turns between sockperf runs (each on a freshly
        // started tunnel), the order rotating from run to run: the machine's latency drifts
        // over minutes by more than the differences measured, and this way every mode samples
        // the same stretch of it. A mode's figure is the median of its runs.
        const auto t0 = Clock::now();
        const CpuUse cpu0 = readCpuUse(env.cluster().cgroupBase());
        std::map<std::string, std::map<std::string, std::vector<double>>> runs;
        for (int run = 0; run < o.latency_runs; ++run) {
          for (size_t i = 0; i < o.modes.size(); ++i) {
            const std::string& name = o.modes[(i + static_cast<size_t>(run)) % o.modes.size()];
            if (!modeRuns(name, "latency")) continue;
            std::unique_ptr<Mode> mode = start_mode(name, r);
            if (!mode) continue;
            ScenarioRunner runner(env, *mode);
            if (auto f = run_scenario(runner, *mode, name, r, "latency",
                                      fmt::format("latency-{}-{}", r, run + 1))) {
              for (const auto& [key, value] : *f) runs[name][key].push_back(value);
            }
            (void)stop_mode(*mode, name, r);
          }
        }
        for (const auto& [name, keys] : runs) {
          Figures f;
          std::map<std::string, std::string> each_run;  // kept in latest.json's facts
          for (const auto& [key, values] : keys) {
            f[key] = medianOf(values);
            std::string list;
            for (double v : values) list += fmt::format("{}{:.1f}", list.empty() ? "" : " ", v);
            each_run["runs_" + key] = list;
          }
          results.add(name, f);
          results.addFacts(name, r, each_run);
          log(fmt::format("{}/{} {} latency, median of {} runs:{}", r, o.repeats, name,
                          keys.begin()->second.size(), describeFigures(f)));
        }
        const double background = backgroundVcpu(cpu0, readCpuUse(env.cluster().cgroupBase()));
        background_vcpu.push_back(background);
        log(fmt::format("{}/{} latency done in {:.1f} s (other processes: {:.2f} vCPU)", r,
                        o.repeats, std::chrono::duration<double>(Clock::now() - t0).count(),
                        background));
      }
      if (per_mode.empty()) continue;
      for (const auto& name : o.modes) {
        // The scenarios this mode runs, in groups that share one start of the mode: all of them,
        // except that an L7 mode starts afresh for each, so that what one run leaves in the L7
        // proxy (a closed-loop run ends with h2load dropping its connections mid-request) does
        // not weigh on the next.
        std::vector<std::vector<std::string>> groups;
        for (const auto& scenario : per_mode) {
          if (!modeRuns(name, scenario)) continue;
          if (groups.empty() || isL7Mode(name)) groups.emplace_back();
          groups.back().push_back(scenario);
        }
        for (const auto& group : groups) {
          const auto t0 = Clock::now();
          const CpuUse cpu0 = readCpuUse(env.cluster().cgroupBase());
          std::unique_ptr<Mode> mode = start_mode(name, r);
          if (!mode) continue;
          ScenarioRunner runner(env, *mode);
          for (const auto& scenario : group) {
            if (auto f = run_scenario(runner, *mode, name, r, scenario,
                                      fmt::format("{}-{}", scenario, r))) {
              results.add(name, *f);
            }
          }
          const double background = backgroundVcpu(cpu0, readCpuUse(env.cluster().cgroupBase()));
          background_vcpu.push_back(background);
          if (auto facts = stop_mode(*mode, name, r)) {
            (*facts)["background_vcpu"] = fmt::format("{:.2f}", background);
            if (isL7Mode(name)) {  // one start per scenario: its facts under its name
              std::map<std::string, std::string> named;
              for (const auto& [k, v] : *facts) named[group.front() + "." + k] = v;
              facts = std::move(named);
            }
            results.addFacts(name, r, *facts);
          }
          log(fmt::format("{}/{} {} done in {:.1f} s (other processes: {:.2f} vCPU)", r, o.repeats,
                          name, std::chrono::duration<double>(Clock::now() - t0).count(),
                          background));
        }
      }
    }
    leftovers = env.teardown();
    if (o.keep_logs) {  // kept on purpose
      std::erase_if(leftovers, [](const std::string& l) { return l.rfind("work dir", 0) == 0; });
    }
  } catch (const std::exception& e) {
    results.addError(std::string("environment: ") + e.what());
    log(results.errors().back());
  }
  for (const auto& l : leftovers) results.addError("left behind: " + l);

  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  nlohmann::json run_info = {
      {"date", utcNow("%Y-%m-%d %H:%M")},
      {"command", command},
      {"quick", o.quick},
      {"repeats", o.repeats},
      {"elapsed_s", static_cast<int>(elapsed)},
      {"modes", o.modes},
      {"scenarios", order},
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
        {"congestion_control", congestion_used},
        {"congestion_control_requested", o.congestion_control},
        {"congestion_control_fallback", congestion_fallback},
        {"agent_flags", o.agent_flags},
        {"agent_variants", o.agent_variants}}},
      {"leftovers", leftovers},
      {"background_vcpu",
       {{"mean", background_vcpu.empty()
                     ? 0.0
                     : std::accumulate(background_vcpu.begin(), background_vcpu.end(), 0.0) /
                           static_cast<double>(background_vcpu.size())},
        {"max", background_vcpu.empty()
                    ? 0.0
                    : *std::max_element(background_vcpu.begin(), background_vcpu.end())}}}};
  std::vector<std::string> missing = results.missing(order);
  for (const auto& m : missing) results.addError("no figure for " + m);

  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  const std::string md = results.toMarkdown(machine, run_info);
  const std::string json = results.toJson(machine, run_info).dump(2) + "\n";
  writeText(fs::path(o.out_dir) / (stem + ".md"), md);
  writeText(fs::path(o.out_dir) / (stem + ".json"), json);
  if (!o.quick && !waypoint_suite) {
    const std::string stamp = utcNow("%Y-%m-%d");
    writeText(fs::path(o.out_dir) / (stamp + ".md"), md);
    writeText(fs::path(o.out_dir) / (stamp + ".json"), json);
  }
  std::cout << md;
  log(fmt::format("{:.0f} s; results in {}/{}.md and {}.json", elapsed, o.out_dir, stem, stem));
  if (!results.errors().empty()) {
    log(fmt::format("{} problem(s):", results.errors().size()));
    for (const auto& e : results.errors()) log("  " + e);
    return kExitFailed;
  }
  return kExitOk;
}

}  // namespace
}  // namespace nodemesh::bench

int main(int argc, char** argv) {
  try {
    return nodemesh::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nodemesh-bench: %s\n", e.what());
    return 1;
  }
}
