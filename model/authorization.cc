#include "model/authorization.h"

#include <algorithm>

namespace nodemesh::model {

std::string_view toString(PolicyScope scope) {
  switch (scope) {
    case PolicyScope::Global:
      return "Global";
    case PolicyScope::Namespace:
      return "Namespace";
    case PolicyScope::WorkloadSelector:
      return "WorkloadSelector";
  }
  return "unknown";
}

std::string_view toString(PolicyAction action) {
  switch (action) {
    case PolicyAction::Allow:
      return "Allow";
    case PolicyAction::Deny:
      return "Deny";
  }
  return "unknown";
}

bool StringMatch::matches(std::string_view candidate) const {
  switch (kind) {
    case Kind::Exact:
      return candidate == value;
    case Kind::Prefix:
      return candidate.starts_with(value);
    case Kind::Suffix:
      return candidate.ends_with(value);
    case Kind::Presence:
      return !candidate.empty();
  }
  return false;
}

std::string StringMatch::toString() const {
  switch (kind) {
    case Kind::Exact:
      return "Exact(" + value + ")";
    case Kind::Prefix:
      return "Prefix(" + value + ")";
    case Kind::Suffix:
      return "Suffix(" + value + ")";
    case Kind::Presence:
      return "Presence()";
  }
  return "unknown";
}

StringMatch istioStringMatch(std::string_view text) {
  if (text == "*") return StringMatch::presence();
  if (text.size() > 1 && text.back() == '*') {
    return StringMatch::prefix(std::string(text.substr(0, text.size() - 1)));
  }
  if (text.size() > 1 && text.front() == '*')
    return StringMatch::suffix(std::string(text.substr(1)));
  return StringMatch::exact(std::string(text));
}

bool Condition::isL7() const {
  switch (key) {
    case Key::kRequestHeader:
    case Key::kAuthPrincipal:
    case Key::kAuthAudiences:
    case Key::kAuthPresenter:
    case Key::kAuthClaim:
      return true;
    default:
      return false;
  }
}

bool Match::empty() const {
  return l4Empty() && l7_fields.empty();
}

bool Match::l4Empty() const {
  return namespaces.empty() && not_namespaces.empty() && service_accounts.empty() &&
         not_service_accounts.empty() && principals.empty() && not_principals.empty() &&
         source_ips.empty() && not_source_ips.empty() && destination_ips.empty() &&
         not_destination_ips.empty() && destination_ports.empty() &&
         not_destination_ports.empty() &&
         std::none_of(when.begin(), when.end(), [](const Condition& c) { return !c.isL7(); });
}

}  // namespace nodemesh::model
