#include "k8s/client.h"

#include <httplib.h>
#include <openssl/x509_vfy.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace nodemesh::k8s {
namespace {

// A bigger line is not an event the agent could use (a Pod is a few KiB): treat the stream as
// broken rather than buffer without bound.
constexpr size_t kMaxLineBytes = 16 * 1024 * 1024;
// Enough of a refused request's body for its Status message.
constexpr size_t kMaxErrorBodyBytes = 64 * 1024;

Result<std::string> readSmallFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::fromErrno(fmt::format("{} {}", what, path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Error::fromErrno(fmt::format("{} {}: read", what, path));
  return text.str();
}

Result<std::string> readToken(const std::string& path) {
  auto text = readSmallFile(path, "token file");
  if (!text) return text.error();
  std::string token = std::move(*text);
  // Secret volumes end the file with a newline; editors do too.
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' ||
                            token.back() == '\t')) {
    token.pop_back();
  }
  if (token.empty()) return Error::invalid(fmt::format("token file {}: empty", path));
  if (token.find_first_of("\r\n") != std::string::npos) {
    return Error::invalid(fmt::format("token file {}: more than one line", path));
  }
  return token;
}

// "https://host:port", "https://[v6]:port", "https://host" (port 443).
Result<std::pair<std::string, int>> parseServer(std::string_view url) {
  constexpr std::string_view kScheme = "https://";
  if (!url.starts_with(kScheme)) {
    return Error::invalid(fmt::format("API server {:?}: must start with https://", url));
  }
  std::string_view rest = url.substr(kScheme.size());
  while (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    return Error::invalid(fmt::format("API server {:?}: a path is not supported", url));
  }
  std::string host;
  std::string_view port_text;
  if (rest.starts_with('[')) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return Error::invalid(fmt::format("API server {:?}: unterminated [", url));
    }
    host = std::string(rest.substr(1, close - 1));
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return Error::invalid(fmt::format("API server {:?}: bad port", url));
      port_text = after.substr(1);
    }
  } else {
    size_t colon = rest.rfind(':');
    host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
  }
  if (host.empty()) return Error::invalid(fmt::format("API server {:?}: no host", url));
  int port = 443;
  if (!port_text.empty()) {
    port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || port > 65535) {
        return Error::invalid(fmt::format("API server {:?}: bad port", url));
      }
      port = port * 10 + (c - '0');
    }
    if (port == 0 || port > 65535) {
      return Error::invalid(fmt::format("API server {:?}: bad port", url));
    }
  }
  return std::make_pair(host, port);
}

template <typename Duration>
void setTimeout(Duration d, const std::function<void(time_t, time_t)>& set) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  set(static_cast<time_t>(us / 1000000), static_cast<time_t>(us % 1000000));
}

std::string transportError(const httplib::Result& result, const httplib::SSLClient& http) {
  std::string text;
  switch (result.error()) {
    case httplib::Error::Connection:
      text = "cannot connect";
      break;
    case httplib::Error::ConnectionTimeout:
      text = "connect timed out";
      break;
    case httplib::Error::Read:
      text = "read failed (timed out, or the connection was lost)";
      break;
    case httplib::Error::Write:
      text = "write failed (timed out, or the connection was lost)";
      break;
    case httplib::Error::SSLConnection:
      text = "TLS handshake failed";
      break;
    case httplib::Error::SSLLoadingCerts:
      text = "cannot load the CA file";
      break;
    case httplib::Error::SSLServerVerification:
      text = "TLS: the server's certificate is not trusted";
      break;
    case httplib::Error::Canceled:
      text = "canceled";
      break;
    default:
      text = httplib::to_string(result.error());
      break;
  }
  if (result.error() == httplib::Error::SSLServerVerification) {
    text += fmt::format(" ({})", X509_verify_cert_error_string(http.get_openssl_verify_result()));
  }
  return text;
}

// The reason phrases of the statuses the API server uses.
std::string_view reasonPhrase(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "";
  }
}

}  // namespace

Result<ClientConfig> inClusterConfig(const std::string& service_account_dir) {
  // getenv is only read here, at start-up, before any thread that could setenv exists.
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");  // NOLINT(concurrency-mt-unsafe)
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");  // NOLINT(concurrency-mt-unsafe)
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return Error::invalid(
        "not in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not "
        "set");
  }
  ClientConfig config;
  std::string_view h(host);
  config.server = h.find(':') != std::string_view::npos ? fmt::format("https://[{}]:{}", h, port)
                                                        : fmt::format("https://{}:{}", h, port);
  config.token_file = service_account_dir + "/token";
  config.ca_file = service_account_dir + "/ca.crt";
  return config;
}

Error apiError(std::string_view method, std::string_view path, const Response& response) {
  std::string text = fmt::format("{} {}: {}", method, path, response.status);
  if (std::string_view phrase = reasonPhrase(response.status); !phrase.empty()) {
    text += fmt::format(" {}", phrase);
  }
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (!body.is_discarded() && body.is_object() && body.value("kind", "") == "Status") {
    auto message = body.find("message");
    if (message != body.end() && message->is_string()) {
      text += ": " + message->get<std::string>();
    }
  } else if (!response.body.empty()) {
    text += ": " + response.body.substr(0, 200);
  }
  return Error{EIO, std::move(text)};
}

std::string queryEscape(std::string_view value) {
  std::string out;
  for (char c : value) {
    bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += c;
    } else {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    }
  }
  return out;
}

// One request's cpp-httplib client and its registration with the Client.
class Client::Request {
 public:
  Request(Client& owner, std::unique_ptr<httplib::SSLClient> http)
      : owner_(owner), http_(std::move(http)) {}
  ~Request() { owner_.untrack(http_.get()); }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  Request(Request&&) = delete;
  Request& operator=(Request&&) = delete;
  httplib::SSLClient& http() { return *http_; }

