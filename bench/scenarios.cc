#include "bench/scenarios.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sim/process.h"
#include "sim/testapp_client.h"

namespace nodemesh::bench {
namespace {

using Clock = std::chrono::steady_clock;
using sim::CommandResult;
using sim::HarnessError;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string target(const SocketAddress& a) {
  return a.toString();
}

// Whole seconds for tools that only take those (sockperf -t, iperf3 -t), at least 1.
std::string wholeSeconds(milliseconds ms) {
  return std::to_string(std::max<int64_t>(1, (ms.count() + 500) / 1000));
}

nlohmann::json lastEvent(const std::string& out, const std::string& event,
                         const std::string& what) {
  auto e = sim::findLastEvent(out, event);
  if (!e) throw HarnessError(what + ": no '" + event + "' result in its output:\n" + out);
  return *e;
}

double number(const nlohmann::json& j, const nlohmann::json::json_pointer& p) {
  if (!j.contains(p) || !j.at(p).is_number()) {
    throw HarnessError("missing number " + p.to_string() + " in " + j.dump());
  }
  return j.at(p).get<double>();
}

}  // namespace

const MetricInfo* findMetric(const std::string& key) {
  for (const MetricInfo& m : kMetrics) {
    if (key == m.key) return &m;
  }
  return nullptr;
}

std::optional<ProcSample> sampleProcess(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  std::string stat = sim::readFile(dir + "/stat");
  auto close = stat.rfind(')');  // the command name may contain spaces and parentheses
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close + 2));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  // Fields after the name start at field 3 (state): utime is field 14, stime 15 (proc(5)).
  if (f.size() < 13) return std::nullopt;
  ProcSample sample;
  static const double kTicks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  sample.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / kTicks;
  std::istringstream status(sim::readFile(dir + "/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) {
      sample.rss_mb = std::stod(line.substr(6)) / 1024.0;  // kB
    }
  }
  return sample;
}

std::vector<ProcSample> ScenarioRunner::sampleTunnel() {
  return samplePids(mode_.tunnelPids());
}

std::vector<ProcSample> ScenarioRunner::samplePids(const std::vector<pid_t>& pids) {
  std::vector<ProcSample> out;
  for (pid_t pid : pids) {
    auto s = sampleProcess(pid);
    if (!s) throw HarnessError(mode_.name() + ": tunnel process " + std::to_string(pid) + " died");
    out.push_back(*s);
  }
  return out;
}

double ScenarioRunner::waitTunnelQuiet(std::chrono::seconds limit) {
  constexpr auto kWindow = milliseconds(200);
  constexpr double kTick = 0.01;  // USER_HZ 100: /proc's CPU times count in 10 ms ticks
  const auto t0 = Clock::now();
  auto before = sampleTunnel();
  for (;;) {
    std::this_thread::sleep_for(kWindow);
    auto after = sampleTunnel();
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (cpuSeconds(before, after) <= kTick + 1e-9) return waited;
    if (Clock::now() - t0 > limit) {
      throw HarnessError(mode_.name() + ": the tunnel was still busy " +
                         std::to_string(limit.count()) + " s after the connections closed");
    }
    before = std::move(after);
  }
}

void ScenarioRunner::noteSlowest(const std::string& key, const nlohmann::json& done) {
  auto slowest = done.find("slowest");
  if (slowest == done.end() || !slowest->is_array()) return;
  std::string list;
  for (const auto& s : *slowest) {
    list += fmt::format("{}{:.0f}@{:.0f}", list.empty() ? "" : " ", s.value("us", 0.0),
                        s.value("due_ms", 0.0));
  }
  facts_[key] = list;
}

double ScenarioRunner::cpuSeconds(const std::vector<ProcSample>& before,
                                  const std::vector<ProcSample>& after) {
  double cpu = 0;
  for (size_t i = 0; i < before.size() && i < after.size(); ++i) {
    cpu += after[i].cpu_seconds - before[i].cpu_seconds;
  }
  return cpu;
}

