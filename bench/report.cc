#include "bench/report.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <tuple>

#include <fmt/format.h>

#include "bench/modes.h"
#include "sim/process.h"

namespace nodemesh::bench {
namespace {

std::string firstLine(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

std::string fieldOf(const std::string& file, const std::string& key) {
  std::istringstream in(sim::readFile(file));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) {
      auto colon = line.find(':');
      std::string v = colon == std::string::npos ? "" : line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "";
}

std::string toolVersion(const std::vector<std::string>& argv, const std::string& needle) {
  auto r = sim::runLocal(argv);
  std::istringstream in(r.out + "\n" + r.err);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return "unknown";
}

bool isLatency(const std::string& metric) {
  return metric.rfind("latency_", 0) == 0 || (metric.rfind("l7_", 0) == 0 && metric.size() > 3 &&
                                              metric.compare(metric.size() - 3, 3, "_us") == 0);
}

std::string formatValue(const MetricInfo& m, double v) {
  std::string unit = m.unit;
  if (unit == "Gbit/s") return fmt::format("{:.2f}", v);
  if (unit == "conn/s" || unit == "req/s") return fmt::format("{:.0f}", v);
  if (unit == "vCPU") return fmt::format("{:.3f}", v);
  if (unit == "us") return fmt::format("{:.1f}", v);
  return fmt::format("{:.1f}", v);
}

std::string formatRatio(std::optional<double> r) {
  return r ? fmt::format("{:.2f}x", *r) : "-";
}

// Latency figures are themselves medians of several sockperf runs (scenarios.cc).
std::string latencyRunsNote(const nlohmann::json& run) {
  const int runs = run.contains("settings") ? run["settings"].value("latency_runs", 1) : 1;
  if (runs <= 1) return "";
  return fmt::format(" (a latency figure: median of {} sockperf runs in each)", runs);
}

}  // namespace

double medianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string congestionControlLine(const nlohmann::json& settings) {
  const std::string used = settings.value("congestion_control", "");
  if (!settings.contains("congestion_control_requested")) {  // results written before the fallback
    return used == "host" ? "TCP congestion control: the host's default."
                          : fmt::format(
                                "TCP congestion control in the pods: {} (the host's "
                                "default does not apply).",
                                used);
  }
  const std::string requested = settings.value("congestion_control_requested", "");
  const std::string fallback = settings.value("congestion_control_fallback", "");
  if (!fallback.empty()) {
    return fmt::format(
        "TCP congestion control in the pods: {}, the host's default, instead of "
        "the {} asked for: {}.",
        used, requested, fallback);
  }
  if (requested == "host") {
    return fmt::format("TCP congestion control in the pods: {} (the host's default, as asked).",
                       used);
  }
  return fmt::format(
      "TCP congestion control in the pods: {} for every mode (the host's default "
      "does not apply).",
      used);
}

nlohmann::json describeMachine(const std::string& source_dir) {
  utsname u{};
  ::uname(&u);
  double mem_kib = 0;
  try {
    mem_kib = std::stod(fieldOf("/proc/meminfo", "MemTotal"));
  } catch (const std::exception&) {
  }
  std::string commit =
      firstLine(sim::runLocal({"git", "-C", source_dir, "rev-parse", "--short", "HEAD"}).out);
  std::string dirty =
      sim::runLocal({"git", "-C", source_dir, "status", "--porcelain", "--untracked-files=no"}).out;
  return {
      {"cpu", fieldOf("/proc/cpuinfo", "model name")},
      {"cores", ::sysconf(_SC_NPROCESSORS_ONLN)},
      {"kernel", std::string(u.sysname) + " " + u.release},
      {"memory_gib", mem_kib / 1024 / 1024},
      {"nodemesh_commit", commit.empty() ? "unknown" : commit + (dirty.empty() ? "" : "-dirty")},
      {"tools",
       {{"stunnel", toolVersion({"stunnel", "-version"}, "stunnel ")},
        {"haproxy", toolVersion({"haproxy", "-v"}, "HAProxy version")},
        {"iperf3", toolVersion({"iperf3", "--version"}, "iperf")},
        {"sockperf", toolVersion({"sockperf", "--version"}, "version")},
        {"openssl", toolVersion({"openssl", "version"}, "OpenSSL")},
        {"nginx", toolVersion({"nginx", "-v"}, "nginx version")},
        {"h2load", toolVersion({"h2load", "--version"}, "h2load")}}},
  };
}

void Results::add(const std::string& mode, const Figures& figures) {
  for (const auto& [metric, value] : figures) samples_[mode][metric].push_back(value);
}

void Results::addFacts(const std::string& mode, int repeat,
                       const std::map<std::string, std::string>& f) {
  for (const auto& [k, v] : f) facts_[mode][std::to_string(repeat)][k] = v;
}

std::optional<double> Results::median(const std::string& mode, const std::string& metric) const {
  auto m = samples_.find(mode);
  if (m == samples_.end()) return std::nullopt;
  auto s = m->second.find(metric);
  if (s == m->second.end() || s->second.empty()) return std::nullopt;
  return medianOf(s->second);
}

std::optional<std::pair<std::string, double>> Results::bestPeer(const std::string& metric) const {
  const MetricInfo* info = findMetric(metric);
  std::optional<std::pair<std::string, double>> best;
  for (const std::string& peer : peers_) {
    auto v = median(peer, metric);
    if (!v || !info) continue;
    bool better = !best || (info->higher_is_better ? *v > best->second : *v < best->second);
    if (better) best = std::make_pair(peer, *v);
  }
  return best;
}

std::optional<double> Results::added(const std::string& mode, const std::string& metric) const {
  auto v = median(mode, metric);
  auto d = median("direct", metric);
  if (!v || !d) return std::nullopt;
  return *v - *d;
}

std::vector<std::string> Results::missing(const std::vector<std::string>& scenarios) const {
  std::vector<std::string> out;
  for (const MetricInfo& m : kMetrics) {
    if (std::find(scenarios.begin(), scenarios.end(), m.scenario) == scenarios.end()) continue;
    for (const auto& mode : modes_) {
      if (m.cost && mode == "direct") continue;
      if (m.proxy && !isL7Mode(mode)) continue;
      if (!modeRuns(mode, m.scenario)) continue;
      if (!median(mode, m.key)) out.push_back(mode + "/" + m.key);
    }
  }
  return out;
}

std::vector<Results::Target> Results::targets() const {
  std::vector<Target> out;
  auto ratio_to_peer = [&](const std::string& metric) -> std::optional<double> {
    auto v = median(subject_, metric);
    auto p = bestPeer(metric);
    if (!v || !p || p->second == 0) return std::nullopt;
    return *v / p->second;
  };
  // Added latency (over direct) relative to the best peer's added latency.
  auto added_to_peer = [&](const std::string& metric) -> std::optional<double> {
    auto mine = added(subject_, metric);
    std::optional<double> best;
    for (const std::string& peer : peers_) {
      auto a = added(peer, metric);
      if (a && (!best || *a < *best)) best = a;
    }
    if (!mine || !best || *best <= 0) return std::nullopt;
    return *mine / *best;
  };
  auto add = [&](const std::string& tier, const std::string& name, const std::string& figure,
                 std::optional<double> value, const std::string& cmp, double required) {
    bool pass = value.has_value() && (cmp == ">="   ? *value >= required
                                      : cmp == "<=" ? *value <= required
                                                    : *value < required);
    out.push_back(Target{name, tier, figure, value, required, cmp, pass});
  };
  if (subject_ == "waypoint") {
    // Issue 15: first target, at least the best peer's requests/s per core and no more than its
    // added p50; goal, twice its requests/s per core, <= 0.1 vCPU and <= 20 MB per 1,000 req/s.
    for (const auto& [tier, ratio] :
         {std::pair<std::string, double>{"first", 1.0}, {"beyond", 2.0}}) {
      for (const std::string v : {"h1", "h2"}) {
        const std::string name = v == "h1" ? "HTTP/1.1" : "HTTP/2";
        add(tier, name + " requests/s per core", "waypoint / best peer",
            ratio_to_peer("l7_" + v + "_rps_per_core"), ">=", ratio);
        if (tier == "first") {
          add(tier, name + " added p50 at 1,000 req/s", "waypoint added / best peer added",
              added_to_peer("l7_" + v + "_p50_us"), "<=", 1.0);
        }
      }
    }
    for (const std::string v : {"h1", "h2"}) {
      const std::string name = v == "h1" ? "HTTP/1.1" : "HTTP/2";
      add("beyond", name + " vCPU per 1,000 req/s (the waypoint)", "vCPU",
          median(subject_, "l7_" + v + "_proxy_vcpu"), "<=", 0.1);
      add("beyond", name + " RSS at 1,000 req/s (the waypoint)", "MB",
          median(subject_, "l7_" + v + "_proxy_rss"), "<=", 20);
    }
    return out;
  }
  for (const auto& [tier, t_ratio, lat_ratio, conn_ratio] :
       {std::tuple<std::string, double, double, double>{"first", 1.0, 1.0, 2.0},
        {"beyond", 1.5, 0.5, 3.0}}) {
    add(tier, "throughput, 1 stream", "nodemesh / best peer", ratio_to_peer("throughput_1"),
        ">=", t_ratio);
    add(tier, "throughput, 4 streams", "nodemesh / best peer", ratio_to_peer("throughput_4"),
        ">=", t_ratio);
    add(tier, "added p50 latency, 64 B", "nodemesh added / best peer added",
        added_to_peer("latency_64_p50"), "<=", lat_ratio);
    add(tier, "added p50 latency, 1 KiB", "nodemesh added / best peer added",
        added_to_peer("latency_1k_p50"), "<=", lat_ratio);
    add(tier, "new connections per second", "nodemesh / best peer", ratio_to_peer("conn_rate"),
        ">=", conn_ratio);
  }
  add("beyond", "vCPU per 1,000 HTTP req/s (per agent, the busier)", "vCPU",
      median("nodemesh", "http_vcpu_side"), "<=", 0.03);
  add("beyond", "RSS at 1,000 HTTP req/s (per agent, the larger)", "MB",
      median("nodemesh", "http_rss_side"), "<=", 12);
  add("beyond", "memory per idle connection (both agents)", "KiB",
      median("nodemesh", "idle_kib_per_conn"), "<", 8);
  return out;
}

nlohmann::json Results::toJson(const nlohmann::json& machine, const nlohmann::json& run) const {
  nlohmann::json figures = nlohmann::json::object();
  for (const MetricInfo& m : kMetrics) {
    nlohmann::json entry = {
        {"label", m.label}, {"unit", m.unit}, {"better", m.higher_is_better ? "higher" : "lower"}};
    auto peer = bestPeer(m.key);
    if (peer) entry["best_peer"] = peer->first;
    bool any = false;
    for (const auto& mode : modes_) {
      auto v = median(mode, m.key);
      if (!v) continue;
      any = true;
      nlohmann::json e = {{"median", *v}, {"samples", samples_.at(mode).at(m.key)}};
      if (auto d = median("direct", m.key); d && *d != 0) e["ratio_to_direct"] = *v / *d;
      if (peer && peer->second != 0) e["ratio_to_best_peer"] = *v / peer->second;
      if (isLatency(m.key) && mode != "direct") {
        if (auto a = added(mode, m.key)) e["added_over_direct"] = *a;
      }
      entry["modes"][mode] = e;
    }
    if (any) figures[m.key] = entry;
  }
  nlohmann::json target_list = nlohmann::json::array();
  for (const Target& t : targets()) {
    target_list.push_back({{"tier", t.tier},
                           {"name", t.name},
                           {"figure", t.figure},
                           {"value", t.value ? nlohmann::json(*t.value) : nlohmann::json(nullptr)},
                           {"required", t.comparison + " " + fmt::format("{}", t.required)},
                           {"pass", t.pass}});
  }
  return {{"machine", machine},     {"run", run},      {"figures", figures},
          {"targets", target_list}, {"facts", facts_}, {"errors", errors_}};
}

std::string Results::toMarkdown(const nlohmann::json& machine, const nlohmann::json& run) const {
  std::ostringstream md;
  md << (subject_ == "waypoint" ? "# nodemesh waypoint benchmark results (vs HAProxy and nginx)\n\n"
                                : "# nodemesh benchmark results\n\n");
  md << fmt::format(
      "{} UTC, `{}`, {} ({} s); median of {} run{} per figure{}.\n\n", run.value("date", ""),
      run.value("command", ""),
      run.value("quick", false) ? "quick mode: short runs, not for comparison" : "full suite",
      run.value("elapsed_s", 0), run.value("repeats", 0), run.value("repeats", 0) == 1 ? "" : "s",
      subject_ == "waypoint" ? "" : latencyRunsNote(run));
  md << fmt::format("Machine: {}, {} cores, {}, {:.1f} GiB. nodemesh {}; {}; {}; {}; {}; {}",
                    machine.value("cpu", "?"), machine.value("cores", 0),
                    machine.value("kernel", "?"), machine.value("memory_gib", 0.0),
                    machine.value("nodemesh_commit", "?"), machine["tools"].value("stunnel", "?"),
                    machine["tools"].value("haproxy", "?"), machine["tools"].value("iperf3", "?"),
                    machine["tools"].value("sockperf", "?"),
                    machine["tools"].value("openssl", "?"));
  if (subject_ == "waypoint") {
    md << fmt::format("; {}; {}", machine["tools"].value("nginx", "?"),
                      machine["tools"].value("h2load", "?"));
  }
  md << ".\n\n";

  if (run.contains("background_vcpu")) {
    md << fmt::format(
        "Other processes on the machine (outside the benchmark's cgroups) used {:.2f} vCPU on "
        "average while a mode ran, {:.2f} at most.\n\n",
        run["background_vcpu"].value("mean", 0.0), run["background_vcpu"].value("max", 0.0));
  }
  if (run.contains("settings") && run["settings"].contains("congestion_control")) {
    md << congestionControlLine(run["settings"]) << "\n\n";
  }
  if (run.contains("settings")) {
    const nlohmann::json& settings = run["settings"];
    md << fmt::format("Placement: {}; {}.\n\n",
                      settings.value("same_node", false)
                          ? "client and server pods on one node (--same-node)"
                          : "client and server pods on two nodes",
                      settings.value("pinned", true) ? "each node pinned to a CPU of its own"
                                                     : "nothing pinned (--no-pin)");
  }
  if (subject_ != "waypoint" && run.contains("settings") &&
      !run["settings"].value("idle_note", "").empty()) {
    md << "Note: " << run["settings"].value("idle_note", "") << ".\n\n";
  }
  md << "| figure |";
  for (const auto& mode : modes_) md << " " << mode << " |";
  md << fmt::format(" {0} ÷ direct | {0} ÷ best peer |\n|---|", subject_);
  for (size_t i = 0; i < modes_.size(); ++i) md << "---:|";
  md << "---:|---:|\n";
  for (const MetricInfo& m : kMetrics) {
    bool any = false;
    for (const auto& mode : modes_) any = any || median(mode, m.key).has_value();
    if (!any) continue;
    md << "| " << m.label << " (" << m.unit << ") |";
    auto peer = bestPeer(m.key);
    for (const auto& mode : modes_) {
      auto v = median(mode, m.key);
      md << " " << (v ? formatValue(m, *v) : "-");
      if (v && peer && peer->first == mode) md << " *";
      md << " |";
    }
    auto mine = median(subject_, m.key);
    auto direct = median("direct", m.key);
    md << " "
       << formatRatio(mine && direct && *direct != 0 ? std::optional<double>(*mine / *direct)
                                                     : std::nullopt)
       << " | "
       << formatRatio(mine && peer && peer->second != 0
                          ? std::optional<double>(*mine / peer->second)
                          : std::nullopt)
       << " |\n";
  }
  if (subject_ == "waypoint") {
    md << "\n`*` the best peer on that figure. Latency is per request, from when it was due (open "
          "loop). \"L7 proxy\" figures are the waypoint's or the peer's L7 proxy process alone "
          "(pinned to one CPU); requests/s per core is the maximum divided by that process's vCPU "
          "during the run. \"Every mesh process\": nodemesh's two agents and the waypoint, or "
          "the peer's L7 proxy and its four HAProxy TLS ends. Per 1,000 req/s figures are "
          "measured at 1,000 req/s.\n\n";
  } else {
    md << "\n`*` the best peer on that figure. Latency is the full round trip. vCPU and RSS are "
          "the tunnel processes' (nodemesh: the two agents; peers: their client- and server-side "
          "processes); direct has none.\n\n";
  }

  md << fmt::format("## Targets\n\n| tier | target | {} | required | |\n|---|---|---:|---:|---|\n",
                    subject_);
  for (const Target& t : targets()) {
    md << fmt::format("| {} | {} ({}) | {} | {} {} | {} |\n", t.tier, t.name, t.figure,
                      t.value ? fmt::format("{:.3f}", *t.value) : "-", t.comparison, t.required,
                      t.pass ? "**met**" : (t.value ? "missed" : "not measured"));
  }

  md << "\n## Every figure as a ratio (÷ direct / ÷ best peer)\n\n| figure |";
  for (const auto& mode : modes_) md << " " << mode << " |";
  md << "\n|---|";
  for (size_t i = 0; i < modes_.size(); ++i) md << "---:|";
  md << "\n";
  for (const MetricInfo& m : kMetrics) {
    auto peer = bestPeer(m.key);
    auto direct = median("direct", m.key);
    bool any = false;
    for (const auto& mode : modes_) any = any || median(mode, m.key).has_value();
    if (!any) continue;
    md << "| " << m.label << " |";
    for (const auto& mode : modes_) {
      auto v = median(mode, m.key);
      if (!v) {
        md << " - |";
        continue;
      }
      md << " "
         << formatRatio(direct && *direct != 0 ? std::optional<double>(*v / *direct) : std::nullopt)
         << " / "
         << formatRatio(peer && peer->second != 0 ? std::optional<double>(*v / peer->second)
                                                  : std::nullopt)
         << " |";
    }
    md << "\n";
  }
  if (!errors_.empty()) {
    md << "\n## Errors\n\n";
    for (const auto& e : errors_) md << "- " << firstLine(e) << "\n";
  }
  return md.str();
}

}  // namespace nodemesh::bench
