// LocalConfigParser's frame: the top level, the helpers every section uses, cross references.

#include "config/local/local_config_parser.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <sstream>
#include <utility>

namespace nodemesh::config::local_internal {

namespace {

// Field names exactly as ztunnel's serde structs spell them (rename_all = "camelCase"), plus the
// Gateway API route lists for the waypoint.
constexpr std::string_view kTopFields[] = {
    "workloads",  "services",          "policies",         "httpRoutes",
    "grpcRoutes", "rateLimitPolicies", "destinationRules", "requestAuthentications"};
constexpr std::string_view kGatewayFields[] = {"destination", "hboneMtlsPort"};

// yaml-cpp 0.7 (Debian 12) has a parser bug, fixed upstream in 0.8.0 (jbeder/yaml-cpp#1319):
// for some malformed input (a ',' where a node should start, for example) the parser neither
// consumes the token nor throws, so LoadAll() appends an empty document for ever, allocating
// until the process is killed. A mistyped config file would hang a reload and take the agent's
// memory with it. The fix is upstream's: stop at a document that starts where the previous one
// started. yaml-cpp's public API has no way to build nodes while watching the documents, so a
// first pass streams the events into this handler, which keeps nothing but the last start.
class StalledDocumentDetector final : public YAML::EventHandler {
 public:
  struct Stalled {
    YAML::Mark mark;
  };

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (last_start_ && last_start_->pos == mark.pos) throw Stalled{mark};
    last_start_ = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnAlias(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnScalar(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                const std::string& /*value*/) override {}
  void OnSequenceStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/,
                       YAML::anchor_t /*anchor*/, YAML::EmitterStyle::value /*style*/) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                  YAML::EmitterStyle::value /*style*/) override {}
  void OnMapEnd() override {}

 private:
  std::optional<YAML::Mark> last_start_;
};

// The place where yaml-cpp's parser would stall on `text`, if it would. Syntax errors it throws
// are left to the real parse, which reports them.
std::optional<YAML::Mark> findStalledDocument(std::string_view text) {
  std::istringstream input{std::string(text)};
  YAML::Parser parser(input);
  StalledDocumentDetector detector;
  try {
    while (parser.HandleNextDocument(detector)) {
    }
  } catch (const StalledDocumentDetector::Stalled& stalled) {
    return stalled.mark;
  } catch (const YAML::Exception&) {
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

LoadResult LocalConfigParser::run() {
  try {
    parse();
  } catch (const YAML::Exception& e) {
    // Everything is read through const nodes and Scalar(), so this is not expected; still,
    // no exception may escape.
    r_.problemAtLine(e.mark.is_null() ? 0 : e.mark.line + 1, "", e.msg);
  } catch (const std::exception& e) {
    r_.problemAtLine(0, "", std::string("internal error reading config: ") + e.what());
  }
  LoadResult result;
  result.problems = r_.takeProblems();
  result.warnings = r_.takeWarnings();
  auto by_line = [](const ConfigProblem& a, const ConfigProblem& b) { return a.line < b.line; };
  std::stable_sort(result.problems.begin(), result.problems.end(), by_line);
  std::stable_sort(result.warnings.begin(), result.warnings.end(), by_line);
  if (result.problems.empty()) {
    result.snapshot = model::Snapshot::create(
        std::move(workloads_), std::move(services_), std::move(policies_), std::move(http_routes_),
        std::move(grpc_routes_), std::move(rate_limits_), std::move(destination_rules_),
        std::move(request_authentications_));
  }
  return result;
}

void LocalConfigParser::parse() {
  if (auto stalled = findStalledDocument(text_)) {
    const auto pos = static_cast<size_t>(stalled->pos);
    const std::string what = pos < text_.size() && text_[pos] >= 0x21 && text_[pos] <= 0x7e
                                 ? fmt::format("'{}'", text_[pos])
                                 : std::string("this character");
    r_.problemAtLine(stalled->line + 1, "",
                     fmt::format("YAML syntax error: a node cannot start with {} (column {})", what,
                                 stalled->column + 1));
    return;
  }
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text_));
  } catch (const YAML::ParserException& e) {
    r_.problemAtLine(e.mark.is_null() ? 0 : e.mark.line + 1, "", "YAML syntax error: " + e.msg);
    return;
  }
  if (docs.empty()) return;  // empty file or only comments: an empty snapshot
  if (docs.size() > 1) {
    r_.problem(docs[1], "",
               "more than one YAML document ('---'); the local config is a single document");
  }
  const YAML::Node& root = docs[0];
  r_.checkUnterminatedQuotes(root);
  if (root.IsNull()) return;
  if (root.IsSequence()) {
    r_.problem(root, "",
               "expected a map with workloads, services and policies at the top level, got a "
               "list (list workloads under 'workloads:')");
    return;
  }
  FieldMap top(r_, root, "", "the top level", kTopFields);
  if (!top.valid()) return;