double ScenarioRunner::tunnelVcpu(const std::vector<ProcSample>& before,
                                  const std::vector<ProcSample>& after, double seconds) {
  return seconds > 0 ? cpuSeconds(before, after) / seconds : 0;
}

Figures ScenarioRunner::run(const std::string& scenario) {
  if (scenario == "http") return http();
  if (scenario == "latency") return latency();
  if (scenario == "conn-rate") return connRate();
  if (scenario == "throughput") return throughput();
  if (scenario == "idle") return idle();
  if (scenario == "l7-h1") return l7(HttpVersion::kHttp1);
  if (scenario == "l7-h2") return l7(HttpVersion::kHttp2);
  if (scenario == "l7-h1-max") return l7Max(HttpVersion::kHttp1);
  if (scenario == "l7-h2-max") return l7Max(HttpVersion::kHttp2);
  throw HarnessError("unknown scenario " + scenario);
}

// HTTP/1.1 GETs answered with 1 KiB at a fixed 1,000 requests/s over 16 keep-alive
// connections; the tunnel's CPU and memory are sampled over a window after a warm-up.
Figures ScenarioRunner::http() {
  const Options& o = env_.options();
  // First the tunnel at rest (the mode has just started): what it costs without traffic.
  const auto idle_before = sampleTunnel();
  const auto idle_t0 = Clock::now();
  std::this_thread::sleep_for(o.http_window / 2);
  const auto idle_after = sampleTunnel();
  const double idle_wall = std::chrono::duration<double>(Clock::now() - idle_t0).count();
  const auto total = o.http_warmup + o.http_window + milliseconds(300);
  sim::Process& load = env_.startInPod(
      Environment::kClientPod,
      {loadgenPath(), "http-load", "--to", target(mode_.endpoint(Service::kHttp)), "--rate",
       std::to_string(o.http_rate), "--duration-ms", std::to_string(total.count()), "--connections",
       std::to_string(o.http_connections), "--warmup-ms", std::to_string(o.http_warmup.count())});
  if (!load.waitForOutput("\"started\"", seconds(20))) {
    throw HarnessError("http-load did not start:\n" + load.output() + load.errorOutput());
  }
  std::this_thread::sleep_for(o.http_warmup);
  auto before = sampleTunnel();
  auto t0 = Clock::now();
  std::this_thread::sleep_for(o.http_window);
  auto after = sampleTunnel();
  double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  auto code = load.waitExit(total + seconds(20));
  auto done = lastEvent(load.output(), "done", "http-load");
  if (code != 0) throw HarnessError("http-load failed: " + done.dump());

  noteSlowest("http_slowest", done);
  Figures f;
  f["http_p50_us"] = number(done, "/latency/p50_us"_json_pointer);
  f["http_p99_us"] = number(done, "/latency/p99_us"_json_pointer);
  if (!before.empty()) {
    double total_cpu = 0;
    double side_cpu = 0;
    double side_rss = 0;
    for (size_t i = 0; i < before.size(); ++i) {
      double cpu = (after[i].cpu_seconds - before[i].cpu_seconds) / wall;
      total_cpu += cpu;
      side_cpu = std::max(side_cpu, cpu);
      side_rss = std::max(side_rss, after[i].rss_mb);
    }
    // Per 1,000 requests/s (the rate is a flag; the target is per 1,000).
    const double per_1000 = 1000.0 / o.http_rate;
    f["http_vcpu_total"] = total_cpu * per_1000;
    f["http_vcpu_side"] = side_cpu * per_1000;
    f["http_rss_side"] = side_rss;
    f["idle_vcpu_total"] = tunnelVcpu(idle_before, idle_after, idle_wall);
    double rest_rss = 0;
    for (const auto& sample : idle_after) rest_rss = std::max(rest_rss, sample.rss_mb);
    f["rest_rss_side"] = rest_rss;
  }
  return f;
}

