#include "cli/admin_client.h"

#include <httplib.h>

namespace nodemesh::cli {

AdminClient::AdminClient(std::string base_url, std::chrono::milliseconds timeout)
    : base_url_(std::move(base_url)), timeout_(timeout) {
  if (base_url_.find("://") == std::string::npos) base_url_ = "http://" + base_url_;
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
}

Result<nlohmann::json> AdminClient::get(const std::string& path,
                                        const std::map<std::string, std::string>& params) const {
  return request("GET", path, {params.begin(), params.end()});
}

Result<nlohmann::json> AdminClient::getQuery(
    const std::string& path, const std::vector<std::pair<std::string, std::string>>& query) const {
  return request("GET", path, query);
}

Result<nlohmann::json> AdminClient::post(const std::string& path,
                                         const std::map<std::string, std::string>& params) const {
  return request("POST", path, {params.begin(), params.end()});
}

Result<nlohmann::json> AdminClient::request(
    const std::string& method, const std::string& path,
    const std::vector<std::pair<std::string, std::string>>& params) const {
  httplib::Client client(base_url_);
  if (!client.is_valid()) return Error::invalid("--admin " + base_url_ + ": not a valid URL");
  client.set_connection_timeout(timeout_);
  client.set_read_timeout(timeout_);
  client.set_write_timeout(timeout_);
  httplib::Params query(params.begin(), params.end());
  httplib::Result res = method == "GET" ? client.Get(path, query, httplib::Headers{})
                                        : client.Post(httplib::append_query_params(path, query));
  if (!res) {
    return Error{
        ECONNREFUSED,
        "cannot reach the agent's admin API at " + base_url_ + path + ": " +
            (res.error() == httplib::Error::Connection ? std::string("connection failed")
                                                       : httplib::to_string(res.error())) +
            " (is nodemesh-agent running, or nodemesh-waypoint for `waypoint` commands, and is "
            "this shell in its network namespace? the admin API listens on 127.0.0.1 "
            "only)"};
  }
  nlohmann::json body = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (res->status != 200) {
    std::string message = body.is_object() && body.contains("error") && body["error"].is_string()
                              ? body["error"].get<std::string>()
                              : res->body;
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return Error{res->status >= 400 && res->status < 500 ? EINVAL : EIO,
                 method + " " + path + ": HTTP " + std::to_string(res->status) + ": " + message};
  }
  if (body.is_discarded()) {
    return Error{EBADMSG, method + " " + path + ": the agent's answer is not JSON"};
  }
  return body;
}

}  // namespace nodemesh::cli
