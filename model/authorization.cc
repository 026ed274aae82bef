#include "model/authorization.h"

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

bool Match::empty() const {
  return l4Empty() && l7_fields.empty();
}

bool Match::l4Empty() const {
  return namespaces.empty() && not_namespaces.empty() && service_accounts.empty() &&
         not_service_accounts.empty() && principals.empty() && not_principals.empty() &&
         source_ips.empty() && not_source_ips.empty() && destination_ips.empty() &&
         not_destination_ips.empty() && destination_ports.empty() && not_destination_ports.empty();
}

}  // namespace nodemesh::model