  if (auto node = top.get("policies")) {
    policies_ok_ = r_.forEachItem(
        *node, "policies",
        [&](const YAML::Node& item, const std::string& path) { parsePolicy(item, path); });
  }
  if (auto node = top.get("services")) {
    r_.forEachItem(*node, "services", [&](const YAML::Node& item, const std::string& path) {
      parseService(item, path);
    });
  }
  if (auto node = top.get("workloads")) {
    r_.forEachItem(*node, "workloads", [&](const YAML::Node& item, const std::string& path) {
      parseWorkload(item, path);
    });
  }
  if (auto node = top.get("httpRoutes")) {
    r_.forEachItem(*node, "httpRoutes", [&](const YAML::Node& item, const std::string& path) {
      parseHttpRoute(item, path);
    });
  }
  if (auto node = top.get("grpcRoutes")) {
    r_.forEachItem(*node, "grpcRoutes", [&](const YAML::Node& item, const std::string& path) {
      parseGrpcRoute(item, path);
    });
  }
  if (auto node = top.get("rateLimitPolicies")) {
    r_.forEachItem(
        *node, "rateLimitPolicies",
        [&](const YAML::Node& item, const std::string& path) { parseRateLimitPolicy(item, path); });
  }
  if (auto node = top.get("destinationRules")) {
    r_.forEachItem(*node, "destinationRules", [&](const YAML::Node& item, const std::string& path) {
      parseDestinationRule(item, path);
    });
  }
  if (auto node = top.get("requestAuthentications")) {
    r_.forEachItem(*node, "requestAuthentications",
                   [&](const YAML::Node& item, const std::string& path) {
                     parseRequestAuthentication(item, path);
                   });
  }
  checkReferences();
  checkRateLimitTargets();
  checkDestinationRuleHosts();
  checkRequestAuthentications();
}

void LocalConfigParser::readString(const FieldMap& f, std::string_view key, std::string& out) {
  if (auto node = f.get(key)) {
    if (auto s = r_.readString(*node, f.pathOf(key))) out = std::move(*s);
  }
}

void LocalConfigParser::readRequiredString(FieldMap& f, std::string_view key, std::string& out) {
  if (auto node = f.require(key)) {
    if (auto s = r_.readString(*node, f.pathOf(key))) out = std::move(*s);
  }
}

void LocalConfigParser::readStringList(const YAML::Node& node, const std::string& path,
                                       std::vector<std::string>& out) {
  r_.forEachItem(node, path, [&](const YAML::Node& item, const std::string& item_path) {
    if (auto s = r_.readString(item, item_path)) out.push_back(std::move(*s));
  });
}

// service port -> target port. A service may map to target port 0 ("the endpoint says").
void LocalConfigParser::readPortMap(const YAML::Node& node, const std::string& path,
                                    bool allow_zero_target, model::PortMap& out) {
  r_.forEachEntry(node, path,
                  [&](const YAML::Node& key, const std::string&, const YAML::Node& value,
                      const std::string& entry_path) {
                    auto port = r_.readPort(key, entry_path);
                    auto target = r_.readPort(value, entry_path, allow_zero_target);
                    if (!port || !target) return;
                    if (!out.emplace(*port, *target).second) {
                      r_.problem(key, entry_path, "duplicate port " + std::to_string(*port));
                    }
                  });
}

