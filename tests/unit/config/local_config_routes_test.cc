// parseLocalConfig on Gateway API routes: every field reaches the model with the API's defaults,
// kubectl output loads, and the warnings for references that cannot work.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "config/local/local_config.h"
#include "tests/unit/config/local_config_test_util.h"

namespace nodemesh::config::local_config_test {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

const char* const kEveryHttpField = R"(
services:
- {name: cart, namespace: shop, hostname: cart.shop.svc.cluster.local, vips: ['/10.96.0.20'], ports: {80: 8080}}
- {name: cart-v2, namespace: shop, hostname: cart-v2.shop.svc.cluster.local, vips: ['/10.96.0.21'], ports: {80: 8080}}
httpRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata:
    name: cart
    namespace: shop
    creationTimestamp: "2024-05-01T10:00:00Z"
    labels: {app: cart}
    resourceVersion: "42"
  spec:
    parentRefs:
    - {group: "", kind: Service, name: cart, port: 80, sectionName: "80"}
    - {group: "", kind: Service, namespace: shop, name: cart-v2}
    hostnames: [cart.shop.svc.cluster.local, "*.example.com"]
    rules:
    - name: v2-canary
      matches:
      - path: {type: PathPrefix, value: /api}
        headers:
        - {name: X-Canary, value: "yes"}
        - {type: RegularExpression, name: user-agent, value: ".*curl.*"}
        queryParams:
        - {name: debug, value: "1"}
        - {type: RegularExpression, name: v, value: "[0-9]+"}
        method: POST
      - path: {type: Exact, value: /exact}
      - path: {type: RegularExpression, value: "/items/[0-9]+"}
      - headers: [{name: x-only, value: a}]
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: x-set, value: s}]
          add: [{name: x-add, value: a}]
          remove: [x-remove]
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-served-by, value: nodemesh}]}
      - type: RequestMirror
        requestMirror: {backendRef: {name: cart-v2, port: 80}, percent: 25}
      - type: RequestMirror
        requestMirror: {backendRef: {name: cart-v2, port: 80}, fraction: {numerator: 1}}
      - type: RequestMirror
        requestMirror: {backendRef: {name: cart-v2, port: 80}}
      backendRefs:
      - {name: cart, port: 80, weight: 90}
      - name: cart-v2
        namespace: shop
        port: 80
        weight: 10
        filters:
        - type: URLRewrite
          urlRewrite: {hostname: cart-v2.internal, path: {type: ReplaceFullPath, replaceFullPath: /v2/api}}
      - {group: "", kind: Service, name: cart, port: 80}
      timeouts: {request: 1m30s, backendRequest: 500ms}
      retry: {codes: [500, 502, 500], attempts: 3, backoff: 100ms}
    - matches: [{path: {value: /old}}]
      filters:
      - type: RequestRedirect
        requestRedirect:
          scheme: https
          hostname: new.example.com
          path: {type: ReplaceFullPath, replaceFullPath: /new}
          port: 8443
          statusCode: 301
    - filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: ""}}}]
      backendRefs: [{name: cart, port: 80, weight: 0}]
  status:
    parents: []
)";

