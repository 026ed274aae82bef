#pragma once

// A small HTTP/1.1 server for the endpoints of the agent and the waypoint that are not the data
// path: admin API (15000), metrics (15020), readiness (15021). Each server has its own accept
// thread and a small fixed pool of handler threads, so a slow client of one endpoint never delays
// another, and none of them runs on a tunnel worker. Built on cpp-httplib, which only this
// wrapper's .cc includes.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace nodemesh::http {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;
  std::map<std::string, std::string> params;  // query string (and form body)
  // The same parameters in order, repeated names kept (`params` holds one value per name).
  std::vector<std::pair<std::string, std::string>> query;
  std::string body;
  std::string remote_addr;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct Route {
  std::string method;
  std::string path;  // exact match
  HttpHandler handler;
};

struct HttpServerOptions {
  std::string name;     // for logs: "admin", "metrics", "readiness"
  std::string address;  // "127.0.0.1", "0.0.0.0"
  uint16_t port = 0;    // 0: any free port (tests)
  size_t threads = 2;
};

class HttpServer {
 public:
  // Binds (SO_REUSEADDR only: a second agent on the same port fails here instead of sharing
  // the port through SO_REUSEPORT) and starts serving. A request for an unknown path gets 404,
  // a known path with another method 405.
  static Result<std::unique_ptr<HttpServer>> start(const HttpServerOptions& options,
                                                   std::vector<Route> routes);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const { return port_; }
  // Stops accepting, finishes the requests in progress and joins the threads. Idempotent.
  void stop();

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl, uint16_t port);
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

}  // namespace nodemesh::http
