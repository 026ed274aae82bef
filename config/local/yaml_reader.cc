#include "config/local/yaml_reader.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>

namespace nodemesh::config {
namespace {

std::string withPath(std::string_view path, std::string_view reason) {
  if (path.empty()) return std::string(reason);
  return std::string(path) + ": " + std::string(reason);
}

// Plain (unquoted, untagged) scalars are the only ones YAML resolves to numbers and booleans.
bool isPlain(const YAML::Node& node) {
  return node.IsScalar() && node.Tag() == "?";
}

// Levenshtein distance, case-insensitive, for "did you mean" hints on short field names.
size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1);
  std::vector<size_t> cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                  std::tolower(static_cast<unsigned char>(b[j - 1]));
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// YAML 1.2 core schema integers: [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+ (what serde_yaml reads).
std::optional<int64_t> parseYamlInt(std::string_view text) {
  bool negative = false;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'o')) {
    base = text[1] == 'x' ? 16 : 8;
    text.remove_prefix(2);
  }
  if (text.empty()) return std::nullopt;
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return negative ? -value : value;
}

}  // namespace

int YamlReader::lineOf(const YAML::Node& node) {
  YAML::Mark mark = node.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

std::string YamlReader::describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "nothing (null)";
    case YAML::NodeType::Scalar:
      if (isPlain(node)) return "'" + node.Scalar() + "'";
      return "the string \"" + node.Scalar() + "\"";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

void YamlReader::problem(const YAML::Node& at, std::string_view path, std::string_view reason) {
  problemAtLine(lineOf(at), path, reason);
}

void YamlReader::problemAtLine(int line, std::string_view path, std::string_view reason) {
  problems_.push_back(ConfigProblem{file_, line, withPath(path, reason)});
}

void YamlReader::warning(const YAML::Node& at, std::string_view path, std::string_view reason) {
  warnings_.push_back(ConfigProblem{file_, lineOf(at), withPath(path, reason)});
}

std::optional<std::string> YamlReader::readString(const YAML::Node& node, std::string_view path) {
  if (node.IsNull()) return std::string();
  if (node.IsScalar()) return node.Scalar();
  problem(node, path, "expected a string, got " + describe(node));
  return std::nullopt;
}

std::optional<int64_t> YamlReader::readInteger(const YAML::Node& node, std::string_view path,
                                               std::string_view what) {
  if (isPlain(node)) {
    if (auto value = parseYamlInt(node.Scalar())) return value;
  }
  problem(node, path, "expected " + std::string(what) + ", got " + describe(node));
  return std::nullopt;
}

std::optional<uint16_t> YamlReader::readPort(const YAML::Node& node, std::string_view path,
                                             bool allow_zero) {
  auto value = readInteger(node, path, "a port number");
  if (!value) return std::nullopt;
  int64_t min = allow_zero ? 0 : 1;
  if (*value < min || *value > 65535) {
    problem(node, path,
            "port " + std::to_string(*value) + " out of range (" + std::to_string(min) + "-65535)");
    return std::nullopt;
  }
  return static_cast<uint16_t>(*value);
}

std::optional<uint32_t> YamlReader::readUint32(const YAML::Node& node, std::string_view path) {
  auto value = readInteger(node, path, "an unsigned integer");
  if (!value) return std::nullopt;
  if (*value < 0 || *value > std::numeric_limits<uint32_t>::max()) {
    problem(node, path, std::to_string(*value) + " out of range (0-4294967295)");
    return std::nullopt;
  }
  return static_cast<uint32_t>(*value);
}

std::optional<bool> YamlReader::readBool(const YAML::Node& node, std::string_view path) {
  if (isPlain(node)) {
    const std::string& s = node.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  problem(node, path, "expected true or false, got " + describe(node));
  return std::nullopt;
}

std::optional<IpAddress> YamlReader::readIp(const YAML::Node& node, std::string_view path) {
  if (node.IsScalar()) {
    if (auto ip = IpAddress::parse(node.Scalar())) return *ip;
    problem(node, path, "invalid IP address '" + node.Scalar() + "'");
    return std::nullopt;
  }
  problem(node, path, "expected an IP address, got " + describe(node));
  return std::nullopt;
}

std::optional<Cidr> YamlReader::readCidr(const YAML::Node& node, std::string_view path) {
  if (node.IsScalar()) {
    if (auto cidr = Cidr::parse(node.Scalar())) return *cidr;
    problem(node, path, "invalid CIDR '" + node.Scalar() + "' (expected e.g. 10.0.0.0/8)");
    return std::nullopt;
  }
  problem(node, path, "expected a CIDR, got " + describe(node));
  return std::nullopt;
}

bool YamlReader::countElement(const YAML::Node& at) {
  if (++elements_ <= kMaxElements) return true;
  if (!over_budget_) {
    over_budget_ = true;
    problem(at, "",
            "more than " + std::to_string(kMaxElements) +
                " elements after expanding aliases; refusing to read further");
  }
  return false;
}

bool YamlReader::forEachItem(const YAML::Node& node, std::string_view path, const ItemFn& fn) {
  if (node.IsNull()) return true;
  if (!node.IsSequence()) {
    problem(node, path, "expected a list, got " + describe(node));
    return false;
  }
  size_t index = 0;
  for (const YAML::Node& item : node) {
    if (!countElement(item)) return false;
    fn(item, std::string(path) + "[" + std::to_string(index++) + "]");
  }
  return true;
}

bool YamlReader::forEachEntry(const YAML::Node& node, std::string_view path, const EntryFn& fn) {
  if (node.IsNull()) return true;
  if (!node.IsMap()) {
    problem(node, path, "expected a map, got " + describe(node));
    return false;
  }
  std::map<std::string, int, std::less<>> seen;
  // yaml-cpp iterators yield pairs by value: bind the pair, never a member reached through
  // operator-> (that proxy is a temporary).
  for (const auto& entry : node) {
    const YAML::Node& key = entry.first;
    if (!countElement(key)) return false;
    if (!key.IsScalar()) {
      problem(key, path, "a map key must be a string or number, got " + describe(key));
      continue;
    }
    auto [prev, inserted] = seen.emplace(key.Scalar(), lineOf(key));
    if (!inserted) {
      problem(key, path,
              "duplicate key '" + key.Scalar() + "' (first at line " +
                  std::to_string(prev->second) + ")");
      continue;
    }
    fn(key, key.Scalar(), entry.second, std::string(path) + "[" + key.Scalar() + "]");
  }
  return true;
}

void YamlReader::checkUnterminatedQuotes(const YAML::Node& root) {
  std::map<std::pair<int, int>, bool> seen;
  walkQuotes(root, seen);
}

void YamlReader::walkQuotes(const YAML::Node& node, std::map<std::pair<int, int>, bool>& seen) {
  // An alias is the same node again; visiting each once keeps this linear in the file size.
  YAML::Mark mark = node.Mark();
  if (!seen.emplace(std::make_pair(mark.pos, static_cast<int>(node.Type())), true).second) {
    return;
  }
  if (node.IsMap()) {
    for (const auto& entry : node) {
      walkQuotes(entry.first, seen);
      walkQuotes(entry.second, seen);
    }
    return;
  }
  if (node.IsSequence()) {
    for (const YAML::Node& item : node) walkQuotes(item, seen);
    return;
  }
  if (!node.IsScalar() || mark.is_null() || mark.pos < 0 ||
      static_cast<size_t>(mark.pos) >= text_.size()) {
    return;
  }
  char quote = text_[mark.pos];
  if (quote != '"' && quote != '\'') return;
  for (size_t i = mark.pos + 1; i < text_.size(); ++i) {
    char c = text_[i];
    if (quote == '"' && c == '\\') {
      ++i;  // skip the escaped character
    } else if (c == quote) {
      if (quote == '\'' && i + 1 < text_.size() && text_[i + 1] == '\'') {
        ++i;  // '' is an escaped quote inside a single-quoted scalar
        continue;
      }
      return;
    }
  }
  problem(node, "", "unterminated quoted string (is the file truncated?)");
}

FieldMap::FieldMap(YamlReader& reader, const YAML::Node& node, std::string path,
                   std::string_view what, std::span<const std::string_view> allowed)
    : reader_(reader), node_(node), path_(std::move(path)), what_(what) {
  if (!node.IsMap()) {
    reader_.problem(node, path_,
                    "expected " + what_ + " (a map), got " + YamlReader::describe(node));
    return;
  }
  valid_ = true;
  reader_.forEachEntry(node, path_,
                       [&](const YAML::Node& key, const std::string& name, const YAML::Node& value,
                           const std::string&) {
                         if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) {
                           fields_.emplace(name, value);
                           return;
                         }
                         std::string reason = "unknown field '" + name + "' in " + what_;
                         std::string_view best;
                         size_t best_distance = 3;  // suggest only close matches
                         for (std::string_view candidate : allowed) {
                           // The distance is at least the difference in length: a name that
                           // long cannot be a close match (and a fuzzed kilobyte-long key
                           // would cost a kilobyte-squared table per candidate).
                           size_t gap = name.size() > candidate.size()
                                            ? name.size() - candidate.size()
                                            : candidate.size() - name.size();
                           if (gap >= best_distance) continue;
                           size_t d = editDistance(name, candidate);
                           if (d < best_distance) {
                             best_distance = d;
                             best = candidate;
                           }
                         }
                         if (!best.empty())
                           reason += " (did you mean '" + std::string(best) + "'?)";
                         reason += "; allowed:";
                         for (size_t i = 0; i < allowed.size(); ++i) {
                           reason += (i == 0 ? " " : ", ") + std::string(allowed[i]);
                         }
                         reader_.problem(key, path_, reason);
                       });
}

std::string FieldMap::pathOf(std::string_view key) const {
  if (path_.empty()) return std::string(key);
  return path_ + "." + std::string(key);
}

std::optional<YAML::Node> FieldMap::get(std::string_view key) const {
  auto it = fields_.find(key);
  if (it == fields_.end()) return std::nullopt;
  return it->second;
}

std::optional<YAML::Node> FieldMap::require(std::string_view key) {
  auto value = get(key);
  if (!value && valid_) {
    reader_.problem(node_, path_, "missing required field '" + std::string(key) + "' in " + what_);
  }
  return value;
}

}  // namespace nodemesh::config
