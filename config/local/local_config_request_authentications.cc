// LocalConfigParser: the `requestAuthentications` section. Each item is Istio's
// RequestAuthentication (security.istio.io/v1, v1beta1) as `kubectl get -o yaml` prints it. The
// waypoint applies it to Services: spec.targetRefs of kind Service, or none for every Service of
// the namespace. Fields it cannot apply are refused by name rather than ignored: spec.selector
// (the waypoint knows no workload labels), fromParams, fromCookies, outputPayloadToHeader, and
// a jwksUri that is not a file:// URL (the waypoint fetches nothing over the network). Each
// JWKS is parsed here, so a bad key set is a problem at its line.

#include <fstream>
#include <sstream>
#include <utility>

#include "auth/jwks.h"
#include "config/local/local_config_parser.h"
#include "model/route_validation.h"

namespace nodemesh::config::local_internal {

namespace {

constexpr std::string_view kKind = "RequestAuthentication";
constexpr std::string_view kApiVersions[] = {"security.istio.io/v1", "security.istio.io/v1beta1"};
constexpr std::string_view kObjectFields[] = {"apiVersion", "kind", "metadata", "spec", "status"};
constexpr std::string_view kSpecFields[] = {"selector", "targetRef", "targetRefs", "jwtRules"};
constexpr std::string_view kTargetRefFields[] = {"group", "kind", "name", "namespace"};
constexpr std::string_view kJwtRuleFields[] = {"issuer",
                                               "audiences",
                                               "jwksUri",
                                               "jwks",
                                               "fromHeaders",
                                               "fromParams",
                                               "fromCookies",
                                               "outputPayloadToHeader",
                                               "forwardOriginalToken",
                                               "outputClaimToHeaders",
                                               "timeout"};
constexpr std::string_view kSupportedJwtRuleFields[] = {"issuer",
                                                        "audiences",
                                                        "jwksUri",
                                                        "jwks",
                                                        "fromHeaders",
                                                        "forwardOriginalToken",
                                                        "outputClaimToHeaders"};
constexpr std::string_view kHeaderFields[] = {"name", "prefix"};
constexpr std::string_view kClaimFields[] = {"header", "claim"};
constexpr std::string_view kFileScheme = "file://";

bool contains(std::span<const std::string_view> list, std::string_view key) {
  return std::find(list.begin(), list.end(), key) != list.end();
}

// The JWKS file of a file:// jwksUri, at most Jwks::kMaxBytes.
Result<std::string> readJwksFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::fromErrno("cannot read " + path);
  std::string text(auth::Jwks::kMaxBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > auth::Jwks::kMaxBytes) {
    return Error::invalid(path + " is larger than " + std::to_string(auth::Jwks::kMaxBytes) +
                          " bytes");
  }
  return text;
}

}  // namespace

void LocalConfigParser::parseRequestAuthentication(const YAML::Node& node,
                                                   const std::string& path) {
  FieldMap f(r_, node, path, std::string(kKind), kObjectFields);
  if (!f.valid()) return;
  if (auto v = f.require("apiVersion")) {
    auto text = r_.readString(*v, f.pathOf("apiVersion"));
    if (text && !contains(kApiVersions, *text)) {
      r_.problem(*v, f.pathOf("apiVersion"),
                 "unsupported apiVersion '" + *text + "'; expected security.istio.io/v1");
    }
  }
  if (auto k = f.require("kind")) {
    auto text = r_.readString(*k, f.pathOf("kind"));
    if (text && *text != kKind) {
      r_.problem(*k, f.pathOf("kind"),
                 "kind '" + *text + "' in requestAuthentications; expected " + std::string(kKind));
    }
  }
  model::RequestAuthentication ra;
  auto meta_node = f.require("metadata");
  if (!meta_node) return;
  FieldMap meta(r_, *meta_node, f.pathOf("metadata"), "metadata", kObjectMetaFields);
  if (!meta.valid()) return;
  ra.metadata.namespace_name = "default";  // as Kubernetes
  readString(meta, "namespace", ra.metadata.namespace_name);
  if (ra.metadata.namespace_name.empty()) {
    r_.problem(meta.node(), meta.path(), "metadata.namespace must not be empty");
  }
  if (auto name = meta.require("name")) {
    if (auto n = r_.readString(*name, meta.pathOf("name"))) ra.metadata.name = *n;
    if (ra.metadata.name.empty()) {
      r_.problem(*name, meta.pathOf("name"), "a RequestAuthentication needs a non-empty name");
    } else {
      auto [prev, inserted] =
          request_authentication_lines_.emplace(ra.key(), YamlReader::lineOf(*name));
      if (!inserted) {
        r_.problem(*name, meta.pathOf("name"),
                   "duplicate RequestAuthentication '" + ra.key() + "' (first defined at line " +
                       std::to_string(prev->second) + ")");
      }
    }
  }
  auto spec_node = f.require("spec");
  if (!spec_node) return;
  FieldMap spec(r_, *spec_node, f.pathOf("spec"), "RequestAuthentication spec", kSpecFields);
  if (!spec.valid()) return;
  if (auto n = spec.get("selector")) {
    r_.problem(*n, spec.pathOf("selector"),
               "selector is not supported: the waypoint applies RequestAuthentications to "
               "Services, named by targetRefs (kind Service), or to every Service of the "
               "namespace when neither is given");
  }
  if (auto n = spec.get("targetRef")) {
    r_.problem(*n, spec.pathOf("targetRef"), "targetRef is deprecated in Istio; use targetRefs");
  }
  if (auto n = spec.get("targetRefs")) {
    r_.forEachItem(*n, spec.pathOf("targetRefs"),
                   [&](const YAML::Node& item, const std::string& item_path) {
                     readRequestAuthenticationTarget(item, item_path, ra);
                   });
  }
  if (auto n = spec.get("jwtRules")) {
    r_.forEachItem(*n, spec.pathOf("jwtRules"),
                   [&](const YAML::Node& item, const std::string& item_path) {
                     if (auto rule = readJwtRule(item, item_path)) {
                       ra.jwt_rules.push_back(std::move(*rule));
                     }
                   });
  }
  request_authentications_.push_back(std::move(ra));
}

