// nodemesh-demo's waypoint part: Istio's Bookinfo traffic-shifting task in miniature. The
// client productpage-v1 asks the reviews service, which names a waypoint (a nodemesh-waypoint
// in its own pod, not enrolled: it terminates HBONE itself). The waypoint routes every HTTP
// request by the service's HTTPRoute to the Service reviews-v1 or reviews-v2 (one Service per
// version, as in Istio's examples), whose pods answer with their version. The demo changes the
// route by rewriting the config file, as an operator would with `kubectl apply`, and measures
// what the client gets; then reviews-v2 turns flaky (every other request 503) and the waypoint's
// retries hide it from the client, as they stop doing when the route turns retries off; last, a
// rate limit on the route throttles the client with 429s.
#include "tests/e2e/demo/waypoint_demo.h"

#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include <regex>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "config/local/local_config.h"
#include "sim/testapp_client.h"

namespace nodemesh::demo {
namespace {

using sim::Process;
using sim::SimCluster;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint16_t kReviewsPort = 9080;
constexpr const char* kClient = "productpage-v1";
constexpr const char* kWaypoint = "waypoint";
constexpr const char* kVersions[] = {"reviews-v1", "reviews-v2"};
constexpr int kSplitRequests = 500;
constexpr int kHeaderRequests = 100;
// A weighted choice is a coin toss per request. Over 500 requests a 90/10 split has a standard
// deviation of 1.3 percentage points and a 50/50 one of 2.2; over 100, 5. The tolerances are
// about 4 standard deviations, so that CI fails on a broken split and (almost) never on luck.
constexpr double kTolerance9010 = 5;
constexpr double kTolerance5050 = 8;
constexpr double kTolerance5050Small = 20;
// The rate limit step: the client's identity may make kRateLimit requests/s (a burst of as many,
// then one every 1/kRateLimit s: GCRA) and sends kThrottledRequests back to back.
constexpr int kRateLimit = 10;
constexpr int kThrottledRequests = 60;
// The flaky step: requests sent while reviews-v2 fails every other one.
constexpr int kFlakyRequests = 100;

struct Pod {
  std::string name, node, ip;
};

std::string uid(const std::string& pod) {
  return "cluster1//v1/Pod/bookinfo/" + pod;
}
std::string hostname(const std::string& service) {
  return service + ".bookinfo.svc.cluster.local";
}

size_t countOf(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

std::string trim(const std::string& s) {
  const size_t begin = s.find_first_not_of(" \r\n");
  return begin == std::string::npos ? "" : s.substr(begin, s.find_last_not_of(" \r\n") - begin + 1);
}

// Hosts .100 and up of the node's pod /24 (the demo gives every node a /24) that nothing in
// `used` has; the address returned is added to it.
std::string freeIp(const std::string& pod_cidr, std::set<std::string>& used) {
  const std::string base = pod_cidr.substr(0, pod_cidr.rfind('.') + 1);
  for (int host = 100; host < 255; ++host) {
    if (std::string ip = base + std::to_string(host); used.insert(ip).second) return ip;
  }
  throw sim::HarnessError("no free address for the waypoint demo in " + pod_cidr);
}

// ---- the config ----

std::string workloadYaml(const Pod& pod, const std::string& account, bool enrolled,
                         const std::string& revision, const std::vector<std::string>& services,
                         uint16_t port) {
  std::string out = fmt::format(
      "- uid: {}\n  name: {}\n  namespace: bookinfo\n  serviceAccount: {}\n"
      "  workloadIps: [\"{}\"]\n  protocol: {}\n  node: {}\n",
      uid(pod.name), pod.name, account, pod.ip, enrolled ? "HBONE" : "TCP", pod.node);
  if (!revision.empty()) {
    out += fmt::format("  canonicalName: {}\n  canonicalRevision: {}\n", account, revision);
  }
  if (!services.empty()) out += "  services:\n";
  for (const auto& service : services) {
    out += fmt::format("    bookinfo/{}: {{{}: {}}}\n", hostname(service), port, port);
  }
  return out;
}

std::string serviceYaml(const std::string& name, const std::string& vip, uint16_t port,
                        bool with_waypoint) {
  std::string out = fmt::format(
      "- {{name: {0}, namespace: bookinfo, hostname: {1}, vips: [\"/{2}\"], ports: {{{3}: {3}}}",
      name, hostname(name), vip, port);
  if (with_waypoint) {
    out += fmt::format(", waypoint: {{destination: \"bookinfo/{}\", hboneMtlsPort: 15008}}",
                       hostname(kWaypoint));
  }
  return out + "}\n";
}

// The HTTPRoute on reviews: a weighted split, and optionally a rule sending beta users to v2.
struct RouteSpec {
  int v1_weight = 0;
  int v2_weight = 0;
  bool beta_rule = false;
  int rate_limit = 0;       // requests/s per client identity on the route; 0: no limit
  int retry_attempts = -1;  // the split rule's retry.attempts; -1: no retry (the default policy)
  std::string describe() const {
    return fmt::format(
        "reviews-v1 weight {}, reviews-v2 weight {}{}{}{}", v1_weight, v2_weight,
        beta_rule ? "; header x-user-group: beta -> reviews-v2" : "",
        rate_limit > 0
            ? fmt::format("; HTTPLocalRateLimitPolicy: {} requests/s per client identity",
                          rate_limit)
            : "",
        retry_attempts >= 0 ? fmt::format("; retry: {{attempts: {}}}", retry_attempts) : "");
  }
};

// Linkerd's HTTPLocalRateLimitPolicy attached to the route: each client identity on its own.
std::string rateLimitYaml(int requests_per_second) {
  return fmt::format(
      "- apiVersion: policy.linkerd.io/v1alpha1\n"
      "  kind: HTTPLocalRateLimitPolicy\n"
      "  metadata: {{name: reviews-per-client, namespace: bookinfo}}\n"
      "  spec:\n"
      "    targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: reviews}}]\n"
      "    identity: {{requestsPerSecond: {}}}\n",
      requests_per_second);
}

std::string routeYaml(const RouteSpec& route) {
  std::string out = fmt::format(
      "- apiVersion: gateway.networking.k8s.io/v1\n"
      "  kind: HTTPRoute\n"
      "  metadata: {{name: reviews, namespace: bookinfo}}\n"
      "  spec:\n"
      "    parentRefs:\n"
      "    - {{group: \"\", kind: Service, name: reviews, port: {}}}\n"
      "    rules:\n",
      kReviewsPort);
  if (route.beta_rule) {
    out += fmt::format(
        "    - name: beta-users\n"
        "      matches:\n"
        "      - headers: [{{name: x-user-group, value: beta}}]\n"
        "      backendRefs:\n"
        "      - {{name: reviews-v2, port: {}}}\n",
        kReviewsPort);
  }
  out += fmt::format(
      "    - name: split\n"
      "      backendRefs:\n"
      "      - {{name: reviews-v1, port: {0}, weight: {1}}}\n"
      "      - {{name: reviews-v2, port: {0}, weight: {2}}}\n",
      kReviewsPort, route.v1_weight, route.v2_weight);
  if (route.retry_attempts >= 0) {
    out += fmt::format("      retry: {{attempts: {}}}\n", route.retry_attempts);
  }
  return out;
}

// The user's config with the demo's objects appended to its lists. Through yaml-cpp rather
// than text edits, so that any valid config works (flow style, lists in any order or absent).
std::string mergedConfig(const std::string& base, const std::string& additions) {
  YAML::Node root = YAML::Load(base);
  const YAML::Node add = YAML::Load(additions);
  for (const auto& entry : add) {
    const auto key = entry.first.as<std::string>();
    YAML::Node list = root[key];
    if (!list.IsSequence()) list = YAML::Node(YAML::NodeType::Sequence);
    for (const auto& item : entry.second) list.push_back(item);
    root[key] = list;
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

// The value of `key` in the last access log line of `log` that contains `needle`; "?" if none.
std::string accessField(const std::string& log, const std::string& needle, const std::string& key) {
  std::string value = "?";
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    const size_t pos = line.find(" " + key + "=");
    if (line.find(" access ") == std::string::npos || line.find(needle) == std::string::npos ||
        pos == std::string::npos) {
      continue;
    }
    const size_t begin = pos + key.size() + 2;
    value = line.substr(begin, line.find(' ', begin) - begin);
  }
  return value;
}

// ---- requests ----

struct Tally {
  std::map<std::string, int> served;  // by the version that answered
  int throttled = 0;                  // 429 local_rate_limited, with a retry-after
  int unavailable = 0;                // 503 from a version (the flaky step)
  int failed = 0;
  std::string first_failure;
  std::string retry_after;  // of the first 429
  milliseconds elapsed{0};
};

// `count` GETs from the client on one kept-alive connection (curl reuses it for the URLs of
// one invocation), so the waypoint routes request by request, not connection by connection.
Tally sendRequests(SimCluster& cluster, const std::string& url, int count,
                   const std::string& header = "") {
  std::vector<std::string> argv = {"curl", "-sS", "--max-time",
                                   "10",   "-w",  "\n@@ %{http_code} %header{retry-after}\n"};
  if (!header.empty()) argv.insert(argv.end(), {"-H", header});
  for (int i = 0; i < count; ++i) argv.push_back(url);
  const auto start = std::chrono::steady_clock::now();
  const auto r = cluster.runInPod(kClient, argv, seconds(120));
  Tally t;
  t.elapsed = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  auto fail = [&t](const std::string& why) {
    ++t.failed;
    if (t.first_failure.empty()) t.first_failure = why;
  };
  // Each answer is the body, then "\n@@ <status> <retry-after>\n".
  int answers = 0;
  for (size_t pos = 0, mark;
       answers < count && (mark = r.out.find("\n@@ ", pos)) != std::string::npos; ++answers) {
    const std::string body = trim(r.out.substr(pos, mark - pos));
    const std::string status = r.out.substr(mark + 4, 3);
    const size_t eol = r.out.find('\n', mark + 4);
    const std::string retry_after = trim(r.out.substr(mark + 7, eol - (mark + 7)));
    pos = std::min(r.out.size(), eol + 1);
    if (status == "200" && (body == kVersions[0] || body == kVersions[1])) {
      ++t.served[body];
    } else if (status == "429" && body == "local_rate_limited" && !retry_after.empty()) {
      if (t.throttled++ == 0) t.retry_after = retry_after;
    } else if (status == "503" && body.find(" failed") != std::string::npos) {
      ++t.unavailable;
    } else {
      fail("status " + status + ": " + body.substr(0, 200));
    }
  }
  for (; answers < count; ++answers) fail(r.describe() + " " + r.err.substr(0, 300));
  if (t.failed > 0 && !r.err.empty()) t.first_failure += " (curl: " + trim(r.err) + ")";
  return t;
}

int served(const Tally& t) {
  int n = 0;
  for (const auto& [version, count] : t.served) n += count;
  return n;
}

// One line per version: how many of `t` it served, against the share wanted. Returns the
// number of failed checks (a share outside tolerance, failed requests).
int reportSplit(const Tally& t, int count, const std::map<std::string, double>& want,
                double tolerance) {
  int failures = 0;
  for (const char* version : kVersions) {
    const int n = t.served.count(version) ? t.served.at(version) : 0;
    const double pct = 100.0 * n / count;
    const bool ok = std::fabs(pct - want.at(version)) <= tolerance;
    failures += ok ? 0 : 1;
    std::cout << fmt::format("    {:<11} {:>3} of {}  {:5.1f}%   wanted {:g}%{}   {}\n", version, n,
                             count, pct, want.at(version),
                             tolerance > 0 ? fmt::format(" ±{:g}", tolerance) : "",
                             ok ? "ok" : "OUT OF TOLERANCE");
  }
  if (t.failed > 0) {
    std::cout << fmt::format("    {} request(s) FAILED; the first: {}\n", t.failed,
                             t.first_failure);
  }
  return failures + (t.failed > 0 ? 1 : 0);
}

// ---- the waypoint's metrics ----

// The labels of a Prometheus sample line `name{k="v",...} value`.
std::map<std::string, std::string> labelsOf(const std::string& line) {
  std::map<std::string, std::string> out;
  const size_t close = line.rfind('}');
  if (line.find('{') == std::string::npos || close == std::string::npos) return out;
  for (size_t i = line.find('{') + 1; i < close;) {
    const size_t eq = line.find("=\"", i);
    if (eq == std::string::npos || eq > close) break;
    std::string value;
    size_t j = eq + 2;
    for (; j < close && line[j] != '"'; ++j) {
      if (line[j] == '\\' && j + 1 < close) ++j;
      value += line[j];
    }
    out[line.substr(i, eq - i)] = value;
    i = j + 2;  // past the closing quote and the comma
  }
  return out;
}

// Prints the waypoint's own counters and istio_requests_total (with the labels that tell the
// story); when the latter is there, checks that its 200s per destination workload are what the
// client counted. Returns the number of failed checks.
int reportMetrics(SimCluster& cluster, const std::map<std::string, int>& answered) {
  std::cout << "\n  The waypoint's metrics (curl http://127.0.0.1:15020/metrics in its pod; "
               "istio_requests_total\n  with some of its labels):\n";
  // The waypoint publishes its own counters once a second (waypoint/proxy/loop.h).
  std::this_thread::sleep_for(milliseconds(1100));
  sim::CommandResult r;
  std::map<std::string, int> recorded;
  // Requests are recorded when they finish, which may be just after curl has its answer.
  sim::waitFor(
      [&] {
        r = cluster.runInPod(kWaypoint, {"curl", "-sS", "http://127.0.0.1:15020/metrics"});
        recorded.clear();
        std::istringstream in(r.out);
        for (std::string line; std::getline(in, line);) {
          if (line.rfind("istio_requests_total{", 0) != 0) continue;
          auto labels = labelsOf(line);
          if (labels["response_code"] != "200") continue;
          recorded[labels["destination_workload"]] +=
              static_cast<int>(std::strtoll(line.substr(line.rfind(' ') + 1).c_str(), nullptr, 10));
        }
        return !r.ok() || recorded.empty() || recorded == answered;
      },
      seconds(3), milliseconds(200));
  if (!r.ok()) {
    std::cout << "    FAILED: " << r.describe() << "\n";
    return 1;
  }
  bool requests_total = false;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("nodemesh_waypoint_", 0) == 0) std::cout << "    " << line << "\n";
    if (line.rfind("istio_requests_total{", 0) != 0) continue;
    requests_total = true;
    auto labels = labelsOf(line);
    std::string shown;
    for (const char* key :
         {"source_workload", "destination_service_name", "destination_workload",
          "destination_version", "response_code", "response_flags", "connection_security_policy"}) {
      shown += fmt::format("{}{}=\"{}\"", shown.empty() ? "" : ",", key, labels[key]);
    }
    std::cout << "    istio_requests_total{" << shown << "}" << line.substr(line.rfind(' '))
              << "\n";
  }
  if (!requests_total) {
    std::cout << "    (no istio_requests_total: this waypoint does not record requests yet)\n";
    return 0;
  }
  const bool match = recorded == answered;
  std::cout << (match ? "    The 200s per destination_workload are the answers the client got.\n"
                      : "    MISMATCH: istio_requests_total does not count the answers the "
                        "client got.\n");
  return match ? 0 : 1;
}

// ---- the run ----

class WaypointDemo {
 public:
  explicit WaypointDemo(const WaypointDemoCluster& c) : c_(c), cluster_(*c.cluster) {}
  int run();

