#pragma once

// nodemeshctl's client for the agent's admin API (127.0.0.1:15000 in the node's network
// namespace). Errors say what to check: a refused connection usually means no agent, or a
// shell outside the node's network namespace.

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace nodemesh::cli {

class AdminClient {
 public:
  // base_url: "http://127.0.0.1:15000" (scheme optional).
  AdminClient(std::string base_url, std::chrono::milliseconds timeout);

  Result<nlohmann::json> get(const std::string& path,
                             const std::map<std::string, std::string>& params = {}) const;
  // GET with parameters that may repeat (header=...&header=...), in order.
  Result<nlohmann::json> getQuery(
      const std::string& path, const std::vector<std::pair<std::string, std::string>>& query) const;
  Result<nlohmann::json> post(const std::string& path,
                              const std::map<std::string, std::string>& params = {}) const;

  const std::string& baseUrl() const { return base_url_; }

 private:
  // Errors: ECONNREFUSED unreachable, EINVAL an HTTP 4xx (the request was wrong), EIO another
  // status, EBADMSG not JSON.
  Result<nlohmann::json> request(
      const std::string& method, const std::string& path,
      const std::vector<std::pair<std::string, std::string>>& params) const;
  std::string base_url_;
  std::chrono::milliseconds timeout_;
};

}  // namespace nodemesh::cli
