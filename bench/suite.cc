#include "bench/suite.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "bench/modes.h"
#include "bench/scenarios.h"
#include "sim/process.h"

namespace nodemesh::bench {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string describeFigures(const Figures& f) {
  std::string out;
  for (const auto& [k, v] : f) out += fmt::format(" {}={:.4g}", k, v);
  return out;
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
    for (pid_t p : pids) {
      if (!list.empty()) list += ',';
      list += std::to_string(p);
    }
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

// One run of the suite on a built cluster: starts and stops modes, runs scenarios, and records
// what happened in the report.
class Suite {
 public:
  Suite(const Options& o, Environment& env, Results& results, std::vector<double>& background)
      : o_(o), env_(env), results_(results), background_vcpu_(background) {}

  // Latency first, the modes taking turns between sockperf runs (each on a freshly started
  // tunnel), the order rotating from run to run: the machine's latency drifts over minutes by
  // more than the differences measured, and this way every mode samples the same stretch of it.
  // A mode's figure is the median of its runs.
  void runLatency(int r);
  // The other scenarios of repeat `r`, mode by mode: all of a mode's on one start of it, except
  // that an L7 mode starts afresh for each, so that what one run leaves in the L7 proxy (a
  // closed-loop run ends with h2load dropping its connections mid-request) does not weigh on the
  // next.
  void runPerMode(int r, const std::vector<std::string>& scenarios);

 private:
  void recordError(const std::string& error);
  // Starts a mode; nullptr (the error recorded) when it could not start.
  std::unique_ptr<Mode> startMode(const std::string& name, int r);
  // Stops a mode; its facts, or nullopt (the error recorded).
  std::optional<std::map<std::string, std::string>> stopMode(Mode& mode, const std::string& name,
                                                             int r);
  // One scenario on a running mode, profiled with --perf-dir into `profile`.data; nullopt (the
  // error recorded) when it produced no figures.
  std::optional<Figures> runScenario(ScenarioRunner& runner, Mode& mode, const std::string& name,
                                     int r, const std::string& scenario,
                                     const std::string& profile);
  // The vCPU other processes used since `cpu0`, kept for the report.
  double noteBackground(const CpuUse& cpu0);

