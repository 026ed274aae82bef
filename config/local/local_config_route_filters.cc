// LocalConfigParser: route filters (HTTPRouteFilter, GRPCRouteFilter), shared by rules and
// backendRefs. The CRD's rules: the field named after the type is set and no other, no filter but
// RequestMirror repeats, RequestRedirect and URLRewrite exclude each other, one action per header
// name in a header modifier.

#include <algorithm>
#include <utility>

#include "config/local/local_config_parser.h"
#include "model/route_validation.h"

namespace nodemesh::config::local_internal {

namespace {

constexpr std::string_view kFilterFields[] = {
    "type",          "requestHeaderModifier", "responseHeaderModifier",
    "requestMirror", "requestRedirect",       "urlRewrite",
    "extensionRef"};
constexpr std::string_view kHeaderFilterFields[] = {"set", "add", "remove"};
constexpr std::string_view kHeaderFields[] = {"name", "value"};
constexpr std::string_view kRedirectFields[] = {"scheme", "hostname", "path", "port", "statusCode"};
constexpr std::string_view kRewriteFields[] = {"hostname", "path"};
constexpr std::string_view kMirrorFields[] = {"backendRef", "percent", "fraction"};
constexpr std::string_view kMirrorBackendFields[] = {"group", "kind", "name", "namespace", "port"};
constexpr std::string_view kFractionFields[] = {"numerator", "denominator"};
constexpr std::string_view kPathModifierFields[] = {"type", "replaceFullPath",
                                                    "replacePrefixMatch"};

constexpr size_t kMaxListItems = 16;

}  // namespace

void LocalConfigParser::readFilters(const YAML::Node& node, const std::string& path, RouteKind kind,
                                    const std::string& route_namespace,
                                    std::vector<model::RouteFilter>& out) {
  size_t count = 0;
  r_.forEachItem(node, path, [&](const YAML::Node& item, const std::string& item_path) {
    if (++count > kMaxListItems) {
      r_.problem(item, item_path, "more than 16 filters");
      return;
    }
    auto filter = readFilter(item, item_path, kind, route_namespace);
    if (!filter) return;
    using model::FilterType;
    bool repeated = filter->type != FilterType::RequestMirror &&
                    std::any_of(out.begin(), out.end(), [&](const model::RouteFilter& f) {
                      return f.type == filter->type;
                    });
    if (repeated) {
      r_.problem(item, item_path,
                 std::string(model::toString(filter->type)) + " filter cannot be repeated");
      return;
    }
    auto other = filter->type == FilterType::RequestRedirect ? FilterType::UrlRewrite
                                                             : FilterType::RequestRedirect;
    bool redirect_or_rewrite =
        filter->type == FilterType::RequestRedirect || filter->type == FilterType::UrlRewrite;
    if (redirect_or_rewrite &&
        std::any_of(out.begin(), out.end(), [&](const auto& f) { return f.type == other; })) {
      r_.problem(item, item_path, "RequestRedirect and URLRewrite filters cannot be combined");
      return;
    }
    out.push_back(std::move(*filter));
  });
}

std::optional<model::RouteFilter> LocalConfigParser::readFilter(
    const YAML::Node& node, const std::string& path, RouteKind kind,
    const std::string& route_namespace) {
  FieldMap f(r_, node, path, "filter", kFilterFields);
  if (!f.valid()) return std::nullopt;
  auto type_node = f.require("type");
  if (!type_node) return std::nullopt;
  using model::FilterType;
  if (type_node->IsScalar() && type_node->Scalar() == "ExtensionRef") {
    r_.problem(*type_node, f.pathOf("type"),
               "ExtensionRef filters are not supported (the spec forbids skipping a filter that "
               "cannot be applied)");
    return std::nullopt;
  }
  std::optional<FilterType> type;
  if (kind == RouteKind::Http) {
    type = r_.readEnum<FilterType>(*type_node, f.pathOf("type"), "HTTPRoute filter type",
                                   {{"RequestHeaderModifier", FilterType::RequestHeaderModifier},
                                    {"ResponseHeaderModifier", FilterType::ResponseHeaderModifier},
                                    {"RequestMirror", FilterType::RequestMirror},
                                    {"RequestRedirect", FilterType::RequestRedirect},
                                    {"URLRewrite", FilterType::UrlRewrite}});
  } else {
    type = r_.readEnum<FilterType>(*type_node, f.pathOf("type"), "GRPCRoute filter type",
                                   {{"RequestHeaderModifier", FilterType::RequestHeaderModifier},
                                    {"ResponseHeaderModifier", FilterType::ResponseHeaderModifier},
                                    {"RequestMirror", FilterType::RequestMirror}});
  }
  if (!type) return std::nullopt;
  // The CEL rule: exactly the field named after the type is set.
  constexpr std::pair<std::string_view, FilterType> kFieldOf[] = {
      {"requestHeaderModifier", FilterType::RequestHeaderModifier},
      {"responseHeaderModifier", FilterType::ResponseHeaderModifier},
      {"requestMirror", FilterType::RequestMirror},
      {"requestRedirect", FilterType::RequestRedirect},
      {"urlRewrite", FilterType::UrlRewrite}};
  std::optional<YAML::Node> config;
  std::string config_path;
  bool ok = true;
  for (const auto& [field, field_type] : kFieldOf) {
    auto value = f.get(field);
    if (field_type == *type) {
      if (!value) {
        r_.problem(node, path,
                   "filter of type " + std::string(model::toString(*type)) + " needs '" +
                       std::string(field) + "'");
        ok = false;
      }
      config = value;
      config_path = f.pathOf(field);
    } else if (value) {
      r_.problem(*value, f.pathOf(field),
                 "'" + std::string(field) + "' is only allowed in a filter of its own type, not " +
                     std::string(model::toString(*type)));
      ok = false;
    }
  }
  if (auto ext = f.get("extensionRef")) {
    r_.problem(*ext, f.pathOf("extensionRef"), "'extensionRef' is only allowed with ExtensionRef");
    ok = false;
  }
  if (!ok || !config) return std::nullopt;
  model::RouteFilter filter;
  filter.type = *type;
  switch (*type) {
    case FilterType::RequestHeaderModifier:
    case FilterType::ResponseHeaderModifier: {
      auto v = readHeaderModifier(*config, config_path);
      if (!v) return std::nullopt;
      filter.config = std::move(*v);
      break;
    }
    case FilterType::RequestMirror: {
      auto v = readMirror(*config, config_path, route_namespace);
      if (!v) return std::nullopt;
      filter.config = std::move(*v);
      break;
    }
    case FilterType::RequestRedirect: {
      auto v = readRedirect(*config, config_path);
      if (!v) return std::nullopt;
      filter.config = std::move(*v);
      break;
    }
    case FilterType::UrlRewrite: {
      auto v = readRewrite(*config, config_path);
      if (!v) return std::nullopt;
      filter.config = std::move(*v);
      break;
    }
  }
  return filter;
}

std::optional<model::HeaderModifier> LocalConfigParser::readHeaderModifier(
    const YAML::Node& node, const std::string& path) {
  FieldMap f(r_, node, path, "header modifier", kHeaderFilterFields);
  if (!f.valid()) return std::nullopt;
  model::HeaderModifier out;
  // One action per header name across set, add and remove (HTTPHeaderFilter's rule).
  std::map<std::string, std::string, std::less<>> seen;
  bool ok = true;
  auto claim = [&](const YAML::Node& at, const std::string& at_path, const std::string& name,
                   std::string_view action) {
    if (auto valid = model::checkHeaderName(name); !valid) {
      r_.problem(at, at_path, "invalid header name: " + valid.error().message);
      ok = false;
      return false;
    }
    auto [prev, inserted] = seen.emplace(lower(name), std::string(action));
    if (!inserted) {
      r_.problem(at, at_path,
                 "header '" + name + "' already has an action (" + prev->second +
                     "); one action per header name");
      ok = false;
    }
    return inserted;
  };
  for (std::string_view action : {"set", "add"}) {
    auto list = f.get(action);
    if (!list) continue;
    auto& target = action == "set" ? out.set : out.add;
    r_.forEachItem(*list, f.pathOf(action), [&](const YAML::Node& item, const std::string& ipath) {
      FieldMap h(r_, item, ipath, "header", kHeaderFields);
      if (!h.valid()) return;
      model::HttpHeader header;
      readRequiredString(h, "name", header.name);
      readRequiredString(h, "value", header.value);
      if (target.size() == kMaxListItems) {
        r_.problem(item, ipath, "more than 16 headers");
        ok = false;
      } else if (h.get("name") && claim(item, ipath, header.name, action)) {
        target.push_back(std::move(header));
      }
    });
  }
  if (auto list = f.get("remove")) {
    r_.forEachItem(*list, f.pathOf("remove"),
                   [&](const YAML::Node& item, const std::string& ipath) {
                     auto name = r_.readString(item, ipath);
                     if (!name) return;
                     if (out.remove.size() == kMaxListItems) {
                       r_.problem(item, ipath, "more than 16 headers");
                       ok = false;
                     } else if (claim(item, ipath, *name, "remove")) {
                       out.remove.push_back(*name);
                     }
                   });
  }
  return ok ? std::optional(std::move(out)) : std::nullopt;
}

std::optional<std::string> LocalConfigParser::readHostnameField(const FieldMap& f,
                                                                std::string_view key) {
  auto node = f.get(key);
  if (!node) return std::nullopt;
  auto text = r_.readString(*node, f.pathOf(key));
  if (!text) return std::nullopt;
  if (auto ok = model::checkHostname(*text, false); !ok) {
    r_.problem(*node, f.pathOf(key), "invalid hostname: " + ok.error().message);
    return std::nullopt;
  }
  return text;
}

std::optional<model::PathModifier> LocalConfigParser::readPathModifier(const YAML::Node& node,
                                                                       const std::string& path) {
  FieldMap f(r_, node, path, "path modifier", kPathModifierFields);
  if (!f.valid()) return std::nullopt;
  auto type_node = f.require("type");
  if (!type_node) return std::nullopt;
  using Type = model::PathModifierType;
  auto type = r_.readEnum<Type>(*type_node, f.pathOf("type"), "path modifier type",
                                {{"ReplaceFullPath", Type::ReplaceFullPath},
                                 {"ReplacePrefixMatch", Type::ReplacePrefixMatch}});
  if (!type) return std::nullopt;
  std::string_view wanted =
      *type == Type::ReplaceFullPath ? "replaceFullPath" : "replacePrefixMatch";
  std::string_view other =
      *type == Type::ReplaceFullPath ? "replacePrefixMatch" : "replaceFullPath";
  if (auto extra = f.get(other)) {
    r_.problem(*extra, f.pathOf(other),
               "'" + std::string(other) + "' is not allowed with type " +
                   std::string(model::toString(*type)));
    return std::nullopt;
  }
  auto value = f.get(wanted);
  if (!value) {
    r_.problem(node, path,
               std::string(wanted) + " must be specified when type is " +
                   std::string(model::toString(*type)));
    return std::nullopt;
  }
  auto text = r_.readString(*value, f.pathOf(wanted));
  if (!text) return std::nullopt;
  // The CRD only bounds the length; an empty prefix replacement is meaningful ("/foo/bar" with
  // prefix "/foo" becomes "/bar"), and a non-empty value must still be a path.
  if (text->size() > 1024) {
    r_.problem(*value, f.pathOf(wanted), "longer than 1024 characters");
    return std::nullopt;
  }
  if (!text->empty() && text->front() != '/') {
    r_.problem(*value, f.pathOf(wanted), "must start with '/'");
    return std::nullopt;
  }
  return model::PathModifier{*type, std::move(*text)};
}

std::optional<model::RequestRedirect> LocalConfigParser::readRedirect(const YAML::Node& node,
                                                                      const std::string& path) {
  FieldMap f(r_, node, path, "requestRedirect", kRedirectFields);
  if (!f.valid()) return std::nullopt;
  model::RequestRedirect out;
  bool ok = true;
  if (auto scheme = f.get("scheme")) {
    auto v = r_.readEnum<std::string>(*scheme, f.pathOf("scheme"), "scheme",
                                      {{"http", "http"}, {"https", "https"}});
    ok = ok && v.has_value();
    out.scheme = v;
  }
  if (f.get("hostname")) {
    out.hostname = readHostnameField(f, "hostname");
    ok = ok && out.hostname.has_value();
  }
  if (auto p = f.get("path")) {
    out.path = readPathModifier(*p, f.pathOf("path"));
    ok = ok && out.path.has_value();
  }
  if (auto port = f.get("port")) {
    out.port = r_.readPort(*port, f.pathOf("port"));
    ok = ok && out.port.has_value();
  }
  if (auto code = f.get("statusCode")) {
    auto v =
        r_.readEnum<int>(*code, f.pathOf("statusCode"), "redirect statusCode",
                         {{"301", 301}, {"302", 302}, {"303", 303}, {"307", 307}, {"308", 308}});
    ok = ok && v.has_value();
    out.status_code = v.value_or(302);
  }
  return ok ? std::optional(std::move(out)) : std::nullopt;
}

std::optional<model::UrlRewrite> LocalConfigParser::readRewrite(const YAML::Node& node,
                                                                const std::string& path) {
  FieldMap f(r_, node, path, "urlRewrite", kRewriteFields);
  if (!f.valid()) return std::nullopt;
  model::UrlRewrite out;
  bool ok = true;
  if (f.get("hostname")) {
    out.hostname = readHostnameField(f, "hostname");
    ok = out.hostname.has_value();
  }
  if (auto p = f.get("path")) {
    out.path = readPathModifier(*p, f.pathOf("path"));
    ok = ok && out.path.has_value();
  }
  return ok ? std::optional(std::move(out)) : std::nullopt;
}

std::optional<model::RequestMirror> LocalConfigParser::readMirror(
    const YAML::Node& node, const std::string& path, const std::string& route_namespace) {
  FieldMap f(r_, node, path, "requestMirror", kMirrorFields);
  if (!f.valid()) return std::nullopt;
  model::RequestMirror out;
  bool ok = true;
  if (auto backend = f.require("backendRef")) {
    FieldMap b(r_, *backend, f.pathOf("backendRef"), "backendRef", kMirrorBackendFields);
    if (!b.valid()) return std::nullopt;
    auto ref = readBackendObjectRef(b, route_namespace);
    if (!ref) return std::nullopt;
    out.backend = std::move(*ref);
  } else {
    return std::nullopt;
  }
  auto percent = f.get("percent");
  auto fraction = f.get("fraction");
  if (percent && fraction) {
    r_.problem(*fraction, f.pathOf("fraction"), "only one of percent or fraction may be specified");
    return std::nullopt;
  }
  if (percent) {
    auto v = readBounded(*percent, f.pathOf("percent"), 0, 100);
    ok = v.has_value();
    out.numerator = v.value_or(0);
    out.denominator = 100;
  }
  if (fraction) {
    FieldMap fr(r_, *fraction, f.pathOf("fraction"), "fraction", kFractionFields);
    if (!fr.valid()) return std::nullopt;
    if (auto n = fr.require("numerator")) {
      auto v = r_.readUint32(*n, fr.pathOf("numerator"));
      ok = ok && v.has_value();
      out.numerator = v.value_or(0);
    } else {
      ok = false;
    }
    if (auto d = fr.get("denominator")) {
      auto v = readBounded(*d, fr.pathOf("denominator"), 1, 0x7fffffff);
      ok = ok && v.has_value();
      out.denominator = v.value_or(1);
    }
    if (ok && out.numerator > out.denominator) {
      r_.problem(*fraction, f.pathOf("fraction"),
                 "numerator must be less than or equal to denominator");
      ok = false;
    }
  }
  return ok ? std::optional(std::move(out)) : std::nullopt;
}

}  // namespace nodemesh::config::local_internal
