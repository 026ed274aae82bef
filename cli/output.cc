#include "cli/output.h"

#include <algorithm>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace nodemesh::cli {

namespace {

constexpr std::string_view kEllipsis = "\xe2\x80\xa6";  // U+2026
constexpr size_t kMinColumn = 6;
constexpr std::string_view kGap = "  ";

bool isContinuation(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

void emit(YAML::Emitter& out, const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [key, value] : j.items()) {
        out << YAML::Key << key << YAML::Value;
        emit(out, value);
      }
      out << YAML::EndMap;
      break;
    case nlohmann::json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& value : j) emit(out, value);
      out << YAML::EndSeq;
      break;
    case nlohmann::json::value_t::string:
      out << j.get<std::string>();
      break;
    case nlohmann::json::value_t::boolean:
      out << j.get<bool>();
      break;
    case nlohmann::json::value_t::number_integer:
      out << j.get<int64_t>();
      break;
    case nlohmann::json::value_t::number_unsigned:
      out << j.get<uint64_t>();
      break;
    case nlohmann::json::value_t::number_float:
      out << j.get<double>();
      break;
    default:
      out << YAML::Null;
      break;
  }
}

}  // namespace

size_t displayWidth(std::string_view text) {
  size_t n = 0;
  for (char c : text) n += isContinuation(static_cast<unsigned char>(c)) ? 0 : 1;
  return n;
}

std::string truncate(std::string_view text, size_t width) {
  if (displayWidth(text) <= width) return std::string(text);
  if (width == 0) return "";
  // Keep width-1 code points, then the ellipsis.
  size_t kept = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (!isContinuation(static_cast<unsigned char>(text[i]))) {
      if (kept == width - 1) break;
      ++kept;
    }
    ++i;
  }
  return std::string(text.substr(0, i)) + std::string(kEllipsis);
}

void Table::addRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  for (auto& c : cells) {
    // One line per row: newlines and tabs would break the columns.
    std::replace_if(
        c.begin(), c.end(), [](char ch) { return ch == '\n' || ch == '\t'; }, ' ');
    if (c.empty()) c.assign(1, '-');  // not = "-": GCC 12's false -Wrestrict at -O3 (PR 105329)
  }
  rows_.push_back(std::move(cells));
}

std::string Table::render(size_t width) const {
  const size_t n = headers_.size();
  if (n == 0) return "";
  std::vector<size_t> widths(n);
  for (size_t i = 0; i < n; ++i) {
    widths[i] = displayWidth(headers_[i]);
    for (const auto& row : rows_) widths[i] = std::max(widths[i], displayWidth(row[i]));
  }
  const size_t gaps = kGap.size() * (n - 1);
  auto total = [&] {
    size_t sum = gaps;
    for (size_t w : widths) sum += w;
    return sum;
  };
  // The widest column gives way first, down to kMinColumn (or its header, if shorter).
  while (total() > width) {
    size_t widest = 0;
    for (size_t i = 1; i < n; ++i) {
      if (widths[i] > widths[widest]) widest = i;
    }
    if (widths[widest] <= kMinColumn) break;
    --widths[widest];
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t i = 0; i < n; ++i) {
      std::string cell = truncate(cells[i], widths[i]);
      text += cell;
      if (i + 1 < n) text += std::string(widths[i] - displayWidth(cell), ' ') + std::string(kGap);
    }
    // Only a table narrower columns could not save (too many columns) is cut at the end.
    out += truncate(text, width) + "\n";
  };
  std::vector<std::string> header_cells;
  for (const auto& h : headers_) header_cells.push_back(h);
  line(header_cells);
  for (const auto& row : rows_) line(row);
  return out;
}

std::string toYaml(const nlohmann::json& j) {
  YAML::Emitter out;
  emit(out, j);
  return std::string(out.c_str()) + "\n";
}

std::string humanBytes(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{}B", bytes);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  return v < 10 ? fmt::format("{:.1f}{}", v, units[u]) : fmt::format("{:.0f}{}", v, units[u]);
}

std::string humanDuration(int64_t ms) {
  if (ms < 0) ms = 0;
  if (ms < 1000) return fmt::format("{}ms", ms);
  int64_t s = ms / 1000;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  return fmt::format("{}d{}h", s / 86400, (s % 86400) / 3600);
}

std::string shortIdentity(const std::string& id) {
  if (id.empty()) return "-";
  auto ns = id.find("/ns/");
  auto sa = id.find("/sa/");
  if (ns == std::string::npos || sa == std::string::npos || sa < ns) return id;
  return id.substr(ns + 4, sa - ns - 4) + "/" + id.substr(sa + 4);
}

}  // namespace nodemesh::cli