std::optional<GatewayAddress> LocalConfigParser::readGateway(const YAML::Node& node,
                                                             const std::string& path) {
  if (node.IsNull()) return std::nullopt;  // Option<GatewayAddress>: null is "none"
  FieldMap f(r_, node, path, "gateway address", kGatewayFields);
  if (!f.valid()) return std::nullopt;
  GatewayAddress gateway;
  bool ok = true;
  if (auto dest = f.require("destination")) {
    auto text = r_.readString(*dest, f.pathOf("destination"));
    if (text) {
      auto parsed = GatewayAddress::parseDestination(*text);
      if (parsed) {
        gateway.destination = std::move(parsed).value();
      } else {
        r_.problem(*dest, f.pathOf("destination"),
                   "invalid destination: " + parsed.error().message);
        ok = false;
      }
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }
  if (auto port = f.require("hboneMtlsPort")) {
    if (auto p = r_.readPort(*port, f.pathOf("hboneMtlsPort"))) {
      gateway.hbone_mtls_port = *p;
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }
  return ok ? std::optional<GatewayAddress>(std::move(gateway)) : std::nullopt;
}

std::optional<model::HealthStatus> LocalConfigParser::readStatus(const YAML::Node& node,
                                                                 const std::string& path) {
  return r_.readEnum<model::HealthStatus>(
      node, path, "status",
      {{"Healthy", model::HealthStatus::Healthy}, {"Unhealthy", model::HealthStatus::Unhealthy}});
}

const LocalConfigParser::Located& LocalConfigParser::keyOf(model::ValidationFinding::Kind kind,
                                                           size_t index) const {
  switch (kind) {
    case model::ValidationFinding::Kind::Workload: {
      const WorkloadNodes& nodes = workload_nodes_[index];
      return nodes.key ? *nodes.key : nodes.item;
    }
    case model::ValidationFinding::Kind::Service: {
      const ServiceNodes& nodes = service_nodes_[index];
      return nodes.key ? *nodes.key : nodes.item;
    }
    case model::ValidationFinding::Kind::Policy:
      break;
  }
  return policy_nodes_[index];
}

const LocalConfigParser::Located& LocalConfigParser::locate(
    const model::ValidationFinding& finding) const {
  using Part = model::ValidationFinding::Part;
  switch (finding.part) {
    case Part::Key:
      break;
    case Part::Address:
      return workload_nodes_[finding.index].addresses[finding.item];
    case Part::Vip:
      return service_nodes_[finding.index].vips[finding.item];
    case Part::PolicyRef:
      return workload_nodes_[finding.index].policy_refs[finding.item];
    case Part::ServiceRef: {
      const auto& refs = workload_nodes_[finding.index].service_refs;
      auto it = refs.find(finding.subject);
      if (it != refs.end()) return it->second;
      break;
    }
  }
  return keyOf(finding.kind, finding.index);
}

bool LocalConfigParser::keyRead(const model::ValidationFinding& finding) const {
  switch (finding.kind) {
    case model::ValidationFinding::Kind::Workload:
      return !workloads_[finding.index].uid.empty();
    case model::ValidationFinding::Kind::Service:
      return !services_[finding.index].hostname.empty();
    case model::ValidationFinding::Kind::Policy:
      return !policies_[finding.index].name.empty();
  }
  return true;
}

void LocalConfigParser::checkReferences() {
  // The checks every source shares live in the model; here they only get their lines. A workload
  // naming an undefined policy is an error for a file (it is complete, unlike an xDS stream).
  for (const model::ValidationFinding& finding :
       model::validate(workloads_, services_, policies_, {.undefined_policy_is_error = true})) {
    // When the policies list itself is broken, every reference would look dangling.
    if (finding.part == model::ValidationFinding::Part::PolicyRef && !policies_ok_) continue;
    // An item whose key could not be read has its own problem already; it duplicates nothing.
    if (finding.part == model::ValidationFinding::Part::Key && !keyRead(finding)) continue;
    const Located& at = locate(finding);
    std::string message = finding.message;
    if (finding.first) {
      int line = YamlReader::lineOf(keyOf(finding.kind, *finding.first).node);
      if (finding.part == model::ValidationFinding::Part::Key) {
        message += fmt::format(" (first defined at line {})", line);
      } else {
        message += fmt::format(" (defined at line {})", line);
      }
    }
    if (finding.isError()) {
      r_.problem(at.node, at.path, message);
    } else {
      r_.warning(at.node, at.path, message);
    }
  }
  // Routes name services by namespace/name. A missing backend is not an error for the API
  // either: requests routed to it get a 500 (or, for a parentRef, the route attaches to nothing).
  std::set<std::string, std::less<>> service_names;
  for (const Service& s : services_) service_names.insert(s.namespace_name + "/" + s.name);
  for (const Reference& ref : route_service_refs_) {
    if (service_names.count(ref.key) == 0) {
      r_.warning(ref.node, ref.path,
                 "route references service '" + ref.key + "', which this file does not define");
    }
  }
}

}  // namespace nodemesh::config::local_internal
