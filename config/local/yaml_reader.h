#pragma once

// Schema checking on top of yaml-cpp nodes. Every read records a problem (with the line of the
// offending node and a path such as `workloads[1].workloadIps[0]`) instead of throwing, so one
// pass over a file reports all of its problems. Internal to agent/config.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ip_address.h"
#include "config/local/local_config.h"

namespace nodemesh::config {

class YamlReader {
 public:
  YamlReader(std::string file, std::string_view text) : file_(std::move(file)), text_(text) {}

  // 1-based line of a node; 0 when yaml-cpp has no position for it.
  static int lineOf(const YAML::Node& node);
  // "a map", "a list", "the string \"80\"", "'abc'", "nothing (null)".
  static std::string describe(const YAML::Node& node);

  void problem(const YAML::Node& at, std::string_view path, std::string_view reason);
  void problemAtLine(int line, std::string_view path, std::string_view reason);
  void warning(const YAML::Node& at, std::string_view path, std::string_view reason);
  const std::vector<ConfigProblem>& problems() const { return problems_; }
  const std::vector<ConfigProblem>& warnings() const { return warnings_; }
  std::vector<ConfigProblem> takeProblems() { return std::move(problems_); }
  std::vector<ConfigProblem> takeWarnings() { return std::move(warnings_); }

  // Scalars. A null value reads as the empty string. Each returns nullopt after recording a
  // problem.
  std::optional<std::string> readString(const YAML::Node& node, std::string_view path);
  // 1..65535 (0..65535 with allow_zero). Must be a plain YAML integer, not a quoted string.
  std::optional<uint16_t> readPort(const YAML::Node& node, std::string_view path,
                                   bool allow_zero = false);
  std::optional<uint32_t> readUint32(const YAML::Node& node, std::string_view path);
  std::optional<bool> readBool(const YAML::Node& node, std::string_view path);
  std::optional<IpAddress> readIp(const YAML::Node& node, std::string_view path);
  std::optional<Cidr> readCidr(const YAML::Node& node, std::string_view path);

  template <typename E>
  std::optional<E> readEnum(const YAML::Node& node, std::string_view path, std::string_view what,
                            std::initializer_list<std::pair<std::string_view, E>> values) {
    if (node.IsScalar()) {
      for (const auto& [name, value] : values) {
        if (node.Scalar() == name) return value;
      }
    }
    std::string expected;
    for (const auto& [name, value] : values) {
      if (!expected.empty()) expected += ", ";
      expected += name;
    }
    problem(
        node, path,
        "invalid " + std::string(what) + " " + describe(node) + "; expected one of: " + expected);
    return std::nullopt;
  }

  using ItemFn = std::function<void(const YAML::Node& item, const std::string& item_path)>;
  using EntryFn = std::function<void(const YAML::Node& key, const std::string& key_text,
                                     const YAML::Node& value, const std::string& entry_path)>;
  // Visits the items of a list; null counts as an empty list. Returns false (after recording a
  // problem) when the node is not a list.
  bool forEachItem(const YAML::Node& node, std::string_view path, const ItemFn& fn);
  // Visits the entries of a map with string keys; null counts as an empty map. Duplicate keys
  // are problems and only the first is visited.
  bool forEachEntry(const YAML::Node& node, std::string_view path, const EntryFn& fn);

  // yaml-cpp accepts a quoted scalar that runs to the end of the input (a truncated file);
  // libyaml, and so ztunnel, does not. Records a problem for each such scalar.
  void checkUnterminatedQuotes(const YAML::Node& root);

 private:
  // Caps the elements visited, so that aliases nested many levels deep ("billion laughs") cannot
  // make a small file expand without bound.
  static constexpr size_t kMaxElements = 1'000'000;
  bool countElement(const YAML::Node& at);
  std::optional<int64_t> readInteger(const YAML::Node& node, std::string_view path,
                                     std::string_view what);
  void walkQuotes(const YAML::Node& node, std::map<std::pair<int, int>, bool>& seen);

  std::string file_;
  std::string_view text_;
  std::vector<ConfigProblem> problems_;
  std::vector<ConfigProblem> warnings_;
  size_t elements_ = 0;
  bool over_budget_ = false;
};

// A YAML map read against a fixed set of field names: unknown fields (with a "did you mean"
// hint) and duplicate fields are problems, missing required fields too.
class FieldMap {
 public:
  // Records a problem when `node` is not a map; valid() is then false. `what` names the object
  // in messages ("workload", "policy match").
  FieldMap(YamlReader& reader, const YAML::Node& node, std::string path, std::string_view what,
           std::span<const std::string_view> allowed);

  bool valid() const { return valid_; }
  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  std::string pathOf(std::string_view key) const;

  // The value of a field, or nullopt when absent.
  std::optional<YAML::Node> get(std::string_view key) const;
  // Same, but a missing field is a problem.
  std::optional<YAML::Node> require(std::string_view key);

 private:
  YamlReader& reader_;
  YAML::Node node_;
  std::string path_;
  std::string what_;
  bool valid_ = false;
  std::map<std::string, YAML::Node, std::less<>> fields_;
};

}  // namespace nodemesh::config