 private:
  Client& owner_;
  std::unique_ptr<httplib::SSLClient> http_;
};

Result<std::unique_ptr<Client>> Client::create(ClientConfig config) {
  auto server = parseServer(config.server);
  if (!server) return server.error();
  auto ca = readSmallFile(config.ca_file, "CA file");
  if (!ca) return ca.error();
  if (ca->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return Error::invalid(fmt::format("CA file {}: no PEM certificate in it", config.ca_file));
  }
  auto token = readToken(config.token_file);
  if (!token) return token.error();
  auto [host, port] = std::move(*server);
  return std::unique_ptr<Client>(new Client(std::move(config), std::move(host), port));
}

Client::Client(ClientConfig config, std::string host, int port)
    : config_(std::move(config)), host_(std::move(host)), port_(port) {}

Client::~Client() = default;

Result<std::unique_ptr<Client::Request>> Client::begin(std::chrono::milliseconds read_timeout) {
  auto token = readToken(config_.token_file);
  if (!token) return token.error();
  auto http = std::make_unique<httplib::SSLClient>(host_, port_);
  http->set_ca_cert_path(config_.ca_file);
  http->enable_server_certificate_verification(true);
  http->set_bearer_token_auth(*token);
  http->set_keep_alive(false);
  setTimeout(config_.connect_timeout,
             [&](time_t s, time_t us) { http->set_connection_timeout(s, us); });
  setTimeout(read_timeout, [&](time_t s, time_t us) { http->set_read_timeout(s, us); });
  setTimeout(config_.request_timeout, [&](time_t s, time_t us) { http->set_write_timeout(s, us); });
  std::lock_guard lock(mutex_);
  if (shut_down_) return Error{ECANCELED, "Kubernetes client shut down"};
  in_flight_.insert(http.get());
  return std::make_unique<Request>(*this, std::move(http));
}

void Client::untrack(httplib::ClientImpl* c) {
  std::lock_guard lock(mutex_);
  in_flight_.erase(c);
}

void Client::shutdown() {
  std::lock_guard lock(mutex_);
  shut_down_ = true;
  for (httplib::ClientImpl* c : in_flight_) c->stop();
}

Result<Response> Client::get(const std::string& path) {
  auto request = begin(config_.request_timeout);
  if (!request) return request.error();
  httplib::Headers headers{{"Accept", "application/json"}};
  auto result = (*request)->http().Get(path, headers);
  if (!result)
    return Error{EIO, fmt::format("GET {}: {}", path, transportError(result, (*request)->http()))};
  return Response{result->status, std::move(result->body)};
}

Result<nlohmann::json> Client::getJson(const std::string& path) {
  auto response = get(path);
  if (!response) return response.error();
  if (response->status < 200 || response->status > 299) return apiError("GET", path, *response);
  auto body = nlohmann::json::parse(response->body, nullptr, false);
  if (body.is_discarded()) return Error::invalid(fmt::format("GET {}: the body is not JSON", path));
  return body;
}

Result<Response> Client::mergePatch(const std::string& path, const nlohmann::json& patch) {
  auto request = begin(config_.request_timeout);
  if (!request) return request.error();
  httplib::Headers headers{{"Accept", "application/json"}};
  auto result =
      (*request)->http().Patch(path, headers, patch.dump(), "application/merge-patch+json");
  if (!result)
    return Error{EIO,
                 fmt::format("PATCH {}: {}", path, transportError(result, (*request)->http()))};
  return Response{result->status, std::move(result->body)};
}

Result<Response> Client::watch(const std::string& path, std::chrono::milliseconds idle_timeout,
                               const std::function<bool(std::string_view line)>& on_line) {
  auto request = begin(idle_timeout);
  if (!request) return request.error();
  Response response;
  std::string pending;  // bytes of a line not yet complete
  bool caller_stopped = false;
  bool line_too_long = false;
  httplib::Headers headers{{"Accept", "application/json"}};
  auto result = (*request)->http().Get(
      path, headers,
      [&](const httplib::Response& r) {
        response.status = r.status;
        return true;
      },
      [&](const char* data, size_t size) {
        if (response.status != 200) {
          size_t room = kMaxErrorBodyBytes - std::min(kMaxErrorBodyBytes, response.body.size());
          response.body.append(data, std::min(size, room));
          return true;
        }
        std::string_view chunk(data, size);
        while (!chunk.empty()) {
          size_t newline = chunk.find('\n');
          if (newline == std::string_view::npos) {
            pending.append(chunk);
            if (pending.size() > kMaxLineBytes) {
              line_too_long = true;
              return false;
            }
            return true;
          }
          pending.append(chunk.substr(0, newline));
          chunk.remove_prefix(newline + 1);
          if (!pending.empty() && !on_line(pending)) {
            caller_stopped = true;
            return false;
          }
          pending.clear();
        }
        return true;
      });
  if (caller_stopped) return response;
  if (line_too_long) {
    return Error::invalid(
        fmt::format("watch {}: an event is longer than {} bytes", path, kMaxLineBytes));
  }
  if (!result) {
    {
      std::lock_guard lock(mutex_);
      if (shut_down_) return Error{ECANCELED, "Kubernetes client shut down"};
    }
    return Error{EIO,
                 fmt::format("watch {}: {}", path, transportError(result, (*request)->http()))};
  }
  // The last line may lack its newline.
  if (response.status == 200 && !pending.empty()) on_line(pending);
  return response;
}

}  // namespace nodemesh::k8s
