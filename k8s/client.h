#pragma once

// A small Kubernetes API client: GET, JSON merge-PATCH and streaming watch over HTTPS with a
// bearer token. Debian ships no maintained C++ Kubernetes client (the official C client is not
// packaged and pulls libwebsockets and libyaml; the C++ ones are unmaintained), and the agent
// needs four calls, so this is a thin layer on cpp-httplib (Debian's libcpp-httplib, built with
// OpenSSL), which the admin server already uses.
//
// Each request opens its own TLS connection: the agent makes a list per informer start and a
// patch per enrolled pod, so connection reuse buys nothing, and separate connections make the
// client safe to use from several threads at once (the informers' threads and the agent's loop).

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace httplib {
class ClientImpl;
}  // namespace httplib

namespace nodemesh::k8s {

struct ClientConfig {
  std::string server;      // "https://host:port" ("https://[fd00::1]:6443" for IPv6)
  std::string ca_file;     // PEM bundle that signs the API server's certificate
  std::string token_file;  // bearer token; read again for each request (projected tokens rotate)
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{30000};  // read/write timeout of GET and PATCH
};

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// The in-cluster configuration of a pod: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT from
// the environment and the service account's token and ca.crt under `service_account_dir`.
// Fails, saying what is missing, outside a pod.
Result<ClientConfig> inClusterConfig(const std::string& service_account_dir = kServiceAccountDir);

// What the API server answered. Statuses other than 2xx are not errors at this level: the
// caller decides (the informer relists on 410).
struct Response {
  int status = 0;
  std::string body;  // for a watch: the body of a refused watch only
};

// "GET /api/v1/pods: 410 Gone: too old resource version: 5 (9)": the status code, and the
// message of the API's Status object when the body is one.
Error apiError(std::string_view method, std::string_view path, const Response& response);

// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
std::string queryEscape(std::string_view value);

class Client {
 public:
  // Checks the server URL and that the CA and token files can be read now.
  static Result<std::unique_ptr<Client>> create(ClientConfig config);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&&) = delete;
  Client& operator=(Client&&) = delete;

  // `path` is the request target with its query ("/api/v1/pods?limit=500"). Errors are
  // transport failures only (connection, TLS, timeouts, a token file that cannot be read).
  Result<Response> get(const std::string& path);
  // GET that expects 2xx and a JSON body: any other answer is an error (apiError's message).
  Result<nlohmann::json> getJson(const std::string& path);
  // PATCH with Content-Type application/merge-patch+json (RFC 7386).
  Result<Response> mergePatch(const std::string& path, const nlohmann::json& patch);

  // Streams a watch: calls `on_line` with each newline-terminated line of the body (one JSON
  // event each) as it arrives, until the server ends the stream (its timeoutSeconds), `on_line`
  // returns false, no byte arrives for `idle_timeout`, or shutdown(). Returns the HTTP status
  // with the body when the server refuses the watch (not 200); a stream that ends without the
  // final chunk (a dropped connection) is an error.
  Result<Response> watch(const std::string& path, std::chrono::milliseconds idle_timeout,
                         const std::function<bool(std::string_view line)>& on_line);

  // Fails the requests in flight (a blocked watch returns at once) and every later one. For
  // stopping a thread that uses this client; cannot be undone.
  void shutdown();

  const ClientConfig& config() const { return config_; }

 private:
  Client(ClientConfig config, std::string host, int port);

  // A client for one request, registered so that shutdown() can interrupt it; nullptr-free
  // error when shut down or the token cannot be read.
  class Request;
  Result<std::unique_ptr<Request>> begin(std::chrono::milliseconds read_timeout);
  void untrack(httplib::ClientImpl* c);

  const ClientConfig config_;
  const std::string host_;
  const int port_;
  std::mutex mutex_;
  std::set<httplib::ClientImpl*> in_flight_;
  bool shut_down_ = false;
};

}  // namespace nodemesh::k8s