// sockperf ping-pong over one TCP connection per size: full round trip percentiles. One run
// of each size; the driver runs Options::latency_runs of them per round, the modes taking turns
// between runs (nodemesh_bench.cc), and takes the median.
Figures ScenarioRunner::latency() {
  const Options& o = env_.options();
  const SocketAddress ep = mode_.endpoint(Service::kSockperf);
  Figures f;
  for (const auto& [size, name] : {std::pair<int, std::string>{64, "64"}, {1024, "1k"}}) {
    CommandResult r = env_.runInClient(
        {"sockperf", "ping-pong", "--tcp", "-i", ep.ip.toString(), "-p", std::to_string(ep.port),
         "-m", std::to_string(size), "-t", wholeSeconds(o.latency_time), "--full-rtt"},
        o.latency_time + seconds(30));
    if (!r.ok()) throw HarnessError(r.describe());
    const std::string text = r.out + r.err;
    for (const auto& [pct, key] : {std::pair<std::string, std::string>{"50\\.000", "p50"},
                                   {"99\\.000", "p99"},
                                   {"99\\.900", "p999"}}) {
      std::smatch m;
      if (!std::regex_search(text, m, std::regex("percentile " + pct + " = +([0-9.]+)"))) {
        throw HarnessError("sockperf printed no percentile " + pct + ":\n" + text);
      }
      f["latency_" + name + "_" + key] = std::stod(m[1].str());
    }
  }
  return f;
}

// Short connections, 16 at a time: connect, 64 B each way, close.
Figures ScenarioRunner::connRate() {
  const Options& o = env_.options();
  auto before = sampleTunnel();
  auto t0 = Clock::now();
  CommandResult r =
      env_.runInClient({loadgenPath(), "conn-rate", "--to", target(mode_.endpoint(Service::kEcho)),
                        "--duration-ms", std::to_string(o.conn_rate_time.count()), "--concurrency",
                        std::to_string(o.conn_rate_concurrency), "--size", "64"},
                       o.conn_rate_time + seconds(30));
  auto after = sampleTunnel();
  double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  auto done = lastEvent(r.out, "done", "conn-rate");
  if (!r.ok()) throw HarnessError("conn-rate failed: " + done.dump());
  Figures f = {{"conn_rate", number(done, "/per_second"_json_pointer)},
               {"conn_p50_us", number(done, "/latency/p50_us"_json_pointer)}};
  if (!before.empty()) f["conn_rate_vcpu"] = tunnelVcpu(before, after, wall);
  return f;
}

// iperf3 upload, 1 and 4 parallel streams; the receiver's rate.
Figures ScenarioRunner::throughput() {
  const Options& o = env_.options();
  const SocketAddress ep = mode_.endpoint(Service::kIperf);
  Figures f;
  for (int streams : {1, 4}) {
    const bool omit = !o.quick;  // skip the first second (slow start) in full runs
    auto before = sampleTunnel();
    auto t0 = Clock::now();
    CommandResult r =
        env_.runInClient({"iperf3", "-c", ep.ip.toString(), "-p", std::to_string(ep.port), "-t",
                          wholeSeconds(o.throughput_time), "-O", omit ? "1" : "0", "-P",
                          std::to_string(streams), "-J"},
                         o.throughput_time + seconds(30));
    auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    if (!r.ok() || !j.is_object()) throw HarnessError(r.describe());
    auto after = sampleTunnel();
    double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    f["throughput_" + std::to_string(streams)] =
        number(j, "/end/sum_received/bits_per_second"_json_pointer) / 1e9;
    if (streams == 1 && !before.empty()) {
      f["throughput_1_vcpu"] = tunnelVcpu(before, after, wall);
    }
  }
  return f;
}