void LocalConfigParser::readRequestAuthenticationTarget(const YAML::Node& node,
                                                        const std::string& path,
                                                        model::RequestAuthentication& ra) {
  FieldMap t(r_, node, path, "targetRef", kTargetRefFields);
  if (!t.valid()) return;
  std::string group;
  readString(t, "group", group);
  std::string kind;
  if (auto k = t.require("kind")) {
    if (auto text = r_.readString(*k, t.pathOf("kind"))) kind = *text;
    if (!kind.empty() && (kind != "Service" || (!group.empty() && group != "core"))) {
      r_.problem(*k, t.pathOf("kind"),
                 "targetRef " + (group.empty() ? "" : group + "/") + kind +
                     " is not supported: the waypoint applies RequestAuthentications to kind "
                     "Service (group \"\")");
      kind.clear();
    }
  }
  std::string target_ns = ra.metadata.namespace_name;
  if (auto ns = t.get("namespace")) {
    if (auto text = r_.readString(*ns, t.pathOf("namespace")); text && *text != target_ns) {
      // Istio's PolicyTargetReference: policies attach within their own namespace.
      r_.problem(*ns, t.pathOf("namespace"),
                 "targetRef namespace '" + *text + "' differs from the policy's ('" + target_ns +
                     "'): a RequestAuthentication targets Services of its own namespace");
    }
  }
  std::string name;
  if (auto n = t.require("name")) {
    if (auto text = r_.readString(*n, t.pathOf("name"))) name = *text;
    if (name.empty()) {
      r_.problem(*n, t.pathOf("name"), "targetRef name must not be empty");
    } else if (!kind.empty()) {
      ra.target_services.push_back(name);
      request_authentication_refs_.push_back(
          Reference{target_ns + "/" + name, *n, t.pathOf("name")});
    }
  }
}

