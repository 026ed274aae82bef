#pragma once

// Results of a benchmark run: every sample, the medians, each median as a ratio to direct and to
// the best peer (the better of stunnel and HAProxy on that figure), the targets, and the
// machine; written as JSON and as a markdown table.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_env.h"
#include "bench/scenarios.h"

namespace nodemesh::bench {

// The median of `v` (the mean of the middle two for an even count); `v` must not be empty.
double medianOf(std::vector<double> v);

inline constexpr const char* kPeers[] = {"stunnel", "haproxy"};
// The waypoint benchmark's peers (modes.h).
inline constexpr const char* kL7Peers[] = {"haproxy-l7", "nginx-l7"};

// The report's sentence on the pods' TCP congestion control, from the run's "settings": which
// algorithm the figures used and, when it is not the one asked for, why.
std::string congestionControlLine(const nlohmann::json& settings);

// CPU model, cores, kernel, memory, tool versions, the nodemesh commit.
nlohmann::json describeMachine(const std::string& source_dir);

class Results {
 public:
  // `subject`: the mode the targets are about (nodemesh, or the waypoint in the waypoint
  // benchmark); `peers`: the modes it is compared with.
  explicit Results(std::vector<std::string> modes, std::string subject = "nodemesh",
                   std::vector<std::string> peers = {std::begin(kPeers), std::end(kPeers)})
      : modes_(std::move(modes)), subject_(std::move(subject)), peers_(std::move(peers)) {}

  void add(const std::string& mode, const Figures& figures);
  void addError(const std::string& error) { errors_.push_back(error); }
  void addFacts(const std::string& mode, int repeat, const std::map<std::string, std::string>& f);

  std::optional<double> median(const std::string& mode, const std::string& metric) const;
  // The better median of the peers for `metric`, and which peer it is.
  std::optional<std::pair<std::string, double>> bestPeer(const std::string& metric) const;
  // Metrics that ran (by `scenarios`) but have no sample for a mode that should have one.
  std::vector<std::string> missing(const std::vector<std::string>& scenarios) const;
  const std::vector<std::string>& errors() const { return errors_; }

  struct Target {
    std::string name;
    std::string tier;  // "first" (required) or "beyond"
    std::string figure;
    std::optional<double> value;
    double required = 0;
    std::string comparison;  // ">=", "<=", "<"
    bool pass = false;
  };
  std::vector<Target> targets() const;

  nlohmann::json toJson(const nlohmann::json& machine, const nlohmann::json& run) const;
  std::string toMarkdown(const nlohmann::json& machine, const nlohmann::json& run) const;

 private:
  // For latency figures: the median minus direct's.
  std::optional<double> added(const std::string& mode, const std::string& metric) const;

  std::vector<std::string> modes_;
  std::string subject_;
  std::vector<std::string> peers_;
  std::map<std::string, std::map<std::string, std::vector<double>>> samples_;  // mode, metric
  std::vector<std::string> errors_;
  nlohmann::json facts_ = nlohmann::json::object();
};

}  // namespace nodemesh::bench