// N connections opened through the tunnel (each carries one byte each way, then stays idle);
// the tunnel processes' RSS growth per connection.
Figures ScenarioRunner::idle() {
  const Options& o = env_.options();
  if (mode_.tunnelPids().empty()) return {};  // direct: no tunnel to weigh
  auto before = sampleTunnel();
  sim::Process& hold =
      env_.startInPod(Environment::kClientPod,
                      {loadgenPath(), "hold", "--to", target(mode_.endpoint(Service::kEcho)),
                       "--count", std::to_string(o.idle_connections), "--concurrency", "128"});
  if (!hold.waitForOutput("\"ready\"", seconds(180))) {
    hold.kill();
    throw HarnessError("hold did not open its connections:\n" + hold.output());
  }
  std::this_thread::sleep_for(seconds(1));  // let both sides settle
  auto after = sampleTunnel();
  auto ready = lastEvent(hold.output(), "ready", "hold");
  const auto close_t0 = Clock::now();
  hold.signal(SIGTERM);
  hold.waitExit(seconds(60));
  // The tunnel closes 10,000 connections now: the next scenario starts after that.
  const double close_s =
      std::chrono::duration<double>(Clock::now() - close_t0).count() + waitTunnelQuiet(seconds(30));
  double open = number(ready, "/open"_json_pointer);
  if (open < o.idle_connections) {
    throw HarnessError("hold opened only " + ready.dump());
  }
  double grown = 0;
  double total = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    grown += after[i].rss_mb - before[i].rss_mb;
    total += after[i].rss_mb;
  }
  return {{"idle_kib_per_conn", grown * 1024.0 / open},
          {"idle_rss_total", total},
          {"idle_open_s", number(ready, "/open_seconds"_json_pointer)},
          {"idle_close_s", close_s}};
}

namespace {

std::string durationMs(milliseconds ms) {
  return std::to_string(ms.count()) + "ms";
}

// h2load's summary: the req/s of its "finished in" line; throws unless every request succeeded
// with a 2xx.
double h2loadRps(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(R"(finished in [0-9.]+m?s, ([0-9.]+) req/s)"))) {
    throw HarnessError("h2load printed no rate:\n" + out);
  }
  const double rps = std::stod(m[1].str());
  std::smatch r;
  std::smatch c;
  if (!std::regex_search(out, r,
                         std::regex(R"(requests: ([0-9]+) total, ([0-9]+) started, ([0-9]+) )"
                                    R"(done, ([0-9]+) succeeded, ([0-9]+) failed, ([0-9]+) )"
                                    R"(errored)")) ||
      !std::regex_search(
          out, c,
          std::regex(R"(status codes: ([0-9]+) 2xx, ([0-9]+) 3xx, ([0-9]+) 4xx, ([0-9]+) 5xx)"))) {
    throw HarnessError("h2load printed no request counts:\n" + out);
  }
  // In a timed run the status counts include a few requests of the warm-up's last moment, so
  // they need not equal the request counts: no failure and no status other than 2xx.
  if (r[5].str() != "0" || r[6].str() != "0" || r[4].str() == "0" || c[1].str() == "0" ||
      c[2].str() != "0" || c[3].str() != "0" || c[4].str() != "0") {
    throw HarnessError("h2load: not every request succeeded with 2xx:\n" + out);
  }
  return rps;
}

}  // namespace