std::optional<model::JwtRule> LocalConfigParser::readJwtRule(const YAML::Node& node,
                                                             const std::string& path) {
  FieldMap f(r_, node, path, "jwtRule", kJwtRuleFields);
  if (!f.valid()) return std::nullopt;
  refuseUnsupported(f, kJwtRuleFields, kSupportedJwtRuleFields,
                    "the token is read from headers only, and only the claims named in "
                    "outputClaimToHeaders are forwarded");
  const size_t problems_before = r_.problems().size();
  model::JwtRule rule;
  readRequiredString(f, "issuer", rule.issuer);
  if (auto n = f.get("issuer"); n && rule.issuer.empty()) {
    r_.problem(*n, f.pathOf("issuer"), "issuer must not be empty");
  }
  if (auto n = f.get("audiences")) readStringList(*n, f.pathOf("audiences"), rule.audiences);

  auto jwks = f.get("jwks");
  auto uri = f.get("jwksUri");
  std::string jwks_text;
  std::optional<YAML::Node> jwks_at;
  std::string jwks_path;
  if (jwks && uri) {
    r_.problem(*uri, f.pathOf("jwksUri"), "give jwks or jwksUri, not both");
  } else if (jwks) {
    jwks_at = *jwks;
    jwks_path = f.pathOf("jwks");
    if (auto text = r_.readString(*jwks, jwks_path)) jwks_text = std::move(*text);
  } else if (uri) {
    jwks_at = *uri;
    jwks_path = f.pathOf("jwksUri");
    if (auto text = r_.readString(*uri, jwks_path)) {
      if (text->rfind(kFileScheme, 0) != 0 || text->size() <= kFileScheme.size() ||
          (*text)[kFileScheme.size()] != '/') {
        r_.problem(*uri, jwks_path,
                   "jwksUri '" + *text +
                       "' is not supported: the waypoint fetches nothing over the network; give "
                       "the key set inline (jwks) or as file:///absolute/path");
        jwks_at.reset();
      } else {
        rule.jwks_uri = *text;
        auto file = readJwksFile(text->substr(kFileScheme.size()));
        if (!file) {
          r_.problem(*uri, jwks_path, "jwksUri: " + file.error().message);
          jwks_at.reset();
        } else {
          jwks_text = std::move(*file);
        }
      }
    }
  } else {
    r_.problem(f.node(), f.path(),
               "a jwtRule needs jwks (inline) or jwksUri (file:///...): the waypoint does no "
               "OpenID discovery");
  }
  if (jwks_at) {
    if (auto parsed = auth::Jwks::parse(jwks_text); parsed) {
      rule.jwks = std::move(*parsed);
    } else {
      r_.problem(*jwks_at, jwks_path, parsed.error().message);
    }
  }

  if (auto n = f.get("fromHeaders")) {
    r_.forEachItem(
        *n, f.pathOf("fromHeaders"), [&](const YAML::Node& item, const std::string& item_path) {
          FieldMap h(r_, item, item_path, "fromHeaders item", kHeaderFields);
          if (!h.valid()) return;
          model::JwtHeaderLocation loc;
          readRequiredString(h, "name", loc.name);
          if (auto hn = h.get("name"); hn && !loc.name.empty()) {
            if (auto valid = model::checkHeaderName(loc.name); !valid) {
              r_.problem(*hn, h.pathOf("name"), "invalid header name: " + valid.error().message);
            }
          }
          readString(h, "prefix", loc.prefix);
          loc.name = lower(loc.name);
          rule.from_headers.push_back(std::move(loc));
        });
  }
  if (rule.from_headers.empty()) {
    // Istio's default location (RFC 6750 section 2.1).
    rule.from_headers.push_back(model::JwtHeaderLocation{"authorization", "Bearer "});
  }
  if (auto n = f.get("forwardOriginalToken")) {
    if (auto b = r_.readBool(*n, f.pathOf("forwardOriginalToken"))) {
      rule.forward_original_token = *b;
    }
  }
  if (auto n = f.get("outputClaimToHeaders")) {
    r_.forEachItem(*n, f.pathOf("outputClaimToHeaders"),
                   [&](const YAML::Node& item, const std::string& item_path) {
                     FieldMap c(r_, item, item_path, "outputClaimToHeaders item", kClaimFields);
                     if (!c.valid()) return;
                     model::ClaimToHeader out;
                     readRequiredString(c, "header", out.header);
                     readRequiredString(c, "claim", out.claim);
                     auto hn = c.get("header");
                     if (hn && !out.header.empty()) {
                       if (auto valid = model::checkHeaderName(out.header); !valid) {
                         r_.problem(*hn, c.pathOf("header"),
                                    "invalid header name: " + valid.error().message);
                       }
                     }
                     if (auto cn = c.get("claim"); cn && out.claim.empty()) {
                       r_.problem(*cn, c.pathOf("claim"), "claim must not be empty");
                     }
                     out.header = lower(out.header);
                     rule.output_claim_to_headers.push_back(std::move(out));
                   });
  }
  if (r_.problems().size() != problems_before) return std::nullopt;
  return rule;
}

void LocalConfigParser::checkRequestAuthentications() {
  std::set<std::string, std::less<>> known;
  for (const Service& s : services_) known.insert(s.namespace_name + "/" + s.name);
  for (const Reference& ref : request_authentication_refs_) {
    if (known.count(ref.key) == 0) {
      r_.warning(ref.node, ref.path,
                 "RequestAuthentication target Service " + ref.key +
                     " is not defined in this file: the policy applies to nothing");
    }
  }
  // Istio's rule: one issuer per policy (jwtRules with the same issuer are ambiguous).
  for (const model::RequestAuthentication& ra : request_authentications_) {
    std::set<std::string, std::less<>> issuers;
    for (const model::JwtRule& rule : ra.jwt_rules) {
      if (!issuers.insert(rule.issuer).second) {
        r_.problemAtLine(
            request_authentication_lines_[ra.key()], "",
            "RequestAuthentication '" + ra.key() + "' has two jwtRules for issuer " + rule.issuer);
      }
    }
  }
}

}  // namespace nodemesh::config::local_internal