TEST(LocalConfigRoutesTest, EveryHttpRouteFieldLoads) {
  LoadResult r = parseLocalConfig(kEveryHttpField, "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  EXPECT_TRUE(r.warnings.empty()) << r.warnings[0].toString();
  ASSERT_EQ(r.snapshot->httpRoutes().size(), 1u);
  EXPECT_EQ(r.snapshot->summary(), "0 workloads, 2 services, 0 policies, 1 route");
  const model::HttpRoute& route = r.snapshot->httpRoutes()[0];
  EXPECT_EQ(route.key(), "shop/cart");
  ASSERT_TRUE(route.metadata.creation_timestamp);
  EXPECT_EQ(route.metadata.creation_timestamp->time_since_epoch(), 1714557600s);

  ASSERT_EQ(route.parent_refs.size(), 2u);
  EXPECT_TRUE(route.parent_refs[0].isService());
  EXPECT_EQ(route.parent_refs[0].port, 80);
  EXPECT_EQ(route.parent_refs[0].section_name, "80");
  EXPECT_EQ(route.parent_refs[0].namespace_name, std::nullopt);
  EXPECT_EQ(route.parent_refs[1].namespace_name, "shop");
  EXPECT_EQ(route.hostnames,
            (std::vector<std::string>{"cart.shop.svc.cluster.local", "*.example.com"}));
  ASSERT_EQ(route.rules.size(), 3u);

  const model::HttpRouteRule& rule = route.rules[0];
  EXPECT_EQ(rule.name, "v2-canary");
  ASSERT_EQ(rule.matches.size(), 4u);
  const model::HttpRouteMatch& m = rule.matches[0];
  EXPECT_EQ(m.path, (model::PathMatch{model::PathMatchType::PathPrefix, "/api"}));
  ASSERT_EQ(m.headers.size(), 2u);
  EXPECT_EQ(m.headers[0], (model::HeaderMatch{model::StringMatchType::Exact, "X-Canary", "yes"}));
  EXPECT_EQ(m.headers[1].type, model::StringMatchType::RegularExpression);
  ASSERT_EQ(m.query_params.size(), 2u);
  EXPECT_EQ(m.query_params[1].value, "[0-9]+");
  EXPECT_EQ(m.method, "POST");
  EXPECT_EQ(rule.matches[1].path.type, model::PathMatchType::Exact);
  EXPECT_EQ(rule.matches[2].path.type, model::PathMatchType::RegularExpression);
  // A match without a path gets the API's default, PathPrefix "/".
  EXPECT_EQ(rule.matches[3].path, (model::PathMatch{model::PathMatchType::PathPrefix, "/"}));

  ASSERT_EQ(rule.filters.size(), 5u);
  const auto& request_headers = std::get<model::HeaderModifier>(rule.filters[0].config);
  EXPECT_EQ(request_headers.set, (std::vector<model::HttpHeader>{{"x-set", "s"}}));
  EXPECT_EQ(request_headers.add, (std::vector<model::HttpHeader>{{"x-add", "a"}}));
  EXPECT_EQ(request_headers.remove, (std::vector<std::string>{"x-remove"}));
  EXPECT_EQ(rule.filters[1].type, model::FilterType::ResponseHeaderModifier);
  const auto& percent = std::get<model::RequestMirror>(rule.filters[2].config);
  EXPECT_EQ(percent.backend.name, "cart-v2");
  EXPECT_EQ(percent.backend.port, 80);
  EXPECT_EQ(percent.numerator, 25u);
  EXPECT_EQ(percent.denominator, 100u);
  const auto& fraction = std::get<model::RequestMirror>(rule.filters[3].config);
  EXPECT_EQ(fraction.numerator, 1u);
  EXPECT_EQ(fraction.denominator, 100u);  // the API's default denominator
  const auto& all = std::get<model::RequestMirror>(rule.filters[4].config);
  EXPECT_EQ(all.numerator, all.denominator);  // neither percent nor fraction: every request

  ASSERT_EQ(rule.backend_refs.size(), 3u);
  EXPECT_EQ(rule.backend_refs[0].weight, 90u);
  EXPECT_EQ(rule.backend_refs[0].ref.kind, "Service");
  EXPECT_EQ(rule.backend_refs[0].ref.group, "");
  EXPECT_EQ(rule.backend_refs[1].ref.namespace_name, "shop");
  ASSERT_EQ(rule.backend_refs[1].filters.size(), 1u);
  const auto& rewrite = std::get<model::UrlRewrite>(rule.backend_refs[1].filters[0].config);
  EXPECT_EQ(rewrite.hostname, "cart-v2.internal");
  EXPECT_EQ(rewrite.path,
            (model::PathModifier{model::PathModifierType::ReplaceFullPath, "/v2/api"}));
  EXPECT_EQ(rule.backend_refs[2].weight, 1u);  // the API's default weight
  EXPECT_EQ(rule.timeouts.request, 90s);
  EXPECT_EQ(rule.timeouts.backend_request, 500ms);
  ASSERT_TRUE(rule.retry);
  EXPECT_EQ(rule.retry->codes, (std::vector<int>{500, 502}));  // repeated codes once
  EXPECT_EQ(rule.retry->attempts, 3u);
  EXPECT_EQ(rule.retry->backoff, 100ms);
  EXPECT_FALSE(route.rules[1].retry);  // no retry: the waypoint's default applies

  const auto& redirect = std::get<model::RequestRedirect>(route.rules[1].filters[0].config);
  EXPECT_EQ(redirect.scheme, "https");
  EXPECT_EQ(redirect.hostname, "new.example.com");
  EXPECT_EQ(redirect.path, (model::PathModifier{model::PathModifierType::ReplaceFullPath, "/new"}));
  EXPECT_EQ(redirect.port, 8443);
  EXPECT_EQ(redirect.status_code, 301);
  // A rule without matches gets one PathPrefix "/" match, so ReplacePrefixMatch is allowed; an
  // empty prefix replacement is valid.
  ASSERT_EQ(route.rules[2].matches.size(), 1u);
  EXPECT_EQ(route.rules[2].matches[0].path.value, "/");
  EXPECT_EQ(route.rules[2].backend_refs[0].weight, 0u);
  EXPECT_EQ(std::get<model::UrlRewrite>(route.rules[2].filters[0].config).path,
            (model::PathModifier{model::PathModifierType::ReplacePrefixMatch, ""}));
}

TEST(LocalConfigRoutesTest, HttpRouteDefaults) {
  LoadResult r = parseLocalConfig(
      "httpRoutes:\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n"
      "  metadata: {name: r}\n  spec:\n    parentRefs: [{name: gw}]\n    rules:\n"
      "    - filters: [{type: RequestRedirect, requestRedirect: {}}]\n",
      "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  const model::HttpRoute& route = r.snapshot->httpRoutes()[0];
  EXPECT_EQ(route.metadata.namespace_name, "default");  // as kubectl would put it
  EXPECT_FALSE(route.metadata.creation_timestamp);
  // parentRefs default to a Gateway, which the waypoint ignores with a warning.
  EXPECT_EQ(route.parent_refs[0].group, "gateway.networking.k8s.io");
  EXPECT_EQ(route.parent_refs[0].kind, "Gateway");
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].line, 6);
  EXPECT_THAT(r.warnings[0].reason, HasSubstr("parentRef to Gateway 'gw' is ignored"));
  const auto& redirect = std::get<model::RequestRedirect>(route.rules[0].filters[0].config);
  EXPECT_EQ(redirect.status_code, 302);
  EXPECT_FALSE(redirect.scheme);
}