std::pair<double, double> ScenarioRunner::h2loadMax(HttpVersion version,
                                                    const std::vector<pid_t>& pids) {
  const Options& o = env_.options();
  std::vector<std::string> argv = {"h2load",
                                   "-t",
                                   "1",
                                   "-D",
                                   durationMs(o.l7_max_window),
                                   "--warm-up-time",
                                   durationMs(o.http_warmup)};
  if (version == HttpVersion::kHttp1) {
    argv.insert(argv.end(), {"--h1", "-c", std::to_string(o.l7_h1_connections)});
  } else {
    argv.insert(argv.end(),
                {"-c", std::to_string(o.l7_h2_connections), "-m", std::to_string(o.l7_h2_streams)});
  }
  argv.push_back("http://" + mode_.httpEndpoint(version).toString() + "/bench");
  sim::Process& load = env_.startInPod(Environment::kClientPod, argv);
  // h2load connects, warms up, then measures for the window: sample the same window (the
  // connections take a few milliseconds, so the first samples fall inside the warm-up).
  std::this_thread::sleep_for(o.http_warmup + milliseconds(100));
  const auto before = samplePids(pids);
  const auto t0 = Clock::now();
  std::this_thread::sleep_for((o.l7_max_window - milliseconds(200)) / 2);
  const auto middle = samplePids(pids);
  const auto t1 = Clock::now();
  std::this_thread::sleep_for((o.l7_max_window - milliseconds(200)) / 2);
  const auto after = samplePids(pids);
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  // A proxy that works through the first half and idles through the second has stalled.
  const double first = tunnelVcpu(before, middle, std::chrono::duration<double>(t1 - t0).count());
  const double second =
      tunnelVcpu(middle, after, std::chrono::duration<double>(Clock::now() - t1).count());
  if (!pids.empty() && first > 0.05 && second < first / 4) {
    load.waitExit(o.l7_max_window + seconds(30));
    throw HarnessError(fmt::format(
        "the L7 proxy stalled under h2load: {:.3f} vCPU in the first half of the window, {:.3f} "
        "in the second",
        first, second));
  }
  const auto code = load.waitExit(o.l7_max_window + seconds(30));
  const std::string out = load.output() + load.errorOutput();
  if (code != 0) throw HarnessError("h2load failed:\n" + out);
  return {h2loadRps(out), tunnelVcpu(before, after, wall)};
}

sim::Process& ScenarioRunner::startH2Rate(const std::string& log_path, milliseconds total) {
  const Options& o = env_.options();
  const int per_client = std::max(1, o.http_rate / o.l7_h2_connections);
  return env_.startInPod(
      Environment::kClientPod,
      {"h2load", "-t", "1", "-c", std::to_string(o.l7_h2_connections), "-m",
       std::to_string(o.l7_h2_streams), "--rps", std::to_string(per_client), "-D",
       durationMs(total), "--log-file", log_path,
       "http://" + mode_.httpEndpoint(HttpVersion::kHttp2).toString() + "/bench"});
}

