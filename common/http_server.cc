#include "common/http_server.h"

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include <httplib.h>
#include <spdlog/spdlog.h>

namespace nodemesh::http {

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::string name;
  std::atomic<bool> finished{false};
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl, uint16_t port)
    : impl_(std::move(impl)), port_(port) {}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->server.stop();
  impl_->thread.join();
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(const HttpServerOptions& options,
                                                      std::vector<Route> routes) {
  auto impl = std::make_unique<Impl>();
  impl->name = options.name;
  httplib::Server& server = impl->server;
  const size_t threads = std::max<size_t>(1, options.threads);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // Short keep-alive: a handler thread serves one connection at a time.
  server.set_keep_alive_timeout(2);
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.set_payload_max_length(64 * 1024);

  std::map<std::string, std::set<std::string>> methods;  // path -> methods with a handler
  for (auto& route : routes) {
    methods[route.path].insert(route.method);
    auto handler = [h = std::move(route.handler)](const httplib::Request& req,
                                                  httplib::Response& res) {
      HttpRequest r;
      r.method = req.method;
      r.path = req.path;
      for (const auto& [key, value] : req.params) {
        r.params[key] = value;
        r.query.emplace_back(key, value);
      }
      r.body = req.body;
      r.remote_addr = req.remote_addr;
      HttpResponse out = h(r);
      res.status = out.status;
      res.set_content(out.body, out.content_type);
    };
    // The path is literal: escape regex metacharacters (httplib matches routes as regexes).
    std::string pattern;
    for (char c : route.path) {
      if (std::string_view(".[]{}()\\*+?^$|").find(c) != std::string_view::npos) pattern += '\\';
      pattern += c;
    }
    if (route.method == "GET") {
      server.Get(pattern, handler);
    } else if (route.method == "POST") {
      server.Post(pattern, handler);
    } else if (route.method == "PUT") {
      server.Put(pattern, handler);
    } else if (route.method == "DELETE") {
      server.Delete(pattern, handler);
    } else {
      return Error::invalid("unsupported method " + route.method);
    }
  }
  server.set_error_handler([methods](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404) {
      auto it = methods.find(req.path);
      if (it != methods.end()) {
        res.status = 405;
        std::string allow;
        for (const auto& m : it->second) allow += (allow.empty() ? "" : ", ") + m;
        res.set_header("Allow", allow);
        res.set_content("method not allowed; use " + allow + "\n", "text/plain");
        return;
      }
      res.set_content("not found: " + req.path + "\n", "text/plain");
    }
  });
  server.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, const std::exception_ptr& ep) {
        std::string what = "unknown error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::warn("HTTP {} {}: {}", req.method, req.path, what);
        res.status = 500;
        res.set_content("internal error: " + what + "\n", "text/plain");
      });

  uint16_t port = options.port;
  if (options.port == 0) {
    int any = server.bind_to_any_port(options.address);
    port = any > 0 ? static_cast<uint16_t>(any) : 0;
  } else if (!server.bind_to_port(options.address, options.port)) {
    port = 0;
  }
  if (port == 0) {
    return Error{EADDRINUSE, options.name + ": cannot listen on " + options.address + ":" +
                                 std::to_string(options.port) +
                                 " (in use, or the address is not local)"};
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    if (!raw->server.listen_after_bind()) {
      spdlog::warn("{} HTTP server stopped with an error", raw->name);
    }
    raw->finished.store(true);
  });
  // httplib's stop() does nothing until the accept loop runs (is_running()), so a stop right
  // after start would leave the thread blocked in accept(): return only once it runs.
  while (!impl->server.is_running() && !impl->finished.load()) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl), port));
}

}  // namespace nodemesh::http
