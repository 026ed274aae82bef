#include "k8s/informer.h"

#include <set>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace nodemesh::k8s {
namespace {

using nlohmann::json;

// The key of an object that failed validation, if its metadata names it ("" otherwise).
std::string keyOfMalformed(const json& object) {
  if (!object.is_object()) return "";
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  auto name = meta->find("name");
  if (name == meta->end() || !name->is_string() || name->get<std::string>().empty()) return "";
  ObjectMeta m;
  m.name = name->get<std::string>();
  auto ns = meta->find("namespace");
  if (ns != meta->end() && ns->is_string()) m.namespace_name = ns->get<std::string>();
  return objectKey(m);
}

// metadata.resourceVersion when it is a non-empty string, else "".
std::string resourceVersionOf(const json& object) {
  if (!object.is_object()) return "";
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  auto rv = meta->find("resourceVersion");
  if (rv == meta->end() || !rv->is_string()) return "";
  return rv->get<std::string>();
}

}  // namespace

InformerOptions podInformerOptions(const std::string& node_name) {
  InformerOptions o;
  o.name = "pods";
  o.path = "/api/v1/pods";
  o.field_selector = "spec.nodeName=" + node_name;
  o.validate = [](const json& object) -> Status {
    auto pod = parsePod(object);
    if (!pod) return pod.error();
    return okStatus();
  };
  return o;
}

InformerOptions namespaceInformerOptions() {
  InformerOptions o;
  o.name = "namespaces";
  o.path = "/api/v1/namespaces";
  o.validate = [](const json& object) -> Status {
    auto ns = parseNamespace(object);
    if (!ns) return ns.error();
    return okStatus();
  };
  return o;
}

std::unique_ptr<Informer> Informer::start(std::unique_ptr<Client> client, InformerOptions options,
                                          InformerCallbacks callbacks) {
  if (!options.validate) {
    options.validate = [](const json& object) -> Status {
      auto meta = parseObjectMeta(object);
      if (!meta) return meta.error();
      return okStatus();
    };
  }
  std::unique_ptr<Informer> informer(
      new Informer(std::move(client), std::move(options), std::move(callbacks)));
  Informer* raw = informer.get();
  informer->thread_ = std::thread([raw] {
    raw->run();
    raw->finished_.store(true);
  });
  return informer;
}

Informer::Informer(std::unique_ptr<Client> client, InformerOptions options,
                   InformerCallbacks callbacks)
    : client_(std::move(client)),
      options_(std::move(options)),
      callbacks_(std::move(callbacks)),
      next_backoff_(options_.backoff_initial),
      random_(std::random_device{}()) {}

Informer::~Informer() {
  stop();
}

void Informer::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (!thread_.joinable()) return;
  // A request that starts right after one shutdown() call could miss it (cpp-httplib can only
  // interrupt a connection once it exists), so repeat until the thread is out.
  while (!finished_.load()) {
    client_->shutdown();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  thread_.join();
}

std::string Informer::resourceVersion() const {
  std::lock_guard lock(mutex_);
  return resource_version_;
}

void Informer::setResourceVersion(std::string rv) {
  std::lock_guard lock(mutex_);
  resource_version_ = std::move(rv);
}

void Informer::fail(const Error& error) {
  spdlog::warn("kubernetes {} informer: {}", options_.name, error.message);
  if (callbacks_.on_error) callbacks_.on_error(error);
}

bool Informer::backoff() {
  auto delay = next_backoff_;
  next_backoff_ = std::min(next_backoff_ * 2, options_.backoff_max);
  // Jitter in [delay/2, delay], so that the agents of many nodes that lost the API server
  // together do not come back in step.
  std::uniform_int_distribution<int64_t> jitter(delay.count() / 2, delay.count());
  std::chrono::milliseconds wait(jitter(random_));
  std::unique_lock lock(mutex_);
  return !wake_.wait_for(lock, wait, [this] { return stopping_; });
}

std::string Informer::collectionQuery() const {
  std::string query;
  if (!options_.field_selector.empty()) {
    query += "&fieldSelector=" + queryEscape(options_.field_selector);
  }
  if (!options_.label_selector.empty()) {
    query += "&labelSelector=" + queryEscape(options_.label_selector);
  }
  return query;
}

