#pragma once

// nodemeshctl's output: every command builds its data as JSON (what `-o json` and `-o yaml`
// print) and a table for humans (`-o table`, the default), which always fits the terminal
// width it is given (120 columns by default): the widest columns give way, and cells cut
// short end with "…".

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace nodemesh::cli {

enum class OutputFormat { kTable, kJson, kYaml };

inline constexpr size_t kDefaultWidth = 120;

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void addRow(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }
  // Columns separated by two spaces; no line longer than `width` display columns.
  std::string render(size_t width = kDefaultWidth) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// Display columns of UTF-8 text (every code point counts one).
size_t displayWidth(std::string_view text);
// At most `width` display columns; cut text ends with "…".
std::string truncate(std::string_view text, size_t width);

std::string toYaml(const nlohmann::json& j);

// "1.5KiB", "12MiB", "17B".
std::string humanBytes(uint64_t bytes);
// "450ms", "12s", "3m20s", "5h02m", "3d4h".
std::string humanDuration(int64_t ms);
// "spiffe://cluster.local/ns/shop/sa/frontend" -> "shop/frontend"; "" -> "-".
std::string shortIdentity(const std::string& spiffe_id);

}  // namespace nodemesh::cli
