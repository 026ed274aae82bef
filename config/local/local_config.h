#pragma once

// Loader for ztunnel's local config format (the file ztunnel reads from LOCAL_XDS_PATH):
// camelCase YAML with optional top-level `workloads`, `services` and `policies`, plus the
// waypoint's Gateway API routes under `httpRoutes` and `grpcRoutes` (docs/waypoint.md). Every file
// ztunnel accepts loads here, with three deliberate differences: a workload must have a
// non-empty `uid`, a workload may not name a policy that the file does not define, and unknown
// keys are rejected at every level (ztunnel ignores them inside a policy match, where a typo
// would silently widen the policy). Ports must be 1..65535.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "model/snapshot.h"

namespace nodemesh::config {

struct ConfigProblem {
  std::string file;
  int line = 0;  // 1-based; 0 when the problem is with the file as a whole (cannot read it)
  std::string reason;

  std::string toString() const;  // "file:line: reason"
  bool operator==(const ConfigProblem&) const = default;
};

struct LoadResult {
  // Null iff `problems` is non-empty.
  std::shared_ptr<const model::Snapshot> snapshot;
  // Every problem found, in file order; any problem rejects the whole file.
  std::vector<ConfigProblem> problems;
  // Findings that do not reject the file but are probably mistakes (a principal written with
  // "spiffe://", a workload backing a service the file does not define).
  std::vector<ConfigProblem> warnings;

  bool ok() const { return problems.empty(); }
  // All problems as "file:line: reason", one per line.
  std::string problemsText() const;
};

// Never throws. A file that cannot be read gives one problem with line 0.
LoadResult loadLocalConfigFile(const std::string& path);

// Reads a config file with the checks loadLocalConfigFile applies (a regular file, at most
// 16 MiB). The error message is the reason of a line-0 problem.
Result<std::string> readLocalConfigFile(const std::string& path);

// Never throws. `file_name_for_messages` only labels the problems.
LoadResult parseLocalConfig(std::string_view yaml_text, const std::string& file_name_for_messages);

}  // namespace nodemesh::config