void Informer::run() {
  bool need_list = true;
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    Outcome outcome = need_list ? list() : watch();
    switch (outcome) {
      case Outcome::kOk:
        need_list = false;
        break;
      case Outcome::kGone:
        // A watch that expired relists at once; a list whose continue token expired (the
        // snapshot of its first page was compacted) backs off first: the API server is busy.
        if (!need_list) {
          need_list = true;
          break;
        }
        if (!backoff()) return;
        break;
      case Outcome::kFailed:
        if (!backoff()) return;
        break;
      case Outcome::kStopped:
        return;
    }
  }
}

Informer::Outcome Informer::list() {
  std::map<std::string, json> fresh;
  std::set<std::string> malformed;  // keys of objects that failed validation
  std::string list_rv;
  std::string cont;
  do {
    std::string path =
        fmt::format("{}?limit={}{}", options_.path, options_.page_size, collectionQuery());
    if (!cont.empty()) path += "&continue=" + queryEscape(cont);
    auto response = client_->get(path);
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return Outcome::kStopped;
    }
    if (!response) {
      fail(response.error());
      return Outcome::kFailed;
    }
    if (response->status == 410) {
      fail(apiError("GET", path, *response));
      return Outcome::kGone;
    }
    if (response->status != 200) {
      fail(apiError("GET", path, *response));
      return Outcome::kFailed;
    }
    auto body = json::parse(response->body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      fail(Error::invalid(fmt::format("GET {}: the body is not a JSON object", path)));
      return Outcome::kFailed;
    }
    auto meta = body.find("metadata");
    auto items = body.find("items");
    if (meta == body.end() || !meta->is_object() || !meta->contains("resourceVersion") ||
        !(*meta)["resourceVersion"].is_string() || items == body.end() ||
        !(items->is_array() || items->is_null())) {
      fail(Error::invalid(
          fmt::format("GET {}: not a list (metadata.resourceVersion or items missing)", path)));
      return Outcome::kFailed;
    }
    list_rv = (*meta)["resourceVersion"].get<std::string>();
    cont.clear();
    if (auto c = meta->find("continue"); c != meta->end() && c->is_string()) {
      cont = c->get<std::string>();
    }
    if (items->is_null()) continue;
    for (auto& item : *items) {
      Status valid = options_.validate(item);
      if (!valid) {
        std::string key = keyOfMalformed(item);
        spdlog::warn("kubernetes {} informer: skipping a malformed object{}: {}", options_.name,
                     key.empty() ? "" : " " + key, valid.error().message);
        if (!key.empty()) malformed.insert(key);
        continue;
      }
      auto m = parseObjectMeta(item);  // validate() accepted it, so metadata parses
      if (!m) continue;
      fresh[objectKey(*m)] = std::move(item);
    }
  } while (!cont.empty());

  // Deletes for what vanished while no watch was looking (a relist after 410 or a failure
  // before the first list ends); an object that is there but malformed stays as it was.
  std::vector<std::string> gone;
  for (const auto& [key, object] : store_) {
    if (!fresh.contains(key) && !malformed.contains(key)) gone.push_back(key);
  }
  for (const std::string& key : gone) {
    json last = std::move(store_[key]);
    store_.erase(key);
    if (callbacks_.on_delete) callbacks_.on_delete(last);
  }
  setResourceVersion(list_rv);
  for (auto& [key, object] : fresh) upsert(key, std::move(object));
  next_backoff_ = options_.backoff_initial;
  spdlog::debug("kubernetes {} informer: listed {} objects at resourceVersion {}", options_.name,
                store_.size(), list_rv);
  if (!synced_.exchange(true) && callbacks_.on_synced) callbacks_.on_synced();
  return Outcome::kOk;
}

void Informer::upsert(const std::string& key, json object) {
  auto it = store_.find(key);
  if (it != store_.end() && resourceVersionOf(it->second) == resourceVersionOf(object)) {
    return;  // already known in this version (a relist of an unchanged object)
  }
  json& slot = store_[key];
  slot = std::move(object);
  if (callbacks_.on_upsert) callbacks_.on_upsert(slot);
}

