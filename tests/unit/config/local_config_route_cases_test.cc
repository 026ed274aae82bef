// parseLocalConfig on Gateway API routes: a table of malformed routes, one problem each, with
// the line it must be reported at and part of its reason.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "config/local/local_config.h"
#include "tests/unit/config/local_config_test_util.h"

namespace nodemesh::config::local_config_test {
namespace {

using ::testing::HasSubstr;

// A valid HTTPRoute up to its spec (lines 1-5); cases add spec fields from line 6.
#define HTTP_ROUTE_HEAD                          \
  "httpRoutes:\n"                                \
  "- apiVersion: gateway.networking.k8s.io/v1\n" \
  "  kind: HTTPRoute\n"                          \
  "  metadata: {name: r, namespace: shop}\n"     \
  "  spec:\n"

// Lines 6-8: one rule with one match; cases add match fields (at 8) or rule fields (from 9).
#define HTTP_RULE_HEAD \
  HTTP_ROUTE_HEAD      \
  "    rules:\n"       \
  "    - matches:\n"   \
  "      - "

// A rule (line 7) whose fields start on line 7 after "- ".
#define HTTP_RULES HTTP_ROUTE_HEAD "    rules:\n    - "

#define GRPC_ROUTE_HEAD                          \
  "grpcRoutes:\n"                                \
  "- apiVersion: gateway.networking.k8s.io/v1\n" \
  "  kind: GRPCRoute\n"                          \
  "  metadata: {name: g, namespace: shop}\n"     \
  "  spec:\n"                                    \
  "    rules:\n"                                 \
  "    - "

struct RouteCase {
  std::string_view name;
  std::string_view yaml;
  int line;
  std::string_view reason;
};

const RouteCase kCases[] = {
    // The object frame.
    {"WrongApiVersion",
     "httpRoutes:\n- apiVersion: gateway.networking.k8s.io/v1beta1\n  kind: HTTPRoute\n"
     "  metadata: {name: r}\n  spec: {}\n",
     2,
     "unsupported apiVersion 'gateway.networking.k8s.io/v1beta1'; expected "
     "gateway.networking.k8s.io/v1"},
    {"KindInWrongList",
     "httpRoutes:\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: GRPCRoute\n"
     "  metadata: {name: r}\n  spec: {}\n",
     3, "kind 'GRPCRoute' in httpRoutes; expected HTTPRoute"},
    {"MissingName",
     "httpRoutes:\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n"
     "  metadata: {namespace: shop}\n  spec: {}\n",
     4, "missing required field 'name' in metadata"},
    {"EmptyName",
     "httpRoutes:\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n"
     "  metadata: {name: ''}\n  spec: {}\n",
     4, "a route needs a non-empty name"},
    {"DuplicateName",
     HTTP_ROUTE_HEAD "    rules: [{}]\n- apiVersion: gateway.networking.k8s.io/v1\n"
                     "  kind: HTTPRoute\n  metadata: {name: r, namespace: shop}\n  spec: {}\n",
     9, "duplicate HTTPRoute 'shop/r' (first defined at line 4)"},
    {"BadCreationTimestamp",
     "httpRoutes:\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n"
     "  metadata: {name: r, creationTimestamp: yesterday}\n  spec: {}\n",
     4, "'yesterday' is not an RFC 3339 time"},
    {"UnknownMetadataField",
     "httpRoutes:\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n"
     "  metadata: {name: r, nmespace: x}\n  spec: {}\n",
     4, "unknown field 'nmespace' in metadata (did you mean 'namespace'?)"},
    {"UnknownSpecField", HTTP_ROUTE_HEAD "    parentRef: []\n", 6,
     "unknown field 'parentRef' in HTTPRoute spec (did you mean 'parentRefs'?)"},
    {"EmptyRules", HTTP_ROUTE_HEAD "    rules: []\n", 6, "an HTTPRoute needs at least one rule"},
    // parentRefs and hostnames.
    {"ParentRefToAPod", HTTP_ROUTE_HEAD "    parentRefs: [{group: '', kind: Pod, name: x}]\n", 6,
     "unsupported parentRef group '' kind 'Pod'; a mesh route attaches to a Service"},
    {"ParentRefPortZero",
     HTTP_ROUTE_HEAD "    parentRefs: [{group: '', kind: Service, name: x, port: 0}]\n", 6,
     "port 0 out of range (1-65535)"},
    {"ParentRefBadSectionName",
     HTTP_ROUTE_HEAD "    parentRefs: [{group: '', kind: Service, name: x, sectionName: HTTP}]\n",
     6, "invalid sectionName: 'HTTP' is not a lowercase DNS name"},
    {"UppercaseHostname", HTTP_ROUTE_HEAD "    hostnames: [Cart.Example]\n", 6,
     "invalid hostname: 'Cart.Example' is not a lowercase RFC 1123 hostname"},
    {"IpHostname", HTTP_ROUTE_HEAD "    hostnames: ['10.0.0.1']\n", 6,
     "an IP address is not a hostname"},
    {"WildcardInTheMiddle", HTTP_ROUTE_HEAD "    hostnames: ['a.*.example']\n", 6,
     "invalid hostname"},
    // Matches.
    {"UnknownPathType", HTTP_RULE_HEAD "path: {type: Prefix, value: /a}\n", 8,
     "invalid path match type 'Prefix'; expected one of: Exact, PathPrefix, RegularExpression"},
    {"RelativePath", HTTP_RULE_HEAD "path: {value: a}\n", 8, "invalid path: must start with '/'"},
    {"DoubleSlashPath", HTTP_RULE_HEAD "path: {type: Exact, value: /a//b}\n", 8,
     "must not contain '//'"},
    {"EncodedSlashPath", HTTP_RULE_HEAD "path: {value: /a%2Fb}\n", 8, "must not contain '%2F'"},
    {"DotDotPath", HTTP_RULE_HEAD "path: {value: /a/..}\n", 8, "must not end with '/.' or '/..'"},
    {"BadPathRegex", HTTP_RULE_HEAD "path: {type: RegularExpression, value: '/a(['}\n", 8,
     "invalid path: not an RE2 regular expression"},
    {"BadHeaderRegex",
     HTTP_RULE_HEAD "headers: [{type: RegularExpression, name: x-v, value: '('}]\n", 8,
     "invalid value: not an RE2 regular expression"},
    {"UnknownHeaderMatchType", HTTP_RULE_HEAD "headers: [{type: Prefix, name: x, value: v}]\n", 8,
     "invalid header match type 'Prefix'; expected one of: Exact, RegularExpression"},
    {"DuplicateHeaderName",
     HTTP_RULE_HEAD
     "headers:\n        - {name: X-A, value: '1'}\n        - {name: x-a, value: '2'}\n",
     10, "duplicate header match name 'x-a' (first at line 9)"},
    {"BadHeaderName", HTTP_RULE_HEAD "headers: [{name: 'x a', value: v}]\n", 8,
     "'x a' is not an HTTP header name"},
    {"PseudoHeaderName", HTTP_RULE_HEAD "headers: [{name: ':path', value: /}]\n", 8,
     "is not an HTTP header name"},
    {"EmptyHeaderValue", HTTP_RULE_HEAD "headers: [{name: x, value: ''}]\n", 8,
     "value must be 1 to 4096 characters"},
    {"HeaderWithoutValue", HTTP_RULE_HEAD "headers: [{name: x}]\n", 8,
     "missing required field 'value' in header match"},
    {"EmptyQueryValue", HTTP_RULE_HEAD "queryParams: [{name: q, value: ''}]\n", 8,
     "value must be 1 to 1024 characters"},
    {"DuplicateQueryParam",
     HTTP_RULE_HEAD "queryParams: [{name: q, value: a}, {name: q, value: b}]\n", 8,
     "duplicate query param match name 'q'"},
    {"UnknownMethod", HTTP_RULE_HEAD "method: FETCH\n", 8,
     "invalid method 'FETCH'; expected one of: GET, HEAD, POST"},
    {"LowercaseMethod", HTTP_RULE_HEAD "method: get\n", 8, "invalid method 'get'"},
    {"UnknownMatchField", HTTP_RULE_HEAD "host: a\n", 8, "unknown field 'host' in HTTPRoute match"},
    // Backends.
    {"WeightTooLarge", HTTP_RULES "backendRefs: [{name: cart, port: 80, weight: 1000001}]\n", 7,
     "1000001 out of range (0-1000000)"},
    {"NegativeWeight", HTTP_RULES "backendRefs: [{name: cart, port: 80, weight: -1}]\n", 7,
     "-1 out of range"},
    {"BackendWithoutPort", HTTP_RULES "backendRefs: [{name: cart}]\n", 7,
     "a backendRef to a Service needs a port"},
    {"BackendOfAnotherKind",
     HTTP_RULES "backendRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: c, "
                "port: 80}]\n",
     7, "unsupported backend group 'multicluster.x-k8s.io' kind 'ServiceImport'"},
    {"BackendWithoutName", HTTP_RULES "backendRefs: [{port: 80}]\n", 7,
     "missing required field 'name' in backendRef"},
    // Filters.
    {"UnknownFilterType", HTTP_RULES "filters: [{type: CORS}]\n", 7,
     "invalid HTTPRoute filter type 'CORS'; expected one of: RequestHeaderModifier"},
    {"ExtensionRefFilter",
     HTTP_RULES "filters: [{type: ExtensionRef, extensionRef: {group: x, kind: y, name: z}}]\n", 7,
     "ExtensionRef filters are not supported"},
    {"FilterWithoutItsField", HTTP_RULES "filters: [{type: RequestHeaderModifier}]\n", 7,
     "filter of type RequestHeaderModifier needs 'requestHeaderModifier'"},
    {"FilterWithAnotherField",
     HTTP_RULES "filters: [{type: URLRewrite, urlRewrite: {}, requestRedirect: {}}]\n", 7,
     "'requestRedirect' is only allowed in a filter of its own type, not URLRewrite"},
    {"RepeatedHeaderModifier",
     HTTP_RULES "filters:\n      - {type: RequestHeaderModifier, requestHeaderModifier: {}}\n"
                "      - {type: RequestHeaderModifier, requestHeaderModifier: {}}\n",
     9, "RequestHeaderModifier filter cannot be repeated"},
    {"RedirectAndRewrite",
     HTTP_RULES "filters:\n      - {type: RequestRedirect, requestRedirect: {}}\n"
                "      - {type: URLRewrite, urlRewrite: {}}\n",
     9, "RequestRedirect and URLRewrite filters cannot be combined"},
    {"RedirectWithBackends",
     HTTP_RULES "filters: [{type: RequestRedirect, requestRedirect: {}}]\n"
                "      backendRefs: [{name: cart, port: 80}]\n",
     7, "RequestRedirect filter must not be used together with backendRefs"},
    {"RedirectStatus305",
     HTTP_RULES "filters: [{type: RequestRedirect, requestRedirect: {statusCode: 305}}]\n", 7,
     "invalid redirect statusCode '305'; expected one of: 301, 302, 303, 307, 308"},
    {"RedirectSchemeFtp",
     HTTP_RULES "filters: [{type: RequestRedirect, requestRedirect: {scheme: ftp}}]\n", 7,
     "invalid scheme 'ftp'; expected one of: http, https"},
    {"RedirectWildcardHostname",
     HTTP_RULES "filters: [{type: RequestRedirect, requestRedirect: {hostname: '*.a.b'}}]\n", 7,
     "invalid hostname"},
    {"RedirectPortZero",
     HTTP_RULES "filters: [{type: RequestRedirect, requestRedirect: {port: 0}}]\n", 7,
     "port 0 out of range"},
    {"PrefixReplaceWithExactMatch",
     HTTP_RULES "matches: [{path: {type: Exact, value: /a}}]\n"
                "      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, "
                "replacePrefixMatch: /b}}}]\n",
     7, "a ReplacePrefixMatch path modifier needs exactly one match, of type PathPrefix"},
    {"PrefixReplaceWithTwoMatches",
     HTTP_RULES "matches: [{path: {value: /a}}, {path: {value: /b}}]\n"
                "      filters: [{type: RequestRedirect, requestRedirect: {path: {type: "
                "ReplacePrefixMatch, replacePrefixMatch: /c}}}]\n",
     7, "needs exactly one match"},
    {"PathModifierWrongField",
     HTTP_RULES "filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, "
                "replacePrefixMatch: /x}}}]\n",
     7, "'replacePrefixMatch' is not allowed with type ReplaceFullPath"},
    {"PathModifierWithoutValue",
     HTTP_RULES "filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch}}}]\n",
     7, "replacePrefixMatch must be specified when type is ReplacePrefixMatch"},
    {"PathModifierUnknownType",
     HTTP_RULES "filters: [{type: URLRewrite, urlRewrite: {path: {type: Replace}}}]\n", 7,
     "invalid path modifier type 'Replace'"},
    {"TwoActionsOnOneHeader",
     HTTP_RULES "filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: "
                "x-a, value: '1'}], remove: [X-A]}}]\n",
     7, "header 'X-A' already has an action (set); one action per header name"},
    {"HeaderModifierBadName",
     HTTP_RULES "filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: "
                "'a b', value: '1'}]}}]\n",
     7, "invalid header name"},
    {"MirrorPercentAndFraction",
     HTTP_RULES "filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
                "percent: 5, fraction: {numerator: 1}}}]\n",
     7, "only one of percent or fraction may be specified"},
    {"MirrorPercentOver100",
     HTTP_RULES "filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
                "percent: 101}}]\n",
     7, "101 out of range (0-100)"},
    {"MirrorFractionAboveOne",
     HTTP_RULES "filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
                "fraction: {numerator: 3, denominator: 2}}}]\n",
     7, "numerator must be less than or equal to denominator"},
    {"MirrorZeroDenominator",
     HTTP_RULES "filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
                "fraction: {numerator: 0, denominator: 0}}}]\n",
     7, "0 out of range (1-2147483647)"},
    {"MirrorWithoutBackend", HTTP_RULES "filters: [{type: RequestMirror, requestMirror: {}}]\n", 7,
     "missing required field 'backendRef' in requestMirror"},
    // Rules and timeouts.
    {"DurationWithoutUnit", HTTP_RULES "timeouts: {request: '10'}\n", 7,
     "invalid duration: '10' is not a duration"},
    {"DurationWithDays", HTTP_RULES "timeouts: {backendRequest: 1d}\n", 7,
     "invalid duration: '1d' is not a duration"},
    {"BackendTimeoutLongerThanRequest", HTTP_RULES "timeouts: {request: 1s, backendRequest: 2s}\n",
     7, "backendRequest timeout cannot be longer than request timeout"},
    {"DuplicateRuleName", HTTP_ROUTE_HEAD "    rules: [{name: a}, {name: a}]\n", 6,
     "rule name 'a' must be unique within the route"},
    {"BadRuleName", HTTP_RULES "name: Rule_1\n", 7, "invalid rule name"},
    {"RetryCodeOutOfRange", HTTP_RULES "retry: {codes: [503, 302]}\n", 7,
     "a retry code must be between 400 and 599, not 302"},
    {"RetryCodeNotANumber", HTTP_RULES "retry: {codes: [5xx]}\n", 7, "5xx"},
    {"RetryTooManyAttempts", HTTP_RULES "retry: {attempts: 11}\n", 7,
     "retry attempts must be between 0 and 10, not 11"},
    {"RetryNegativeAttempts", HTTP_RULES "retry: {attempts: -1}\n", 7, "-1"},
    {"RetryBadBackoff", HTTP_RULES "retry: {backoff: fast}\n", 7,
     "invalid duration: 'fast' is not a duration"},
    {"RetryUnknownField", HTTP_RULES "retry: {perTryTimeout: 1s}\n", 7,
     "unknown field 'perTryTimeout' in retry"},
    // GRPCRoute.
    {"GrpcKindInWrongList",
     "grpcRoutes:\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n"
     "  metadata: {name: g}\n  spec: {}\n",
     3, "kind 'HTTPRoute' in grpcRoutes; expected GRPCRoute"},
    {"GrpcMethodWithoutNames", GRPC_ROUTE_HEAD "matches: [{method: {type: Exact}}]\n", 7,
     "one or both of 'service' or 'method' must be specified"},
    {"GrpcBadServiceName", GRPC_ROUTE_HEAD "matches: [{method: {service: 'foo bar'}}]\n", 7,
     "invalid service: 'foo bar' is not a gRPC service name"},
    {"GrpcBadMethodName", GRPC_ROUTE_HEAD "matches: [{method: {method: Get/Item}}]\n", 7,
     "invalid method: 'Get/Item' is not a gRPC method name"},
    {"GrpcBadMethodRegex",
     GRPC_ROUTE_HEAD "matches: [{method: {type: RegularExpression, method: '('}}]\n", 7,
     "invalid method: not an RE2 regular expression"},
    {"GrpcUnknownMethodType", GRPC_ROUTE_HEAD "matches: [{method: {type: Prefix, service: a}}]\n",
     7, "invalid gRPC method match type 'Prefix'"},
    {"GrpcRedirectFilter",
     GRPC_ROUTE_HEAD "filters: [{type: RequestRedirect, requestRedirect: {}}]\n", 7,
     "invalid GRPCRoute filter type 'RequestRedirect'; expected one of: RequestHeaderModifier, "
     "ResponseHeaderModifier, RequestMirror"},
    {"GrpcPathMatch", GRPC_ROUTE_HEAD "matches: [{path: {value: /}}]\n", 7,
     "unknown field 'path' in GRPCRoute match"},
    {"GrpcTimeouts", GRPC_ROUTE_HEAD "timeouts: {request: 1s}\n", 7,
     "unknown field 'timeouts' in GRPCRoute rule"},
    {"GrpcWeightTooLarge", GRPC_ROUTE_HEAD "backendRefs: [{name: a, port: 9, weight: 2000000}]\n",
     7, "2000000 out of range (0-1000000)"},
};

class BadRouteTest : public ::testing::TestWithParam<RouteCase> {};

TEST_P(BadRouteTest, IsRejectedWithLineAndReason) {
  const RouteCase& c = GetParam();
  LoadResult r = parseLocalConfig(c.yaml, "mesh.yaml");
  ASSERT_FALSE(r.ok()) << c.yaml;
  EXPECT_EQ(r.snapshot, nullptr);
  ASSERT_EQ(r.problems.size(), 1u) << allProblems(r);
  EXPECT_EQ(r.problems[0].file, "mesh.yaml");
  EXPECT_EQ(r.problems[0].line, c.line) << allProblems(r);
  EXPECT_THAT(r.problems[0].reason, HasSubstr(std::string(c.reason))) << allProblems(r);
}

std::string caseName(const ::testing::TestParamInfo<RouteCase>& info) {
  return std::string(info.param.name);
}

INSTANTIATE_TEST_SUITE_P(Cases, BadRouteTest, ::testing::ValuesIn(kCases), caseName);

}  // namespace
}  // namespace nodemesh::config::local_config_test
