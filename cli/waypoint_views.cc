#include "cli/waypoint_views.h"

#include <string>

#include <fmt/format.h>

#include "cli/output.h"

namespace nodemesh::cli {

namespace {

using nlohmann::json;

std::string text(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return "";
  return j[key].get<std::string>();
}

const json& list(const json& j, const char* key) {
  static const json kEmpty = json::array();
  if (!j.is_object() || !j.contains(key) || !j[key].is_array()) return kEmpty;
  return j[key];
}

std::string port(const json& j) {
  return j.is_object() && j.contains("port") && j["port"].is_number()
             ? fmt::format(":{}", j["port"].get<uint64_t>())
             : "";
}

// "x-user-group=beta", "x-v~v[0-9]" (a regular expression).
std::string headerMatches(const json& matches, const char* prefix) {
  std::string out;
  for (const auto& h : matches) {
    if (!out.empty()) out += ' ';
    out += fmt::format("{}{}{}{}", prefix, text(h, "name"),
                       text(h, "type") == "RegularExpression" ? "~" : "=", text(h, "value"));
  }
  return out;
}

// One match of a rule: "prefix /api x-user-group=beta", "GET exact /x ?q=1",
// "helloworld.Greeter/SayHello".
std::string describeMatch(const json& m) {
  std::string out;
  auto part = [&out](const std::string& s) {
    if (s.empty()) return;
    if (!out.empty()) out += ' ';
    out += s;
  };
  if (m.contains("path") && m["path"].is_object()) {
    const std::string type = text(m["path"], "type");
    const std::string value = text(m["path"], "value");
    if (!(type == "PathPrefix" && value == "/")) {
      part(fmt::format("{} {}",
                       type == "Exact"        ? "exact"
                       : type == "PathPrefix" ? "prefix"
                                              : "regex",
                       value));
    }
    if (m.contains("method") && m["method"].is_string()) part(m["method"].get<std::string>());
  } else if (m.contains("method") && m["method"].is_object()) {
    const json& g = m["method"];
    const std::string svc = text(g, "service");
    const std::string method = text(g, "method");
    part(fmt::format("{}{}/{}", text(g, "type") == "RegularExpression" ? "regex " : "",
                     svc.empty() ? "*" : svc, method.empty() ? "*" : method));
  }
  part(headerMatches(list(m, "headers"), ""));
  part(headerMatches(list(m, "queryParams"), "?"));
  return out.empty() ? "*" : out;
}

}  // namespace

View waypointRoutesView(const json& routes, size_t width) {
  View v;
  v.data = routes;
  Table t({"ROUTE", "PARENTS", "RULE", "MATCHES", "FILTERS", "BACKENDS"});
  for (const auto& r : list(routes, "routes")) {
    std::string parents;
    for (const auto& p : list(r, "parents")) {
      if (!parents.empty()) parents += ',';
      parents += text(p, "service");
      parents += port(p);
    }
    const std::string name = fmt::format("{} {}", text(r, "kind"), text(r, "name"));
    bool first = true;
    for (const auto& rule : list(r, "rules")) {
      std::string matches;
      for (const auto& m : list(rule, "matches")) {
        if (!matches.empty()) matches += " | ";
        matches += describeMatch(m);
      }
      if (matches.empty()) matches.push_back('*');
      std::string backends;
      for (const auto& b : list(rule, "backends")) {
        const double percent = b.value("percent", 0.0);
        backends +=
            fmt::format("{}{}{} {:.0f}%{}", backends.empty() ? "" : ", ", text(b, "service"),
                        port(b), percent, b.value("exists", false) ? "" : " (missing)");
      }
      std::string rule_name = std::to_string(rule.value("index", 0));
      if (!text(rule, "name").empty()) rule_name += fmt::format(" {}", text(rule, "name"));
      t.addRow({first ? name : "", first ? parents : "", rule_name, matches,
                std::to_string(list(rule, "filters").size()), backends});
      first = false;
    }
  }
  std::string services;
  for (const auto& s : list(routes, "services")) {
    if (!services.empty()) services += ", ";
    services += text(s, "service");
  }
  v.table =
      fmt::format("services through this waypoint: {}\n", services.empty() ? "none" : services);
  if (t.rows() > 0) v.table += t.render(width);
  return v;
}

View waypointExplainView(const json& explanation) {
  View v;
  v.data = explanation;
  v.table = text(explanation, "text");
  return v;
}

}  // namespace nodemesh::cli