Informer::Outcome Informer::watch() {
  std::string rv = resourceVersion();
  std::string path = fmt::format(
      "{}?watch=true&allowWatchBookmarks=true&timeoutSeconds={}&resourceVersion={}{}",
      options_.path, options_.watch_timeout.count(), queryEscape(rv), collectionQuery());
  Outcome outcome = Outcome::kOk;
  bool any_event = false;
  auto response = client_->watch(
      path, std::chrono::duration_cast<std::chrono::milliseconds>(options_.watch_idle_timeout),
      [&](std::string_view line) {
        any_event = true;
        Outcome o = handleEvent(line);
        if (o != Outcome::kOk) {
          outcome = o;
          return false;
        }
        std::lock_guard lock(mutex_);
        return !stopping_;
      });
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Outcome::kStopped;
  }
  if (!response) {
    fail(response.error());
    return Outcome::kFailed;
  }
  if (outcome != Outcome::kOk) return outcome;
  if (response->status == 410) {
    spdlog::info("kubernetes {} informer: resourceVersion {} expired (410), listing again",
                 options_.name, rv);
    return Outcome::kGone;
  }
  if (response->status != 200) {
    fail(apiError("GET", path, *response));
    return Outcome::kFailed;
  }
  if (any_event) next_backoff_ = options_.backoff_initial;
  return Outcome::kOk;
}

Informer::Outcome Informer::handleEvent(std::string_view line) {
  auto event = json::parse(line, nullptr, false);
  auto skip = [&](std::string_view why) {
    spdlog::warn("kubernetes {} informer: skipping a malformed watch event ({}): {:.200}",
                 options_.name, why, line);
    return Outcome::kOk;
  };
  if (event.is_discarded() || !event.is_object()) return skip("not a JSON object");
  auto type_it = event.find("type");
  auto object_it = event.find("object");
  if (type_it == event.end() || !type_it->is_string() || object_it == event.end() ||
      !object_it->is_object()) {
    return skip("no type or object");
  }
  const std::string type = type_it->get<std::string>();
  json& object = *object_it;

  if (type == "BOOKMARK") {
    std::string rv = resourceVersionOf(object);
    if (rv.empty()) return skip("bookmark without resourceVersion");
    setResourceVersion(std::move(rv));
    return Outcome::kOk;
  }
  if (type == "ERROR") {
    // The object is a Status (metav1.Status): code 410 when the version is too old.
    int64_t code = 0;
    if (auto c = object.find("code"); c != object.end() && c->is_number_integer()) {
      code = c->get<int64_t>();
    }
    std::string message = "(no message)";
    if (auto m = object.find("message"); m != object.end() && m->is_string()) {
      message = m->get<std::string>();
    }
    if (code == 410) {
      spdlog::info("kubernetes {} informer: watch expired (410: {}), listing again", options_.name,
                   message);
      return Outcome::kGone;
    }
    fail(Error{EIO, fmt::format("watch {}: ERROR event {}: {}", options_.path, code, message)});
    return Outcome::kFailed;
  }
  if (type == "DELETED") {
    // Only the key matters: a deleted object whose last state is malformed is still gone.
    auto meta = parseObjectMeta(object);
    if (!meta) return skip(meta.error().message);
    setResourceVersion(meta->resource_version);
    auto it = store_.find(objectKey(*meta));
    if (it != store_.end()) {
      json last = std::move(it->second);
      store_.erase(it);
      if (callbacks_.on_delete) callbacks_.on_delete(last);
    }
    return Outcome::kOk;
  }
  if (type == "ADDED" || type == "MODIFIED") {
    Status valid = options_.validate(object);
    if (!valid) {
      // Consumed all the same: resuming must not bring it back.
      std::string rv = resourceVersionOf(object);
      if (!rv.empty()) setResourceVersion(std::move(rv));
      return skip(valid.error().message);
    }
    auto meta = parseObjectMeta(object);
    if (!meta) return skip(meta.error().message);
    setResourceVersion(meta->resource_version);
    upsert(objectKey(*meta), std::move(object));
    return Outcome::kOk;
  }
  return skip(fmt::format("unknown type {:?}", type));
}

}  // namespace nodemesh::k8s
