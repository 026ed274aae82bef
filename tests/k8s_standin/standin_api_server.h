#pragma once

// A stand-in Kubernetes API server for tests: enough of the real one's core/v1 Pods and
// Namespaces behaviour to test a client, an informer and the annotation patch against it,
// over real HTTPS on 127.0.0.1.
//
// Covered, as the real API server (1.2x) behaves:
//   - TLS with its own test CA (EC P-256, SAN IP:127.0.0.1 and DNS:localhost); every request
//     needs `Authorization: Bearer <token>`, else 401 with a Status body.
//   - Objects in memory with one global resourceVersion counter (etcd's revision): each write
//     gets the next version, as metadata.resourceVersion (a string); uid and
//     creationTimestamp are filled in on create.
//   - GET /api/v1/pods, /api/v1/namespaces/{ns}/pods, /api/v1/namespaces: lists ordered by key,
//     `limit` + `continue` served from a consistent snapshot at the first page's version (a
//     continue token whose snapshot was compacted gets 410 Expired, as etcd does);
//     fieldSelector on metadata.name, metadata.namespace and spec.nodeName (`=`, `==`, `!=`),
//     others 400; labelSelector with equality (`k=v`, `k==v`, `k!=v`) and existence (`k`, `!k`).
//   - GET of one pod or namespace (404 NotFound Status when missing), and of one apps/v1
//     DaemonSet (/apis/apps/v1/namespaces/{ns}/daemonsets/{name}; no list or watch of them).
//   - watch=true (or 1): a chunked stream, one JSON event per line. From resourceVersion R:
//     every change after R; without one (or "0"): ADDED for each current object first. A
//     filtered watch sees an object that starts or stops matching as ADDED / DELETED, as the
//     watch cache does. A version older than the compacted history: HTTP 200 and an ERROR
//     event with a 410 Expired Status (what the watch cache sends), or an HTTP 410 with
//     Options::gone_as_http_status (what etcd-backed watches of older servers send).
//     allowWatchBookmarks=true: BOOKMARK events when the test asks (sendBookmarks()) with the
//     latest version. timeoutSeconds ends the stream cleanly (the real server adds jitter).
//   - PATCH /api/v1/namespaces/{ns}/pods/{name}/status with application/merge-patch+json
//     (RFC 7386); like the real status strategy, changes to spec are dropped, metadata and
//     status are kept. Other content types get 415.
// Not covered: other kinds, API groups and discovery, POST/PUT/DELETE over HTTP (tests change
// objects through the methods below), resourceVersionMatch, set-based label selectors,
// admission, generateName, finalizers and graceful deletion, protobuf, HTTP/2, watch-list
// streaming (sendInitialEvents), the server's own periodic bookmarks, the "too large
// resource version" wait, and API priority and fairness (429).
//
// Test hooks: compact() (expire the history), dropWatches() (close every stream without the
// final chunk, as a lost connection looks), injectWatchLine() (a malformed event),
// requests() (what clients asked for).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "k8s/client.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace nodemesh::testing {

class StandinApiServer {
 public:
  enum class Kind { kPods, kNamespaces, kDaemonSets };

  struct Options {
    std::string token = "test-token";  // what the server accepts (and writes to tokenFile())
    bool gone_as_http_status = false;  // expired watch version: HTTP 410 instead of an event
  };

  struct RequestRecord {
    std::string method;
    std::string path;
    std::map<std::string, std::string> params;
    int status = 0;  // 0 while a watch stream is still open
  };

  static Result<std::unique_ptr<StandinApiServer>> start(const Options& options);
  static Result<std::unique_ptr<StandinApiServer>> start() { return start(Options{}); }
  ~StandinApiServer();
  StandinApiServer(const StandinApiServer&) = delete;
  StandinApiServer& operator=(const StandinApiServer&) = delete;
  StandinApiServer(StandinApiServer&&) = delete;
  StandinApiServer& operator=(StandinApiServer&&) = delete;

  std::string url() const;
  const std::string& caFile() const { return ca_file_; }
  const std::string& tokenFile() const { return token_file_; }
  // A client configuration for this server (its URL, CA and token files), short timeouts.
  k8s::ClientConfig clientConfig() const;

  // The token the server accepts from now on (the token file is not changed).
  void setAcceptedToken(std::string token);
  // Rewrites the token file the clients read (atomically, like kubelet's projected volumes).
  void writeTokenFile(const std::string& token);

  // Creates or replaces an object (JSON with at least metadata.name, and metadata.namespace
  // for pods); no other validation, so tests can store malformed objects. Returns the new
  // resourceVersion.
  uint64_t upsert(Kind kind, nlohmann::json object);
  // Deletes an object; returns the new resourceVersion, 0 when it did not exist.
  uint64_t remove(Kind kind, const std::string& namespace_name, const std::string& name);
  std::optional<nlohmann::json> get(Kind kind, const std::string& namespace_name,
                                    const std::string& name) const;
  uint64_t resourceVersion() const;

  // Forgets the history up to the current version: watches from older versions and continue
  // tokens from older snapshots get 410.
  void compact();
  // Each open watch that asked for bookmarks gets a BOOKMARK at the then current version.
  void sendBookmarks();
  // Closes every open watch stream abruptly.
  void dropWatches();
  // Sends `line` verbatim (plus a newline) on every open watch stream.
  void injectWatchLine(const std::string& line);
  size_t openWatches() const;
  // Waits until at least `count` watches are open.
  bool waitForWatches(size_t count, std::chrono::milliseconds timeout) const;

  std::vector<RequestRecord> requests() const;
  void clearRequests();

 private:
  // clang-tidy 14 does not see that nlohmann::json's move is noexcept.
  struct Change {  // NOLINT(bugprone-exception-escape)
    uint64_t rv = 0;
    Kind kind = Kind::kPods;
    std::string key;
    nlohmann::json object;    // null after a delete
    nlohmann::json previous;  // null before a create
  };
  struct WatchSession;
  struct Filter;
  class Impl;

  StandinApiServer() = default;

  uint64_t recordLocked(Kind kind, const std::string& key, nlohmann::json object);
  // The objects of `kind` as they were at version `rv` (rv >= compacted_rv_).
  std::map<std::string, nlohmann::json> snapshotLocked(Kind kind, uint64_t rv) const;
  size_t beginRequestLocked(const httplib::Request& req);
  bool authorizedLocked(const httplib::Request& req, httplib::Response& res, size_t record);
  void serveObject(Kind kind, const std::string& namespace_name, const std::string& name,
                   const httplib::Request& req, httplib::Response& res);
  void servePatchStatus(const std::string& namespace_name, const std::string& name,
                        const httplib::Request& req, httplib::Response& res);
  void serveCollection(Kind kind, const std::string& namespace_name, const httplib::Request& req,
                       httplib::Response& res);
  void serveWatchLocked(Kind kind, Filter filter, const httplib::Request& req,
                        httplib::Response& res, size_t record);

  Options options_;
  std::string dir_;
  std::string ca_file_;
  std::string token_file_;
  int port_ = 0;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::string accepted_token_;
  uint64_t rv_ = 1000;
  uint64_t compacted_rv_ = 0;
  std::map<std::string, nlohmann::json> objects_[3];
  std::vector<Change> changes_;
  std::vector<std::shared_ptr<WatchSession>> watches_;
  std::vector<RequestRecord> requests_;
  bool stopping_ = false;
  uint64_t next_uid_ = 1;

  std::unique_ptr<Impl> impl_;
};

}  // namespace nodemesh::testing
