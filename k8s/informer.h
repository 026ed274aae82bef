#pragma once

// An informer: keeps a local copy of one kind of Kubernetes object (all Pods on a node, all
// Namespaces) current through list + watch, and calls back with each change, like client-go's
// reflector and informer:
//   - list, in pages (`limit` + `continue`), then watch from the list's resourceVersion with
//     allowWatchBookmarks=true and timeoutSeconds; a watch that ends is resumed from the last
//     resourceVersion seen (events and bookmarks), so no event is missed or delivered twice;
//   - 410 Gone (as the HTTP status of the watch or list, or as an ERROR event with code 410):
//     the version is older than the API server's history, so list again and report the
//     difference to the copy, with a delete for each object that is no longer there;
//   - any other failure (connection, TLS, 401/403, 5xx, a stream that breaks) is reported to
//     onError and retried after an exponential backoff with jitter;
//   - a malformed object or event is logged and skipped: it never crashes and never turns into
//     a delete (an object that was known and comes back malformed keeps its last good state).
// Runs on its own thread; the callbacks run on that thread, one at a time, and must not block
// for long (they delay the watch, not break it) nor call stop().

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "k8s/client.h"
#include "k8s/objects.h"

namespace nodemesh::k8s {

struct InformerOptions {
  std::string name;            // for logs: "pods", "namespaces"
  std::string path;            // collection path: "/api/v1/pods", "/api/v1/namespaces"
  std::string field_selector;  // "spec.nodeName=node-1"; empty for none
  std::string label_selector;  // empty for none
  // Checks an object before it enters the copy (parsePod, parseNamespace, ...): one it refuses
  // is malformed. Default: parseObjectMeta.
  std::function<Status(const nlohmann::json& object)> validate;
  uint32_t page_size = 500;                 // list `limit`
  std::chrono::seconds watch_timeout{300};  // `timeoutSeconds` of each watch
  // No byte for this long on a watch means the connection is dead (bookmarks come about once
  // a minute from a real API server); it is then closed and the watch resumed.
  std::chrono::seconds watch_idle_timeout{90};
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
};

// The agent's two informers: the Pods scheduled to `node_name` (fieldSelector
// spec.nodeName=<node>), checked with parsePod, and all Namespaces, checked with parseNamespace.
InformerOptions podInformerOptions(const std::string& node_name);
InformerOptions namespaceInformerOptions();

struct InformerCallbacks {
  // An object was added or changed (also for each object of the first list).
  std::function<void(const nlohmann::json& object)> on_upsert;
  // An object went away; `object` is its last state (from the DELETED event, or the last one
  // seen when a relist no longer has it).
  std::function<void(const nlohmann::json& object)> on_delete;
  // The copy holds a complete list for the first time (after the first list's upserts).
  std::function<void()> on_synced;
  // A failure that will be retried; optional (logging is done in any case).
  std::function<void(const Error& error)> on_error;
};

class Informer {
 public:
  // Starts the thread. `client` is used by this informer only (stop() shuts it down).
  static std::unique_ptr<Informer> start(std::unique_ptr<Client> client, InformerOptions options,
                                         InformerCallbacks callbacks);
  ~Informer();  // stop()
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;
  Informer(Informer&&) = delete;
  Informer& operator=(Informer&&) = delete;

  // Ends the watch and joins the thread; no callback runs after it returns. Idempotent.
  void stop();

  bool synced() const { return synced_.load(); }
  // The resourceVersion the next watch starts from ("" before the first list).
  std::string resourceVersion() const;

 private:
  Informer(std::unique_ptr<Client> client, InformerOptions options, InformerCallbacks callbacks);

  // How a list or watch ended.
  enum class Outcome {
    kOk,      // watch: the server ended the stream (timeoutSeconds); resume at once
    kGone,    // 410: list again
    kFailed,  // back off, then resume (or list again if no list succeeded yet)
    kStopped,
  };

  void run();
  Outcome list();
  Outcome watch();
  // Applies one watch event line; kGone for an ERROR event with code 410, kFailed for another
  // ERROR event, kOk otherwise (malformed events are skipped).
  Outcome handleEvent(std::string_view line);
  void upsert(const std::string& key, nlohmann::json object);
  void fail(const Error& error);
  void setResourceVersion(std::string rv);
  // Sleeps for the next backoff delay; false when stopped meanwhile.
  bool backoff();
  std::string collectionQuery() const;

  const std::unique_ptr<Client> client_;
  const InformerOptions options_;
  const InformerCallbacks callbacks_;

  // The copy: key -> last good object. Only the informer thread touches it.
  std::map<std::string, nlohmann::json> store_;
  std::chrono::milliseconds next_backoff_;
  std::mt19937_64 random_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::string resource_version_;  // guarded by mutex_
  bool stopping_ = false;         // guarded by mutex_
  std::atomic<bool> synced_{false};
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

}  // namespace nodemesh::k8s