 private:
  // Writes the config with `route` (atomically: the agents and the waypoint watch the file and
  // must never read half of it); false when the result does not load.
  bool writeConfig(const RouteSpec& route);
  // writeConfig, then waits until the waypoint has reloaded.
  bool applyRoute(const RouteSpec& route);
  // A rate limit on the route: the client, sending faster than it allows, gets 429s.
  int throttleStep();
  // reviews-v2 fails every other request: retried, the client sees no failure; with the rule's
  // retries off, it sees them.
  int flakyStep();
  // The waypoint's retries after a retryable status so far (/stats), -1 when unreadable.
  int64_t statusRetries();
  Tally send(int count, const std::string& header = "") {
    Tally t = sendRequests(cluster_, url_, count, header);
    for (const auto& [version, n] : t.served) answered_[version] += n;
    return t;
  }

  const WaypointDemoCluster& c_;
  SimCluster& cluster_;
  std::string base_config_;
  std::string additions_;  // the pods' workloads and the services
  Process* waypoint_ = nullptr;
  std::string url_;
  std::string flaky_flag_;  // while this file exists, reviews-v2 fails every other request
  std::map<std::string, int> answered_;  // every 200 the client got, by version
};

bool WaypointDemo::writeConfig(const RouteSpec& route) {
  std::string additions = additions_ + "httpRoutes:\n" + routeYaml(route);
  if (route.rate_limit > 0) additions += "rateLimitPolicies:\n" + rateLimitYaml(route.rate_limit);
  const std::string text = mergedConfig(base_config_, additions);
  const auto loaded = config::parseLocalConfig(text, c_.config_path);
  if (!loaded.ok()) {
    std::cout << "  FAILED: the demo's config does not load:\n" << loaded.problemsText();
    return false;
  }
  const std::string tmp = cluster_.writeFile("mesh.yaml.tmp", text);
  std::filesystem::rename(tmp, c_.config_path);
  return true;
}

bool WaypointDemo::applyRoute(const RouteSpec& route) {
  // The waypoint's event loop logs this once the new config is the one it routes by.
  const std::string reloaded = "waypoint: config in force";
  const size_t before = countOf(waypoint_->output(), reloaded);
  const auto start = std::chrono::steady_clock::now();
  if (!writeConfig(route)) return false;
  if (!sim::waitFor([&] { return countOf(waypoint_->output(), reloaded) > before; }, seconds(10))) {
    std::cout << "  FAILED: the waypoint did not reload its config:\n" << waypoint_->output();
    return false;
  }
  const auto ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  std::cout << fmt::format("\n  Config rewritten: {}.\n  The waypoint reloaded it after {} ms.\n",
                           route.describe(), ms.count());
  return true;
}

int WaypointDemo::throttleStep() {
  if (!applyRoute({50, 50, false, kRateLimit})) return 1;
  std::cout << fmt::format("  {} requests, back to back:\n", kThrottledRequests);
  const Tally t = send(kThrottledRequests);
  int admitted = 0;
  for (const auto& [version, n] : t.served) admitted += n;
  // GCRA admits a burst of kRateLimit, then one request per 1/kRateLimit s of the run.
  const double seconds_taken = static_cast<double>(t.elapsed.count()) / 1000;
  const int most = kRateLimit + static_cast<int>(std::ceil(seconds_taken * kRateLimit)) + 1;
  const bool ok = t.failed == 0 && admitted >= kRateLimit && admitted <= most &&
                  admitted + t.throttled == kThrottledRequests;
  std::cout << fmt::format(
      "    admitted  (200) {:>3}   in {} ms: a burst of {}, then {}/s: at most {}\n"
      "    throttled (429) {:>3}   body local_rate_limited, retry-after: {} s   {}\n",
      admitted, t.elapsed.count(), kRateLimit, kRateLimit, most, t.throttled,
      t.retry_after.empty() ? "-" : t.retry_after, ok ? "ok" : "NOT AS LIMITED");
  if (t.failed > 0) {
    std::cout << fmt::format("    {} request(s) FAILED; the first: {}\n", t.failed,
                             t.first_failure);
  }
  // Back to the route without a limit, so the rest of the demo is not throttled.
  if (!applyRoute({50, 50, false})) return 1;
  return ok ? 0 : 1;
}

int64_t WaypointDemo::statusRetries() {
  std::this_thread::sleep_for(milliseconds(300));  // the waypoint publishes /stats on its tick
  const std::string stats =
      cluster_.runInPod(kWaypoint, {"curl", "-s", "http://127.0.0.1:15000/stats"}).out;
  std::smatch m;
  if (!std::regex_search(stats, m, std::regex(R"("on_status": (\d+))"))) return -1;
  return std::stoll(m[1]);
}

int WaypointDemo::flakyStep() {
  std::ofstream(flaky_flag_) << "1";
  std::cout << "\n  reviews-v2 turns flaky: its server now answers every other request 503.\n"
            << fmt::format(
                   "  {} requests (no retry on the rule: the waypoint's default, 2 "
                   "retries on 503):\n",
                   kFlakyRequests);
  const int64_t before = statusRetries();
  const Tally t = send(kFlakyRequests);
  const int64_t retried = statusRetries() - before;
  const bool hidden = t.failed == 0 && t.unavailable == 0 && retried >= 1;
  std::cout << fmt::format(
      "    answered 200 {:>3}   (reviews-v1 {}, reviews-v2 {})\n"
      "    503s from reviews-v2 retried by the waypoint: {}; the client saw {}   {}\n"
      "    (each retry went to reviews-v2 again, the only pod of its Service, which answered it)\n",
      served(t), t.served.count(kVersions[0]) ? t.served.at(kVersions[0]) : 0,
      t.served.count(kVersions[1]) ? t.served.at(kVersions[1]) : 0, retried, t.unavailable,
      hidden ? "ok" : "NOT HIDDEN");
  int failures = hidden ? 0 : 1;
  if (t.failed > 0) {
    std::cout << fmt::format("    {} request(s) FAILED; the first: {}\n", t.failed,
                             t.first_failure);
  }
  // The same with the rule's retries turned off: the failures reach the client.
  if (!applyRoute({50, 50, false, 0, /*retry_attempts=*/0})) return failures + 1;
  std::cout << fmt::format("  {} requests:\n", kFlakyRequests);
  const Tally u = send(kFlakyRequests);
  const bool seen = u.failed == 0 && u.unavailable >= 1;
  std::cout << fmt::format(
      "    answered 200 {:>3}, 503 {:>3}: without retries reviews-v2's failures reach the "
      "client   {}\n",
      served(u), u.unavailable, seen ? "ok" : "NOT AS EXPECTED");
  failures += seen ? 0 : 1;
  std::filesystem::remove(flaky_flag_);
  if (!applyRoute({50, 50, false})) return failures + 1;
  return failures;
}

int WaypointDemo::run() {
  base_config_ = sim::readFile(c_.config_path);
  const auto base = config::parseLocalConfig(base_config_, c_.config_path);
  if (!base.ok()) throw sim::HarnessError(base.problemsText());

  // Where everything goes: client and reviews-v1 on the first node, waypoint and reviews-v2 on
  // the second (the first again in a one-node cluster), so that traffic crosses nodes.
  std::set<std::string> used_ips;
  std::set<std::string> used_vips;
  for (const auto& w : base.snapshot->workloads()) {
    for (const auto& ip : w.workload_ips) used_ips.insert(ip.toString());
  }
  for (const auto& s : base.snapshot->services()) {
    for (const auto& vip : s.vips) used_vips.insert(vip.address.toString());
  }
  const std::string& node_a = c_.nodes.front();
  const std::string& node_b = c_.nodes.size() > 1 ? c_.nodes[1] : c_.nodes.front();
  auto pod = [&](const std::string& name, const std::string& node) {
    if (cluster_.hasPod(name)) throw sim::HarnessError("the config already has a pod " + name);
    return Pod{name, node, freeIp(cluster_.node(node).pod_cidr, used_ips)};
  };
  const Pod client = pod(kClient, node_a);
  const Pod v1 = pod(kVersions[0], node_a);
  const Pod v2 = pod(kVersions[1], node_b);
  const Pod waypoint = pod(kWaypoint, node_b);
  std::map<std::string, std::string> vips;
  int next_vip = 1;
  for (const char* service : {"reviews", "reviews-v1", "reviews-v2", kWaypoint}) {
    while (used_vips.count(fmt::format("10.96.90.{}", next_vip))) ++next_vip;
    vips[service] = fmt::format("10.96.90.{}", next_vip++);
  }
  url_ = fmt::format("http://{}:{}/reviews", vips["reviews"], kReviewsPort);

  additions_ = "workloads:\n" + workloadYaml(client, "bookinfo-productpage", true, "", {}, 0) +
               workloadYaml(v1, "reviews", true, "v1", {"reviews", "reviews-v1"}, kReviewsPort) +
               workloadYaml(v2, "reviews", true, "v2", {"reviews", "reviews-v2"}, kReviewsPort) +
               workloadYaml(waypoint, kWaypoint, false, "", {kWaypoint}, 15008) + "services:\n" +
               serviceYaml("reviews", vips["reviews"], kReviewsPort, true) +
               serviceYaml("reviews-v1", vips["reviews-v1"], kReviewsPort, false) +
               serviceYaml("reviews-v2", vips["reviews-v2"], kReviewsPort, false) +
               serviceYaml(kWaypoint, vips[kWaypoint], 15008, false);

  std::cout << fmt::format(
      "\nWaypoint (L7 routing). Service bookinfo/reviews ({}:{}) names a waypoint; its two\n"
      "versions are the Services reviews-v1 and reviews-v2:\n",
      vips["reviews"], kReviewsPort);
  for (const auto& [p, what] : std::vector<std::pair<Pod, std::string>>{
           {client, "the client (curl), enrolled"},
           {v1, "HTTP server answering \"reviews-v1\", enrolled"},
           {v2, "HTTP server answering \"reviews-v2\", enrolled"},
           {waypoint, "nodemesh-waypoint, not enrolled"}}) {
    std::cout << fmt::format("  {:<8} bookinfo/{:<15} {:<14} {}\n", p.node, p.name, p.ip, what);
  }

  for (const Pod& p : {client, v1, v2, waypoint}) cluster_.addPod(p.node, p.name, p.ip);
  if (!writeConfig({90, 10, false})) return 1;
  for (const Pod& p : {client, v1, v2}) {
    if (!c_.agents.at(p.node)->waitForOutput("enrolled pod bookinfo/" + p.name, seconds(15))) {
      std::cout << "  FAILED: the agent on " << p.node << " did not enroll bookinfo/" << p.name
                << "\n";
      return 1;
    }
  }
  // Each version's server answers its name; reviews-v2's fails every other request while the
  // flaky step's flag file exists.
  flaky_flag_ = cluster_.workDir() + "/reviews-v2.flaky";
  const std::string server = (std::filesystem::path(NODEMESH_EXAMPLES_DIR).parent_path() /
                              "tests/e2e/scripts" / "flaky_server.py")
                                 .string();
  for (const Pod& p : {v1, v2}) {
    std::vector<std::string> env;
    if (p.name == kVersions[1]) env.push_back("FLAKY_FLAG=" + flaky_flag_);
    cluster_.startInPod(p.name, {"/usr/bin/python3", server, p.name, std::to_string(kReviewsPort)},
                        env);
    const std::string local = fmt::format("http://127.0.0.1:{}/reviews", kReviewsPort);
    if (!sim::waitFor(
            [&] {
              return trim(cluster_.runInPod(p.name, {"curl", "-s", local}).out) == p.name;
            },
            seconds(10), milliseconds(100))) {
      std::cout << "  FAILED: the HTTP server in " << p.name << " did not start\n";
      return 1;
    }
  }
  waypoint_ = &cluster_.startInPod(
      kWaypoint, {sim::waypointPath(), "--config", c_.config_path, "--workload", uid(kWaypoint),
                  "--state-dir", cluster_.workDir() + "/ca"});
  // The first request also waits for the client's agent to have the new config.
  if (!waypoint_->waitForOutput("serving HBONE on", seconds(10)) ||
      !sim::waitFor([&] { return send(1).failed == 0; }, seconds(10), milliseconds(200))) {
    std::cout << "  FAILED: no answer through the waypoint. Its log:\n" << waypoint_->output();
    return 1;
  }

  int failures = 0;
  std::cout << fmt::format(
      "\n  HTTPRoute reviews: {}.\n  {} requests from {} on one keep-alive connection:\n",
      RouteSpec{90, 10, false}.describe(), kSplitRequests, kClient);
  failures += reportSplit(send(kSplitRequests), kSplitRequests,
                          {{kVersions[0], 90}, {kVersions[1], 10}}, kTolerance9010);
  std::cout << fmt::format(
      "    ({}'s agent sent the connection to reviews over HBONE to waypoint {})\n", node_a,
      accessField(c_.agents.at(node_a)->output(), "service_addr=" + vips["reviews"], "waypoint"));

  if (!applyRoute({50, 50, false})) return failures + 1;
  std::cout << fmt::format("  {} requests:\n", kSplitRequests);
  failures += reportSplit(send(kSplitRequests), kSplitRequests,
                          {{kVersions[0], 50}, {kVersions[1], 50}}, kTolerance5050);

  if (!applyRoute({50, 50, true})) return failures + 1;
  std::cout << fmt::format("  {} requests with header x-user-group: beta:\n", kHeaderRequests);
  failures += reportSplit(send(kHeaderRequests, "x-user-group: beta"), kHeaderRequests,
                          {{kVersions[0], 0}, {kVersions[1], 100}}, 0);
  std::cout << fmt::format("  {} requests without it:\n", kHeaderRequests);
  failures += reportSplit(send(kHeaderRequests), kHeaderRequests,
                          {{kVersions[0], 50}, {kVersions[1], 50}}, kTolerance5050Small);

  failures += flakyStep();
  failures += throttleStep();

  failures += reportMetrics(cluster_, answered_);

  waypoint_->signal(SIGTERM);
  const auto status = waypoint_->waitExit(seconds(10));
  std::cout << "\n  Stopping the waypoint (SIGTERM): "
            << (status && *status == 0 ? "exited 0.\n" : "did NOT exit cleanly.\n");
  failures += status && *status == 0 ? 0 : 1;
  std::cout << "\n  How to read this: the client's agent sends a connection to reviews over HBONE "
               "to the waypoint,\n  which parses HTTP/1.1 and chooses a backend for every "
               "request by the HTTPRoute: by weight, or\n  by the header rule, which takes "
               "precedence because it has a header match. The waypoint applies\n  a changed "
               "route as soon as the file changes, without a restart. A request a version "
               "answered 503\n  is sent again (Istio's default retry policy) before the client "
               "sees it; a rate limit answers\n  429 to what exceeds it.\n";
  return failures;
}

}  // namespace

int runWaypointDemo(const WaypointDemoCluster& c) {
  return WaypointDemo(c).run();
}

}  // namespace nodemesh::demo