  const Options& o_;
  Environment& env_;
  Results& results_;
  std::vector<double>& background_vcpu_;
};

void Suite::recordError(const std::string& error) {
  results_.addError(error);
  logLine(results_.errors().back());
}

std::unique_ptr<Mode> Suite::startMode(const std::string& name, int r) {
  std::unique_ptr<Mode> mode = makeMode(name, env_);
  if (!mode) {
    results_.addError("unknown mode " + name);
    return nullptr;
  }
  const auto t0 = Clock::now();
  try {
    mode->start();
    logLine(fmt::format("{}/{} {} started in {:.1f} s", r, o_.repeats, name, secondsSince(t0)));
    return mode;
  } catch (const std::exception& e) {
    recordError(fmt::format("{} (repeat {}): start: {}", name, r, e.what()));
    try {
      mode->stop();
    } catch (const std::exception&) {
    }
    return nullptr;
  }
}

std::optional<std::map<std::string, std::string>> Suite::stopMode(Mode& mode,
                                                                  const std::string& name, int r) {
  try {
    const auto t0 = Clock::now();
    auto facts = mode.stop();
    logLine(fmt::format("{}/{} {} stopped in {:.1f} s", r, o_.repeats, name, secondsSince(t0)));
    return facts;
  } catch (const std::exception& e) {
    recordError(fmt::format("{} (repeat {}): stop: {}", name, r, e.what()));
    return std::nullopt;
  }
}

std::optional<Figures> Suite::runScenario(ScenarioRunner& runner, Mode& mode,
                                          const std::string& name, int r,
                                          const std::string& scenario, const std::string& profile) {
  // A peer (a baseline, not what is measured) that fails a scenario gets one more try on the
  // same running tunnel: under a CPU-heavy neighbour stunnel has reset a sockperf connection
  // once. The first failure stays in the report's facts; nodemesh and the waypoint get no
  // second try.
  const bool peer = name != "nodemesh" && name != "waypoint" && name != "direct";
  for (int attempt = 1;; ++attempt) {
    try {
      std::optional<Profiler> profiler;
      // The L7 proxy when the mode has one (the waypoint, HAProxy or nginx), else the nodemesh
      // agents.
      const std::vector<pid_t> proxy = mode.proxyPids();
      if (!o_.perf_dir.empty() && (name.starts_with("nodemesh") || !proxy.empty())) {
        profiler.emplace(env_.cluster(), proxy.empty() ? mode.tunnelPids() : proxy,
                         fmt::format("{}/{}-{}.data", o_.perf_dir, name, profile));
      }
      const auto t0 = Clock::now();
      Figures f = runner.run(scenario);
      results_.addFacts(name, r, runner.takeFacts());
      logLine(fmt::format("{}/{} {} {} ({:.1f} s):{}", r, o_.repeats, name, scenario,
                          secondsSince(t0), describeFigures(f)));
      return f;
    } catch (const std::exception& e) {
      const std::string what = fmt::format("{} (repeat {}): {}: {}", name, r, scenario, e.what());
      if (peer && attempt == 1) {
        logLine(what + "; trying once more");
        results_.addFacts(name, r, {{"retried_" + scenario, e.what()}});
        continue;
      }
      recordError(what);
      return std::nullopt;
    }
  }
}

double Suite::noteBackground(const CpuUse& cpu0) {
  const double background = backgroundVcpu(cpu0, readCpuUse(env_.cluster().cgroupBase()));
  background_vcpu_.push_back(background);
  return background;
}

void Suite::runLatency(int r) {
  const auto t0 = Clock::now();
  const CpuUse cpu0 = readCpuUse(env_.cluster().cgroupBase());
  std::map<std::string, std::map<std::string, std::vector<double>>> runs;
  for (int run = 0; run < o_.latency_runs; ++run) {
    for (size_t i = 0; i < o_.modes.size(); ++i) {
      const std::string& name = o_.modes[(i + static_cast<size_t>(run)) % o_.modes.size()];
      if (!modeRuns(name, "latency")) continue;
      std::unique_ptr<Mode> mode = startMode(name, r);
      if (!mode) continue;
      ScenarioRunner runner(env_, *mode);
      if (auto f = runScenario(runner, *mode, name, r, "latency",
                               fmt::format("latency-{}-{}", r, run + 1))) {
        for (const auto& [key, value] : *f) runs[name][key].push_back(value);
      }
      (void)stopMode(*mode, name, r);
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
    results_.add(name, f);
    results_.addFacts(name, r, each_run);
    logLine(fmt::format("{}/{} {} latency, median of {} runs:{}", r, o_.repeats, name,
                        keys.begin()->second.size(), describeFigures(f)));
  }
  const double background = noteBackground(cpu0);
  logLine(fmt::format("{}/{} latency done in {:.1f} s (other processes: {:.2f} vCPU)", r,
                      o_.repeats, secondsSince(t0), background));
}

void Suite::runPerMode(int r, const std::vector<std::string>& scenarios) {
  for (const auto& name : o_.modes) {
    // The scenarios this mode runs, in groups that share one start of the mode.
    std::vector<std::vector<std::string>> groups;
    for (const auto& scenario : scenarios) {
      if (!modeRuns(name, scenario)) continue;
      if (groups.empty() || isL7Mode(name)) groups.emplace_back();
      groups.back().push_back(scenario);
    }
    for (const auto& group : groups) {
      const auto t0 = Clock::now();
      const CpuUse cpu0 = readCpuUse(env_.cluster().cgroupBase());
      std::unique_ptr<Mode> mode = startMode(name, r);
      if (!mode) continue;
      ScenarioRunner runner(env_, *mode);
      for (const auto& scenario : group) {
        if (auto f =
                runScenario(runner, *mode, name, r, scenario, fmt::format("{}-{}", scenario, r))) {
          results_.add(name, *f);
        }
      }
      const double background = noteBackground(cpu0);
      if (auto facts = stopMode(*mode, name, r)) {
        (*facts)["background_vcpu"] = fmt::format("{:.2f}", background);
        if (isL7Mode(name)) {  // one start per scenario: its facts under its name
          std::map<std::string, std::string> named;
          for (const auto& [k, v] : *facts) named[group.front() + "." + k] = v;
          facts = std::move(named);
        }
        results_.addFacts(name, r, *facts);
      }
      logLine(fmt::format("{}/{} {} done in {:.1f} s (other processes: {:.2f} vCPU)", r, o_.repeats,
                          name, secondsSince(t0), background));
    }
  }
}

}  // namespace

void logLine(const std::string& line) {
  std::fprintf(stderr, "[bench] %s\n", line.c_str());
  std::fflush(stderr);
}

SuiteOutcome runSuite(const Options& o, const std::vector<std::string>& order, Results& results) {
  SuiteOutcome out;
  try {
    Environment env(o);
    logLine("cluster " + env.cluster().prefix() + " ready");
    out.congestion_used = env.congestionControlUsed();
    out.congestion_fallback = env.congestionControlFallback();
    if (!out.congestion_fallback.empty()) {
      logLine(fmt::format(
          "TCP congestion control in the pods: {}, the host's default, instead of {}: {}",
          out.congestion_used, o.congestion_control, out.congestion_fallback));
    }
    Suite suite(o, env, results, out.background_vcpu);
    const bool latency = std::find(order.begin(), order.end(), "latency") != order.end();
    std::vector<std::string> per_mode = order;
    std::erase(per_mode, "latency");
    for (int r = 1; r <= o.repeats; ++r) {
      if (latency) suite.runLatency(r);
      if (!per_mode.empty()) suite.runPerMode(r, per_mode);
    }
    out.leftovers = env.teardown();
    if (o.keep_logs) {  // kept on purpose
      std::erase_if(out.leftovers,
                    [](const std::string& l) { return l.rfind("work dir", 0) == 0; });
    }
  } catch (const std::exception& e) {
    results.addError(std::string("environment: ") + e.what());
    logLine(results.errors().back());
  }
  return out;
}

}  // namespace nodemesh::bench