Figures ScenarioRunner::l7(HttpVersion version) {
  const Options& o = env_.options();
  const std::string v = version == HttpVersion::kHttp1 ? "h1" : "h2";
  const std::vector<pid_t> proxy = mode_.proxyPids();
  Figures f;
  // HTTP/1.1 with nm-loadgen http-load (open loop, as the http scenario), HTTP/2 with h2load
  // --rps.
  const auto total = o.http_warmup + o.http_window + milliseconds(300);
  const std::string h2_log =
      fmt::format("{}/h2load-{}-{}.log", env_.cluster().workDir(), mode_.name(), ::getpid());
  sim::Process* load = nullptr;
  if (version == HttpVersion::kHttp1) {
    load = &env_.startInPod(
        Environment::kClientPod,
        {loadgenPath(), "http-load", "--to", target(mode_.httpEndpoint(version)), "--rate",
         std::to_string(o.http_rate), "--duration-ms", std::to_string(total.count()),
         "--connections", std::to_string(o.l7_h1_connections), "--warmup-ms",
         std::to_string(o.http_warmup.count())});
    if (!load->waitForOutput("\"started\"", seconds(20))) {
      throw HarnessError("http-load did not start:\n" + load->output() + load->errorOutput());
    }
  } else {
    std::filesystem::remove(h2_log);
    load = &startH2Rate(h2_log, total);
  }
  std::this_thread::sleep_for(o.http_warmup);
  const auto before_all = sampleTunnel();
  const auto before = samplePids(proxy);
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(o.http_window);
  const auto after_all = sampleTunnel();
  const auto after = samplePids(proxy);
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto code = load->waitExit(total + seconds(30));
  if (version == HttpVersion::kHttp1) {
    auto done = lastEvent(load->output(), "done", "http-load");
    if (code != 0) throw HarnessError("http-load failed: " + done.dump());
    f["l7_h1_p50_us"] = number(done, "/latency/p50_us"_json_pointer);
    f["l7_h1_p99_us"] = number(done, "/latency/p99_us"_json_pointer);
    noteSlowest("l7_h1_slowest", done);
  } else {
    const std::string out = load->output() + load->errorOutput();
    if (code != 0) throw HarnessError("h2load --rps failed:\n" + out);
    h2loadRps(out);  // every request succeeded
    // Per request: start (us since the epoch), status, microseconds to the end of the response.
    std::istringstream in(sim::readFile(h2_log));
    std::vector<std::pair<int64_t, double>> rows;
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      int64_t start = 0;
      int status = 0;
      double us = 0;
      if (fields >> start >> status >> us) rows.emplace_back(start, us);
    }
    if (rows.empty()) throw HarnessError("h2load wrote no request to " + h2_log);
    int64_t first = rows.front().first;
    for (const auto& [start, us] : rows) first = std::min(first, start);
    std::vector<double> latencies;
    for (const auto& [start, us] : rows) {
      if (start - first >= o.http_warmup.count() * 1000) latencies.push_back(us);
    }
    if (latencies.size() * 2 < rows.size()) {
      throw HarnessError(fmt::format("h2load: {} of {} requests after the warm-up",
                                     latencies.size(), rows.size()));
    }
    std::sort(latencies.begin(), latencies.end());
    auto pct = [&](double p) {
      return latencies[std::min(
          latencies.size() - 1,
          static_cast<size_t>(p / 100.0 * static_cast<double>(latencies.size() - 1)))];
    };
    f["l7_h2_p50_us"] = pct(50);
    f["l7_h2_p99_us"] = pct(99);
  }
  // Per 1,000 requests/s, as the issue states its targets.
  const double per_1000 = 1000.0 / o.http_rate;
  if (!before_all.empty()) {
    f["l7_" + v + "_total_vcpu"] = tunnelVcpu(before_all, after_all, wall) * per_1000;
  }
  if (!proxy.empty()) {
    f["l7_" + v + "_proxy_vcpu"] = tunnelVcpu(before, after, wall) * per_1000;
    double rss = 0;
    for (const ProcSample& p : after) rss += p.rss_mb;
    f["l7_" + v + "_proxy_rss"] = rss;
  }
  return f;
}

Figures ScenarioRunner::l7Max(HttpVersion version) {
  const Options& o = env_.options();
  const std::string v = version == HttpVersion::kHttp1 ? "h1" : "h2";
  const std::vector<pid_t> proxy = mode_.proxyPids();
  const auto [max_rps, max_proxy_vcpu] = h2loadMax(version, proxy);
  // A maximum below the fixed rate that every mode sustains means the hop stalled (requests
  // waiting for answers that do not come), not that it is slow: no figure.
  if (max_rps < o.http_rate) {
    throw HarnessError(fmt::format(
        "h2load got only {:.0f} requests/s through, below the fixed {} of the l7-{} scenario: "
        "stalled (the L7 proxy used {:.3f} vCPU)",
        max_rps, o.http_rate, v, max_proxy_vcpu));
  }
  Figures f;
  f["l7_" + v + "_max_rps"] = max_rps;
  if (!proxy.empty()) {
    f["l7_" + v + "_max_proxy_vcpu"] = max_proxy_vcpu;
    if (max_proxy_vcpu > 0) f["l7_" + v + "_rps_per_core"] = max_rps / max_proxy_vcpu;
  }
  return f;
}

}  // namespace nodemesh::bench
