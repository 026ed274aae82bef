#pragma once

// Shared by the local config tests: all problems of a LoadResult, for failure messages, and the
// YAML heads the cases build on.

#include <string>

#include "config/local/local_config.h"

namespace nodemesh::config::local_config_test {

inline std::string allProblems(const LoadResult& r) {
  return r.problemsText();
}

}  // namespace nodemesh::config::local_config_test

// A valid workload to build cases from (lines 1-4).
#define WORKLOAD_HEAD \
  "workloads:\n"      \
  "- uid: w1\n"       \
  "  namespace: shop\n"

#define POLICY_HEAD             \
  "policies:\n"                 \
  "- name: p\n"                 \
  "  namespace: shop\n"         \
  "  scope: WorkloadSelector\n" \
  "  action: Allow\n"           \
  "  rules:\n"