TEST(LocalConfigRoutesTest, HttpRouteWithoutRulesGetsTheDefaultRule) {
  LoadResult r = parseLocalConfig(
      "httpRoutes:\n- {apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, "
      "metadata: {name: r, namespace: s}, spec: {}}\n",
      "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  const model::HttpRoute& route = r.snapshot->httpRoutes()[0];
  ASSERT_EQ(route.rules.size(), 1u);
  ASSERT_EQ(route.rules[0].matches.size(), 1u);
  EXPECT_EQ(route.rules[0].matches[0].path.value, "/");
  EXPECT_TRUE(route.rules[0].backend_refs.empty());
}

TEST(LocalConfigRoutesTest, EveryGrpcRouteFieldLoads) {
  LoadResult r = parseLocalConfig(R"(
grpcRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: GRPCRoute
  metadata: {name: greeter, namespace: shop, creationTimestamp: "2024-05-01T12:00:00+02:00"}
  spec:
    parentRefs: [{group: "", kind: Service, name: greeter, port: 9090}]
    hostnames: [greeter.shop]
    rules:
    - name: hello
      matches:
      - method: {service: helloworld.Greeter, method: SayHello}
        headers: [{name: x-tenant, value: a}, {type: RegularExpression, name: x-v, value: "v[12]"}]
      - method: {type: RegularExpression, service: "helloworld\\..*"}
      - method: {method: Ping}
      - headers: [{name: x-only, value: b}]
      filters:
      - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: "1"}]}}
      - {type: ResponseHeaderModifier, responseHeaderModifier: {remove: [x-b]}}
      - {type: RequestMirror, requestMirror: {backendRef: {name: greeter-shadow, port: 9090}, percent: 10}}
      backendRefs:
      - name: greeter
        port: 9090
        weight: 3
        filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-c, value: "2"}]}}]
    - backendRefs: [{name: greeter, port: 9090}]
)",
                                  "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  ASSERT_EQ(r.snapshot->grpcRoutes().size(), 1u);
  const model::GrpcRoute& route = r.snapshot->grpcRoutes()[0];
  EXPECT_EQ(route.metadata.creation_timestamp->time_since_epoch(), 1714557600s);  // 10:00Z
  EXPECT_EQ(route.parent_refs[0].port, 9090);
  EXPECT_EQ(route.hostnames, std::vector<std::string>{"greeter.shop"});
  ASSERT_EQ(route.rules.size(), 2u);
  const model::GrpcRouteRule& rule = route.rules[0];
  EXPECT_EQ(rule.name, "hello");
  ASSERT_EQ(rule.matches.size(), 4u);
  EXPECT_EQ(rule.matches[0].method, (model::GrpcMethodMatch{model::StringMatchType::Exact,
                                                            "helloworld.Greeter", "SayHello"}));
  EXPECT_EQ(rule.matches[0].headers.size(), 2u);
  EXPECT_EQ(rule.matches[1].method->type, model::StringMatchType::RegularExpression);
  EXPECT_EQ(rule.matches[1].method->method, "");
  EXPECT_EQ(rule.matches[2].method->service, "");
  EXPECT_FALSE(rule.matches[3].method);
  ASSERT_EQ(rule.filters.size(), 3u);
  EXPECT_EQ(std::get<model::RequestMirror>(rule.filters[2].config).numerator, 10u);
  EXPECT_EQ(rule.backend_refs[0].weight, 3u);
  EXPECT_EQ(rule.backend_refs[0].filters.size(), 1u);
  EXPECT_TRUE(route.rules[1].matches.empty());  // matches every gRPC request
  // The parentRef, backend and mirror services are not in the file: warnings, not problems.
  EXPECT_EQ(r.warnings.size(), 4u);
}

