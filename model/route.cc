#include "model/route.h"

namespace nodemesh::model {

std::string_view toString(StringMatchType type) {
  switch (type) {
    case StringMatchType::Exact:
      return "Exact";
    case StringMatchType::RegularExpression:
      return "RegularExpression";
  }
  return "?";
}

std::string_view toString(PathModifierType type) {
  switch (type) {
    case PathModifierType::ReplaceFullPath:
      return "ReplaceFullPath";
    case PathModifierType::ReplacePrefixMatch:
      return "ReplacePrefixMatch";
  }
  return "?";
}

std::string_view toString(FilterType type) {
  switch (type) {
    case FilterType::RequestHeaderModifier:
      return "RequestHeaderModifier";
    case FilterType::ResponseHeaderModifier:
      return "ResponseHeaderModifier";
    case FilterType::RequestMirror:
      return "RequestMirror";
    case FilterType::RequestRedirect:
      return "RequestRedirect";
    case FilterType::UrlRewrite:
      return "URLRewrite";
  }
  return "?";
}

std::string_view toString(PathMatchType type) {
  switch (type) {
    case PathMatchType::Exact:
      return "Exact";
    case PathMatchType::PathPrefix:
      return "PathPrefix";
    case PathMatchType::RegularExpression:
      return "RegularExpression";
  }
  return "?";
}

}  // namespace nodemesh::model
