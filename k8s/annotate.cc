#include "k8s/annotate.h"

#include <fmt/format.h>

namespace nodemesh::k8s {
namespace {

// Namespace and pod names are RFC 1123 labels / subdomains: lower-case alphanumerics, '-' and
// '.', at most 253 characters.
bool validName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

Status patchAnnotation(Client& client, std::string_view namespace_name, std::string_view name,
                       bool enabled) {
  auto path = podStatusPath(namespace_name, name);
  if (!path) return path.error();
  auto response = client.mergePatch(*path, redirectionPatch(enabled));
  if (!response) return response.error();
  if (response->status >= 200 && response->status <= 299) return okStatus();
  if (!enabled && response->status == 404) return okStatus();
  Error error = apiError("PATCH", *path, *response);
  if (response->status == 404) error.code = ENOENT;
  return error;
}

}  // namespace

nlohmann::json redirectionPatch(bool enabled) {
  nlohmann::json value = enabled ? nlohmann::json(kRedirectionEnabled) : nlohmann::json(nullptr);
  return {{"metadata", {{"annotations", {{std::string(kRedirectionAnnotation), value}}}}}};
}

Result<std::string> podStatusPath(std::string_view namespace_name, std::string_view name) {
  if (!validName(namespace_name)) {
    return Error::invalid(fmt::format("bad namespace name {:?}", namespace_name));
  }
  if (!validName(name)) return Error::invalid(fmt::format("bad pod name {:?}", name));
  return fmt::format("/api/v1/namespaces/{}/pods/{}/status", namespace_name, name);
}

Status setRedirectionAnnotation(Client& client, std::string_view namespace_name,
                                std::string_view name) {
  return patchAnnotation(client, namespace_name, name, true);
}

Status removeRedirectionAnnotation(Client& client, std::string_view namespace_name,
                                   std::string_view name) {
  return patchAnnotation(client, namespace_name, name, false);
}

}  // namespace nodemesh::k8s