TEST(LocalConfigRoutesTest, KubectlOutputLoads) {
  LoadResult r = parseLocalConfig(R"(
httpRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata:
    annotations: {kubectl.kubernetes.io/last-applied-configuration: "{}"}
    creationTimestamp: "2024-05-01T10:00:00Z"
    generation: 1
    name: cart
    namespace: shop
    resourceVersion: "1234"
    uid: 0b6f6f1c-0000-4000-8000-000000000000
    managedFields: [{manager: kubectl, operation: Update}]
  spec:
    parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
    rules:
    - backendRefs: [{group: "", kind: Service, name: cart, port: 80, weight: 1}]
      matches: [{path: {type: PathPrefix, value: /}}]
  status:
    parents:
    - conditions: [{type: Accepted, status: "True"}]
      controllerName: istio.io/gateway-controller
      parentRef: {group: "", kind: Service, name: cart, port: 80}
)",
                                  "mesh.yaml");
  EXPECT_TRUE(r.ok()) << allProblems(r);
}

TEST(LocalConfigRoutesTest, SameNameInAnotherNamespaceOrKindIsNoDuplicate) {
  auto route = [](const char* ns) {
    return fmt::format(
        "{{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: "
        "{{name: r, namespace: {}}}, spec: {{}}}}",
        ns);
  };
  std::string a = route("a");
  std::string b = route("b");
  LoadResult r =
      parseLocalConfig("httpRoutes: [" + a + ", " + b +
                           "]\ngrpcRoutes: [{apiVersion: gateway.networking.k8s.io/v1, "
                           "kind: GRPCRoute, metadata: {name: r, namespace: a}, spec: {}}]\n",
                       "mesh.yaml");
  EXPECT_TRUE(r.ok()) << allProblems(r);
}

TEST(LocalConfigRoutesTest, ReportsEveryRouteProblemInFileOrder) {
  LoadResult r = parseLocalConfig(R"(httpRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: r}
  spec:
    rules:
    - matches: [{method: FETCH}]
      backendRefs: [{name: a, port: 80, weight: 2000000}]
- apiVersion: v1
  kind: HTTPRoute
  metadata: {name: s}
  spec: {}
)",
                                  "mesh.yaml");
  ASSERT_EQ(r.problems.size(), 3u) << allProblems(r);
  EXPECT_EQ(r.problems[0].line, 7);
  EXPECT_EQ(r.problems[1].line, 8);
  EXPECT_EQ(r.problems[2].line, 9);
  EXPECT_THAT(r.problems[2].toString(), HasSubstr("mesh.yaml:9: httpRoutes[1].apiVersion:"));
}

TEST(LocalConfigRoutesTest, MissingBackendServiceIsAWarning) {
  LoadResult r = parseLocalConfig(
      "httpRoutes:\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n"
      "  metadata: {name: r, namespace: shop}\n  spec:\n    rules:\n"
      "    - backendRefs: [{name: nowhere, port: 80}]\n",
      "mesh.yaml");
  ASSERT_TRUE(r.ok()) << allProblems(r);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].line, 7);
  EXPECT_THAT(
      r.warnings[0].reason,
      HasSubstr("route references service 'shop/nowhere', which this file does not define"));
}

}  // namespace
}  // namespace nodemesh::config::local_config_test
