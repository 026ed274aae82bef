#include "telemetry/prometheus_text.h"

#include <cmath>

#include <fmt/format.h>

namespace nodemesh::telemetry {

std::string PrometheusText::escapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string PrometheusText::escapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void PrometheusText::family(std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, escapeHelp(help),
                 name, type);
}

std::string PrometheusText::formatLabels(const Labels& labels) {
  std::string out;
  if (labels.empty()) return out;
  out += '{';
  bool first = true;
  for (const auto& [key, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += key;
    out += "=\"";
    out += escapeLabelValue(value);
    out += '"';
  }
  out += '}';
  return out;
}

void PrometheusText::sampleFormatted(std::string_view name, std::string_view formatted_labels,
                                     uint64_t value) {
  out_ += name;
  out_ += formatted_labels;
  fmt::format_to(std::back_inserter(out_), " {}\n", value);
}

void PrometheusText::histogram(std::string_view name, std::string_view formatted_labels,
                               std::span<const double> bounds, std::span<const uint64_t> counts,
                               double sum) {
  // `{a="1"` without its closing brace, to append le; `{` alone without labels.
  std::string_view open = formatted_labels.empty()
                              ? std::string_view("{")
                              : formatted_labels.substr(0, formatted_labels.size() - 1);
  const char* separator = formatted_labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    if (i < bounds.size()) {
      fmt::format_to(std::back_inserter(out_), "{}_bucket{}{}le=\"{}\"}} {}\n", name, open,
                     separator, bounds[i], cumulative);
    } else {
      fmt::format_to(std::back_inserter(out_), "{}_bucket{}{}le=\"+Inf\"}} {}\n", name, open,
                     separator, cumulative);
    }
  }
  fmt::format_to(std::back_inserter(out_), "{}_sum{} {}\n{}_count{} {}\n", name, formatted_labels,
                 sum, name, formatted_labels, cumulative);
}

void PrometheusText::sample(std::string_view name, const Labels& labels, uint64_t value) {
  sampleFormatted(name, formatLabels(labels), value);
}

void PrometheusText::sample(std::string_view name, const Labels& labels, double value) {
  out_ += name;
  out_ += formatLabels(labels);
  if (std::isnan(value)) {
    out_ += " NaN\n";
  } else if (std::isinf(value)) {
    out_ += value > 0 ? " +Inf\n" : " -Inf\n";
  } else {
    fmt::format_to(std::back_inserter(out_), " {}\n", value);
  }
}

}  // namespace nodemesh::telemetry
