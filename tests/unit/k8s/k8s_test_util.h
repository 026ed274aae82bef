#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "k8s/client.h"
#include "k8s/informer.h"
#include "tests/k8s_standin/standin_api_server.h"

namespace nodemesh::k8s::testing {

using nlohmann::json;
using Standin = nodemesh::testing::StandinApiServer;

inline json podJson(const std::string& ns, const std::string& name, const std::string& node,
                    const std::map<std::string, std::string>& labels = {},
                    const std::string& ip = "10.199.0.10") {
  json pod = {{"metadata", {{"name", name}, {"namespace", ns}}},
              {"spec", {{"nodeName", node}, {"serviceAccountName", "default"}}},
              {"status", {{"phase", "Running"}, {"podIP", ip}, {"podIPs", {{{"ip", ip}}}}}}};
  if (!labels.empty()) pod["metadata"]["labels"] = labels;
  return pod;
}

inline json namespaceJson(const std::string& name,
                          const std::map<std::string, std::string>& labels = {}) {
  json ns = {{"metadata", {{"name", name}}}};
  if (!labels.empty()) ns["metadata"]["labels"] = labels;
  return ns;
}

inline std::unique_ptr<Standin> startStandin(const Standin::Options& options = {}) {
  auto server = Standin::start(options);
  if (!server) {
    ADD_FAILURE() << server.error().message;
    return nullptr;
  }
  return std::move(*server);
}

inline std::unique_ptr<Client> clientFor(const Standin& server) {
  auto client = Client::create(server.clientConfig());
  if (!client) {
    ADD_FAILURE() << client.error().message;
    return nullptr;
  }
  return std::move(*client);
}

// Collects an informer's callbacks: "upsert <key> <rv>", "delete <key> <rv>", "synced".
class Recorder {
 public:
  InformerCallbacks callbacks() {
    InformerCallbacks c;
    c.on_upsert = [this](const json& o) { add("upsert " + describe(o), o); };
    c.on_delete = [this](const json& o) { add("delete " + describe(o), o); };
    c.on_synced = [this] { add("synced", json()); };
    c.on_error = [this](const Error& e) {
      std::lock_guard lock(mutex_);
      errors_.push_back(e.message);
      changed_.notify_all();
    };
    return c;
  }

  // Waits until `pred` holds over the events, at most `timeout`.
  bool waitFor(const std::function<bool(const std::vector<std::string>&)>& pred,
               std::chrono::milliseconds timeout = std::chrono::milliseconds(2500)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return pred(events_); });
  }
  bool waitForEvent(const std::string& event,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(2500)) {
    return waitFor(
        [&](const std::vector<std::string>& events) {
          return std::find(events.begin(), events.end(), event) != events.end();
        },
        timeout);
  }
  bool waitForErrors(size_t count,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(2500)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return errors_.size() >= count; });
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::vector<std::string> errors() const {
    std::lock_guard lock(mutex_);
    return errors_;
  }
  // The object passed with the last callback for `event`.
  json objectOf(const std::string& event) const {
    std::lock_guard lock(mutex_);
    for (size_t i = events_.size(); i > 0; --i) {
      if (events_[i - 1] == event) return objects_[i - 1];
    }
    return json();
  }
  size_t count(const std::string& prefix) const {
    std::lock_guard lock(mutex_);
    return static_cast<size_t>(std::count_if(events_.begin(), events_.end(),
                                             [&](auto& e) { return e.rfind(prefix, 0) == 0; }));
  }

 private:
  static std::string describe(const json& o) {
    auto meta = o.value("metadata", json::object());
    std::string ns = meta.value("namespace", "");
    std::string key = ns.empty() ? meta.value("name", "") : ns + "/" + meta.value("name", "");
    return key + " " + meta.value("resourceVersion", "");
  }
  void add(std::string event, json object) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
    objects_.push_back(std::move(object));
    changed_.notify_all();
  }

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> events_;
  std::vector<json> objects_;
  std::vector<std::string> errors_;
};

}  // namespace nodemesh::k8s::testing
