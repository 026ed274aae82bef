#include "tests/k8s_standin/standin_api_server.h"

#include <httplib.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string_view>

#include <fmt/format.h>

#include "identity/openssl_ptr.h"

namespace nodemesh::testing {
namespace {

using identity::EvpPkeyPtr;
using identity::X509Ptr;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kProviderPoll = std::chrono::milliseconds(100);

// --- the test CA and the server certificate ---------------------------------------------------

Result<EvpPkeyPtr> makeKey() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return identity::opensslError("EC key");
  return key;
}

Status addExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  identity::X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return identity::opensslError(fmt::format("extension {}", value));
  }
  return okStatus();
}

Result<X509Ptr> makeCert(EVP_PKEY* key, const char* common_name, X509* issuer, EVP_PKEY* issuer_key,
                         bool is_ca, long serial) {
  X509Ptr cert(X509_new());
  if (!cert) return identity::opensslError("X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  if (is_ca) {
    if (auto s = addExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE"); !s) {
      return s.error();
    }
    if (auto s = addExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
        !s) {
      return s.error();
    }
  } else {
    if (auto s =
            addExtension(cert.get(), signer, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
        !s) {
      return s.error();
    }
    if (auto s = addExtension(cert.get(), signer, NID_ext_key_usage, "serverAuth"); !s) {
      return s.error();
    }
  }
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    return identity::opensslError("X509_sign");
  }
  return cert;
}

Status writeFile(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) return Error::fromErrno("write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Error{ec.value(), "rename " + tmp + ": " + ec.message()};
  return okStatus();
}

std::string certPem(X509* cert) {
  identity::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// --- API conventions ----------------------------------------------------------------------------

json statusBody(int code, std::string_view reason, std::string_view message) {
  return {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
          {"status", "Failure"}, {"message", message}, {"reason", reason},
          {"code", code}};
}

void replyStatus(httplib::Response& res, int code, std::string_view reason,
                 std::string_view message) {
  res.status = code;
  res.set_content(statusBody(code, reason, message).dump(), "application/json");
}

const char* kindPath(StandinApiServer::Kind kind) {
  switch (kind) {
    case StandinApiServer::Kind::kPods:
      return "pods";
    case StandinApiServer::Kind::kNamespaces:
      return "namespaces";
    case StandinApiServer::Kind::kDaemonSets:
      return "daemonsets.apps";
  }
  return "";
}
const char* listKind(StandinApiServer::Kind kind) {
  switch (kind) {
    case StandinApiServer::Kind::kPods:
      return "PodList";
    case StandinApiServer::Kind::kNamespaces:
      return "NamespaceList";
    case StandinApiServer::Kind::kDaemonSets:
      return "DaemonSetList";
  }
  return "";
}
const char* objectKind(StandinApiServer::Kind kind) {
  switch (kind) {
    case StandinApiServer::Kind::kPods:
      return "Pod";
    case StandinApiServer::Kind::kNamespaces:
      return "Namespace";
    case StandinApiServer::Kind::kDaemonSets:
      return "DaemonSet";
  }
  return "";
}

// A string field at a dotted path of a possibly malformed object; "" when absent or not a
// string.
std::string stringAt(const json& object, std::initializer_list<const char*> path) {
  const json* at = &object;
  for (const char* key : path) {
    if (!at->is_object()) return "";
    auto it = at->find(key);
    if (it == at->end()) return "";
    at = &*it;
  }
  return at->is_string() ? at->get<std::string>() : "";
}

std::string keyOf(const json& object) {
  std::string ns = stringAt(object, {"metadata", "namespace"});
  std::string name = stringAt(object, {"metadata", "name"});
  return ns.empty() ? name : ns + "/" + name;
}

Result<uint64_t> parseVersion(const std::string& text) {
  if (text.empty() || text.size() > 19) return Error::invalid("bad resourceVersion");
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return Error::invalid("bad resourceVersion");
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

std::string hexEncode(const std::string& in) {
  std::string out;
  for (unsigned char c : in) out += fmt::format("{:02x}", c);
  return out;
}

std::optional<std::string> hexDecode(const std::string& in) {
  if (in.size() % 2 != 0) return std::nullopt;
  std::string out;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < in.size(); i += 2) {
    int hi = digit(in[i]);
    int lo = digit(in[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::vector<std::string> splitComma(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string part = text.substr(start, comma - start);
    if (!part.empty()) out.push_back(part);
    start = comma + 1;
  }
  return out;
}

}  // namespace

// --- selectors ----------------------------------------------------------------------------------

struct StandinApiServer::Filter {
  struct Requirement {
    std::string key;
    enum class Op { kEq, kNeq, kExists, kNotExists } op = Op::kEq;
    std::string value;
  };
  std::string namespace_name;  // from the path
  std::vector<Requirement> fields;
  std::vector<Requirement> labels;

  static Result<Filter> parse(Kind kind, std::string namespace_name, const httplib::Request& req) {
    Filter f;
    f.namespace_name = std::move(namespace_name);
    for (const std::string& part : splitComma(req.get_param_value("fieldSelector"))) {
      auto r = requirement(part, false);
      if (!r) return r.error();
      bool known =
          r->key == "metadata.name" ||
          (kind == Kind::kPods && (r->key == "metadata.namespace" || r->key == "spec.nodeName"));
      if (!known) {
        return Error::invalid(fmt::format("\"{}\" is not a known field selector: only \"{}\"",
                                          r->key,
                                          "metadata.name, metadata.namespace, spec.nodeName"));
      }
      f.fields.push_back(*r);
    }
    for (const std::string& part : splitComma(req.get_param_value("labelSelector"))) {
      auto r = requirement(part, true);
      if (!r) return r.error();
      f.labels.push_back(*r);
    }
    return f;
  }

  static Result<Requirement> requirement(const std::string& part, bool label) {
    Requirement r;
    size_t pos = 0;
    if ((pos = part.find("!=")) != std::string::npos) {
      r = {part.substr(0, pos), Requirement::Op::kNeq, part.substr(pos + 2)};
    } else if ((pos = part.find("==")) != std::string::npos) {
      r = {part.substr(0, pos), Requirement::Op::kEq, part.substr(pos + 2)};
    } else if ((pos = part.find('=')) != std::string::npos) {
      r = {part.substr(0, pos), Requirement::Op::kEq, part.substr(pos + 1)};
    } else if (label && part.starts_with('!')) {
      r = {part.substr(1), Requirement::Op::kNotExists, ""};
    } else if (label) {
      r = {part, Requirement::Op::kExists, ""};
    } else {
      return Error::invalid(fmt::format("invalid selector: '{}'", part));
    }
    if (r.key.empty() || r.key.find_first_of(" ()") != std::string::npos) {
      return Error::invalid(
          fmt::format("invalid selector: '{}' (set-based selectors are not "
                      "supported by the stand-in)",
                      part));
    }
    return r;
  }

  bool matches(const json& object) const {
    if (!namespace_name.empty() && stringAt(object, {"metadata", "namespace"}) != namespace_name) {
      return false;
    }
    for (const Requirement& r : fields) {
      std::string value = r.key == "metadata.name" ? stringAt(object, {"metadata", "name"})
                          : r.key == "metadata.namespace"
                              ? stringAt(object, {"metadata", "namespace"})
                              : stringAt(object, {"spec", "nodeName"});
      if ((r.op == Requirement::Op::kEq) != (value == r.value)) return false;
    }
    for (const Requirement& r : labels) {
      std::optional<std::string> value;
      const json* labels_json = nullptr;
      if (object.is_object() && object.contains("metadata") && object["metadata"].is_object() &&
          object["metadata"].contains("labels")) {
        labels_json = &object["metadata"]["labels"];
      }
      if (labels_json != nullptr && labels_json->is_object()) {
        auto it = labels_json->find(r.key);
        if (it != labels_json->end() && it->is_string()) value = it->get<std::string>();
      }
      switch (r.op) {
        case Requirement::Op::kEq:
          if (value != r.value) return false;
          break;
        case Requirement::Op::kNeq:
          if (value == r.value) return false;
          break;
        case Requirement::Op::kExists:
          if (!value) return false;
          break;
        case Requirement::Op::kNotExists:
          if (value) return false;
          break;
      }
    }
    return true;
  }
};

// One open watch stream.
struct StandinApiServer::WatchSession {
  Kind kind = Kind::kPods;
  Filter filter;
  uint64_t sent_rv = 0;  // every change up to here has been considered
  bool bookmarks = false;
  Clock::time_point deadline;
  std::vector<std::string> initial;               // lines to send first
  std::deque<std::optional<std::string>> outbox;  // nullopt: a bookmark
  bool dropped = false;
  size_t record = 0;  // index in requests_
};

class StandinApiServer::Impl {
 public:
  Impl(X509* cert, EVP_PKEY* key) : server(cert, key) {}
  httplib::SSLServer server;
  std::thread thread;
};

// --- server -------------------------------------------------------------------------------------

Result<std::unique_ptr<StandinApiServer>> StandinApiServer::start(const Options& options) {
  std::unique_ptr<StandinApiServer> self(new StandinApiServer());
  self->options_ = options;
  self->accepted_token_ = options.token;

  const char* base = std::getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe): test set-up
  std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                     "/nodemesh-k8s-standin-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Error::fromErrno("mkdtemp " + tmpl);
  self->dir_ = tmpl;
  self->ca_file_ = self->dir_ + "/ca.crt";
  self->token_file_ = self->dir_ + "/token";

  auto ca_key = makeKey();
  if (!ca_key) return ca_key.error();
  auto ca = makeCert(ca_key->get(), "nodemesh stand-in API CA", nullptr, nullptr, true, 1);
  if (!ca) return ca.error();
  auto key = makeKey();
  if (!key) return key.error();
  auto cert = makeCert(key->get(), "kube-apiserver", ca->get(), ca_key->get(), false, 2);
  if (!cert) return cert.error();
  if (auto s = writeFile(self->ca_file_, certPem(ca->get())); !s) return s.error();
  if (auto s = writeFile(self->token_file_, options.token + "\n"); !s) return s.error();

  self->impl_ = std::make_unique<Impl>(cert->get(), key->get());
  httplib::SSLServer& server = self->impl_->server;
  if (!server.is_valid()) return Error::invalid("stand-in API server: TLS set-up failed");
  // Watches hold a thread each for their whole life.
  server.new_task_queue = [] { return new httplib::ThreadPool(32); };
  StandinApiServer* s = self.get();

  auto collection = [s](Kind kind, bool namespaced) {
    return [s, kind, namespaced](const httplib::Request& req, httplib::Response& res) {
      s->serveCollection(kind, namespaced ? req.matches[1].str() : "", req, res);
    };
  };
  server.Get(R"(/api/v1/pods)", collection(Kind::kPods, false));
  server.Get(R"(/api/v1/namespaces/([^/]+)/pods)", collection(Kind::kPods, true));
  server.Get(R"(/api/v1/namespaces)", collection(Kind::kNamespaces, false));
  server.Get(R"(/api/v1/namespaces/([^/]+))",
             [s](const httplib::Request& req, httplib::Response& res) {
               s->serveObject(Kind::kNamespaces, "", req.matches[1].str(), req, res);
             });
  server.Get(R"(/api/v1/namespaces/([^/]+)/pods/([^/]+))",
             [s](const httplib::Request& req, httplib::Response& res) {
               s->serveObject(Kind::kPods, req.matches[1].str(), req.matches[2].str(), req, res);
             });
  server.Get(R"(/apis/apps/v1/namespaces/([^/]+)/daemonsets/([^/]+))",
             [s](const httplib::Request& req, httplib::Response& res) {
               s->serveObject(Kind::kDaemonSets, req.matches[1].str(), req.matches[2].str(), req,
                              res);
             });
  server.Patch(R"(/api/v1/namespaces/([^/]+)/pods/([^/]+)/status)",
               [s](const httplib::Request& req, httplib::Response& res) {
                 s->servePatchStatus(req.matches[1].str(), req.matches[2].str(), req, res);
               });

  int port = server.bind_to_any_port("127.0.0.1");
  if (port <= 0) return Error{EADDRINUSE, "stand-in API server: cannot listen on 127.0.0.1"};
  self->port_ = port;
  self->impl_->thread = std::thread([s] { s->impl_->server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return self;
}

StandinApiServer::~StandinApiServer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (impl_) {
    impl_->server.stop();
    if (impl_->thread.joinable()) impl_->thread.join();
    impl_.reset();
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string StandinApiServer::url() const {
  return fmt::format("https://127.0.0.1:{}", port_);
}

k8s::ClientConfig StandinApiServer::clientConfig() const {
  k8s::ClientConfig config;
  config.server = url();
  config.ca_file = ca_file_;
  config.token_file = token_file_;
  config.connect_timeout = std::chrono::milliseconds(1000);
  config.request_timeout = std::chrono::milliseconds(2000);
  return config;
}

void StandinApiServer::setAcceptedToken(std::string token) {
  std::lock_guard lock(mutex_);
  accepted_token_ = std::move(token);
}

void StandinApiServer::writeTokenFile(const std::string& token) {
  (void)writeFile(token_file_, token + "\n");
}

uint64_t StandinApiServer::recordLocked(Kind kind, const std::string& key, json object) {
  auto& objects = objects_[static_cast<int>(kind)];
  uint64_t rv = ++rv_;
  Change change;
  change.rv = rv;
  change.kind = kind;
  change.key = key;
  if (auto it = objects.find(key); it != objects.end()) change.previous = it->second;
  if (object.is_null()) {
    objects.erase(key);
  } else {
    object["metadata"]["resourceVersion"] = std::to_string(rv);
    objects[key] = object;
    change.object = std::move(object);
  }
  changes_.push_back(std::move(change));
  changed_.notify_all();
  return rv;
}

uint64_t StandinApiServer::upsert(Kind kind, json object) {
  std::lock_guard lock(mutex_);
  std::string key = keyOf(object);
  if (stringAt(object, {"metadata", "name"}).empty()) return 0;
  if (kind != Kind::kNamespaces && stringAt(object, {"metadata", "namespace"}).empty()) return 0;
  auto& objects = objects_[static_cast<int>(kind)];
  if (!object.contains("kind")) object["kind"] = objectKind(kind);
  if (!object.contains("apiVersion")) {
    object["apiVersion"] = kind == Kind::kDaemonSets ? "apps/v1" : "v1";
  }
  auto existing = objects.find(key);
  json& meta = object["metadata"];
  if (existing != objects.end()) {
    meta["uid"] = existing->second["metadata"]["uid"];
    meta["creationTimestamp"] = existing->second["metadata"]["creationTimestamp"];
  } else if (!meta.contains("uid")) {
    meta["uid"] = fmt::format("00000000-0000-4000-8000-{:012}", next_uid_++);
    meta["creationTimestamp"] = "2026-01-01T00:00:00Z";
  }
  return recordLocked(kind, key, std::move(object));
}

uint64_t StandinApiServer::remove(Kind kind, const std::string& namespace_name,
                                  const std::string& name) {
  std::lock_guard lock(mutex_);
  std::string key = namespace_name.empty() ? name : namespace_name + "/" + name;
  if (!objects_[static_cast<int>(kind)].contains(key)) return 0;
  return recordLocked(kind, key, nullptr);
}

std::optional<json> StandinApiServer::get(Kind kind, const std::string& namespace_name,
                                          const std::string& name) const {
  std::lock_guard lock(mutex_);
  const auto& objects = objects_[static_cast<int>(kind)];
  auto it = objects.find(namespace_name.empty() ? name : namespace_name + "/" + name);
  if (it == objects.end()) return std::nullopt;
  return it->second;
}

uint64_t StandinApiServer::resourceVersion() const {
  std::lock_guard lock(mutex_);
  return rv_;
}

void StandinApiServer::compact() {
  std::lock_guard lock(mutex_);
  // The history stays in memory (open watches keep reading it, as they do from etcd after a
  // compaction); only new watches and continue tokens from before this version are refused.
  compacted_rv_ = rv_;
}

void StandinApiServer::sendBookmarks() {
  std::lock_guard lock(mutex_);
  for (auto& w : watches_) {
    if (w->bookmarks) w->outbox.emplace_back(std::nullopt);
  }
  changed_.notify_all();
}

void StandinApiServer::dropWatches() {
  std::lock_guard lock(mutex_);
  for (auto& w : watches_) w->dropped = true;
  changed_.notify_all();
}

void StandinApiServer::injectWatchLine(const std::string& line) {
  std::lock_guard lock(mutex_);
  for (auto& w : watches_) w->outbox.emplace_back(line);
  changed_.notify_all();
}

size_t StandinApiServer::openWatches() const {
  std::lock_guard lock(mutex_);
  return watches_.size();
}

bool StandinApiServer::waitForWatches(size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return watches_.size() >= count; });
}

std::vector<StandinApiServer::RequestRecord> StandinApiServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

void StandinApiServer::clearRequests() {
  std::lock_guard lock(mutex_);
  requests_.clear();
}

std::map<std::string, json> StandinApiServer::snapshotLocked(Kind kind, uint64_t rv) const {
  std::map<std::string, json> state = objects_[static_cast<int>(kind)];
  for (auto it = changes_.rbegin(); it != changes_.rend() && it->rv > rv; ++it) {
    if (it->kind != kind) continue;
    if (it->previous.is_null()) {
      state.erase(it->key);
    } else {
      state[it->key] = it->previous;
    }
  }
  return state;
}

// --- handlers -----------------------------------------------------------------------------------

size_t StandinApiServer::beginRequestLocked(const httplib::Request& req) {
  RequestRecord record;
  record.method = req.method;
  record.path = req.path;
  for (const auto& [k, v] : req.params) record.params[k] = v;
  requests_.push_back(std::move(record));
  return requests_.size() - 1;
}

bool StandinApiServer::authorizedLocked(const httplib::Request& req, httplib::Response& res,
                                        size_t record) {
  if (req.get_header_value("Authorization") == "Bearer " + accepted_token_) return true;
  replyStatus(res, 401, "Unauthorized", "Unauthorized");
  requests_[record].status = 401;
  return false;
}

void StandinApiServer::serveObject(Kind kind, const std::string& namespace_name,
                                   const std::string& name, const httplib::Request& req,
                                   httplib::Response& res) {
  std::lock_guard lock(mutex_);
  size_t record = beginRequestLocked(req);
  if (!authorizedLocked(req, res, record)) return;
  const auto& objects = objects_[static_cast<int>(kind)];
  auto it = objects.find(namespace_name.empty() ? name : namespace_name + "/" + name);
  if (it == objects.end()) {
    replyStatus(res, 404, "NotFound", fmt::format("{} \"{}\" not found", kindPath(kind), name));
  } else {
    res.status = 200;
    res.set_content(it->second.dump(), "application/json");
  }
  requests_[record].status = res.status;
}

void StandinApiServer::servePatchStatus(const std::string& namespace_name, const std::string& name,
                                        const httplib::Request& req, httplib::Response& res) {
  std::lock_guard lock(mutex_);
  size_t record = beginRequestLocked(req);
  if (!authorizedLocked(req, res, record)) return;
  auto finish = [&] { requests_[record].status = res.status; };
  if (!req.get_header_value("Content-Type").starts_with("application/merge-patch+json")) {
    replyStatus(res, 415, "UnsupportedMediaType",
                fmt::format("the body of the request was in an unknown format - accepted media "
                            "types include: application/merge-patch+json (stand-in)"));
    return finish();
  }
  json patch = json::parse(req.body, nullptr, false);
  if (patch.is_discarded() || !patch.is_object()) {
    replyStatus(res, 400, "BadRequest", "error decoding patch: invalid JSON");
    return finish();
  }
  auto& objects = objects_[static_cast<int>(Kind::kPods)];
  std::string key = namespace_name + "/" + name;
  auto it = objects.find(key);
  if (it == objects.end()) {
    replyStatus(res, 404, "NotFound", fmt::format("pods \"{}\" not found", name));
    return finish();
  }
  const json& current = it->second;
  std::string want_rv = stringAt(patch, {"metadata", "resourceVersion"});
  if (!want_rv.empty() && want_rv != stringAt(current, {"metadata", "resourceVersion"})) {
    replyStatus(res, 409, "Conflict",
                fmt::format("Operation cannot be fulfilled on pods \"{}\": the object has been "
                            "modified; please apply your changes to the latest version and try "
                            "again",
                            name));
    return finish();
  }
  json patched = current;
  patched.merge_patch(patch);
  // The status subresource keeps spec and identity as they were.
  if (current.contains("spec")) {
    patched["spec"] = current["spec"];
  } else if (patched.is_object()) {
    patched.erase("spec");
  }
  if (!patched.is_object() || !patched.contains("metadata") || !patched["metadata"].is_object()) {
    replyStatus(res, 422, "Invalid", "metadata: Required value");
    return finish();
  }
  for (const char* field : {"name", "namespace", "uid", "creationTimestamp"}) {
    if (current["metadata"].contains(field)) {
      patched["metadata"][field] = current["metadata"][field];
    }
  }
  recordLocked(Kind::kPods, key, patched);
  res.status = 200;
  res.set_content(objects.at(key).dump(), "application/json");
  finish();
}

void StandinApiServer::serveCollection(Kind kind, const std::string& namespace_name,
                                       const httplib::Request& req, httplib::Response& res) {
  std::unique_lock lock(mutex_);
  size_t record = beginRequestLocked(req);
  if (!authorizedLocked(req, res, record)) return;
  auto finish = [&] { requests_[record].status = res.status; };
  auto filter = Filter::parse(kind, namespace_name, req);
  if (!filter) {
    replyStatus(res, 400, "BadRequest", filter.error().message);
    return finish();
  }
  std::string watch = req.get_param_value("watch");
  if (watch == "true" || watch == "1") {
    serveWatchLocked(kind, std::move(*filter), req, res, record);
    return;
  }

  uint64_t limit = 0;
  if (req.has_param("limit")) {
    auto l = parseVersion(req.get_param_value("limit"));
    if (!l) {
      replyStatus(res, 400, "BadRequest", "limit: must be a non-negative integer");
      return finish();
    }
    limit = *l;
  }
  uint64_t snapshot_rv = rv_;
  std::string start;
  if (req.has_param("continue")) {
    auto decoded = hexDecode(req.get_param_value("continue"));
    json token = decoded ? json::parse(*decoded, nullptr, false) : json();
    if (!token.is_object() || !token.contains("rv") || !token["rv"].is_number_unsigned() ||
        !token.contains("start") || !token["start"].is_string()) {
      replyStatus(res, 400, "BadRequest", "continue key is not valid");
      return finish();
    }
    snapshot_rv = token["rv"].get<uint64_t>();
    start = token["start"].get<std::string>();
    if (snapshot_rv < compacted_rv_) {
      replyStatus(res, 410, "Expired",
                  "The provided continue parameter is too old to display a consistent list "
                  "result. You can start a new list without the continue parameter.");
      return finish();
    }
  }
  auto snapshot = snapshotLocked(kind, snapshot_rv);
  json items = json::array();
  std::string last;
  bool more = false;
  auto it = start.empty() ? snapshot.begin() : snapshot.upper_bound(start);
  for (; it != snapshot.end(); ++it) {
    if (limit > 0 && items.size() >= limit) {
      more = true;  // etcd reports more keys, matching or not
      break;
    }
    last = it->first;
    if (filter->matches(it->second)) items.push_back(it->second);
  }
  json meta = {{"resourceVersion", std::to_string(snapshot_rv)}};
  if (more) {
    meta["continue"] = hexEncode(json{{"rv", snapshot_rv}, {"start", last}}.dump());
  }
  json body = {
      {"kind", listKind(kind)}, {"apiVersion", "v1"}, {"metadata", meta}, {"items", items}};
  res.status = 200;
  res.set_content(body.dump(), "application/json");
  finish();
}

void StandinApiServer::serveWatchLocked(Kind kind, Filter filter, const httplib::Request& req,
                                        httplib::Response& res, size_t record) {
  auto session = std::make_shared<WatchSession>();
  session->kind = kind;
  session->filter = std::move(filter);
  session->bookmarks = req.get_param_value("allowWatchBookmarks") == "true";
  session->record = record;
  int64_t timeout_seconds = 1800;
  if (req.has_param("timeoutSeconds")) {
    auto t = parseVersion(req.get_param_value("timeoutSeconds"));
    if (!t) {
      replyStatus(res, 400, "BadRequest", "timeoutSeconds: must be a non-negative integer");
      requests_[record].status = res.status;
      return;
    }
    timeout_seconds = static_cast<int64_t>(*t);
  }
  session->deadline = Clock::now() + std::chrono::seconds(timeout_seconds);

  std::string rv_text = req.get_param_value("resourceVersion");
  if (rv_text.empty() || rv_text == "0") {
    // No version: the current state as ADDED events, then what follows.
    for (const auto& [key, object] : objects_[static_cast<int>(kind)]) {
      if (session->filter.matches(object)) {
        session->initial.push_back(json{{"type", "ADDED"}, {"object", object}}.dump() + "\n");
      }
    }
    session->sent_rv = rv_;
  } else {
    auto rv = parseVersion(rv_text);
    if (!rv) {
      replyStatus(res, 400, "BadRequest",
                  fmt::format("resourceVersion: Invalid value: \"{}\"", rv_text));
      requests_[record].status = res.status;
      return;
    }
    if (*rv < compacted_rv_) {
      std::string message = fmt::format("too old resource version: {} ({})", *rv, compacted_rv_);
      if (options_.gone_as_http_status) {
        replyStatus(res, 410, "Expired", message);
        requests_[record].status = res.status;
        return;
      }
      session->initial.push_back(
          json{{"type", "ERROR"}, {"object", statusBody(410, "Expired", message)}}.dump() + "\n");
      session->deadline = Clock::now();
    }
    session->sent_rv = *rv;
  }
  requests_[record].status = 200;
  watches_.push_back(session);
  changed_.notify_all();

  res.status = 200;
  res.set_chunked_content_provider(
      "application/json",
      [this, session](size_t /*offset*/, httplib::DataSink& sink) {
        std::vector<std::string> lines;
        bool end = false;
        {
          std::unique_lock lock(mutex_);
          changed_.wait_for(lock, kProviderPoll, [&] {
            return stopping_ || session->dropped || !session->initial.empty() ||
                   !session->outbox.empty() ||
                   (!changes_.empty() && changes_.back().rv > session->sent_rv) ||
                   Clock::now() >= session->deadline;
          });
          if (stopping_ || session->dropped) return false;  // no final chunk: a broken stream
          lines = std::move(session->initial);
          session->initial.clear();
          auto first =
              std::upper_bound(changes_.begin(), changes_.end(), session->sent_rv,
                               [](uint64_t rv, const Change& change) { return rv < change.rv; });
          for (auto it = first; it != changes_.end(); ++it) {
            session->sent_rv = it->rv;
            if (it->kind != session->kind) continue;
            bool was = !it->previous.is_null() && session->filter.matches(it->previous);
            bool is = !it->object.is_null() && session->filter.matches(it->object);
            if (!was && !is) continue;
            json object;
            const char* type = nullptr;
            if (was && is) {
              type = "MODIFIED";
              object = it->object;
            } else if (is) {
              type = "ADDED";
              object = it->object;
            } else {
              type = "DELETED";
              object = it->object.is_null() ? it->previous : it->object;
              object["metadata"]["resourceVersion"] = std::to_string(it->rv);
            }
            lines.push_back(json{{"type", type}, {"object", object}}.dump() + "\n");
          }
          for (auto& entry : session->outbox) {
            if (entry) {
              lines.push_back(*entry + "\n");
            } else {
              json bookmark = {{"kind", objectKind(session->kind)},
                               {"apiVersion", "v1"},
                               {"metadata", {{"resourceVersion", std::to_string(rv_)}}}};
              lines.push_back(json{{"type", "BOOKMARK"}, {"object", bookmark}}.dump() + "\n");
            }
          }
          session->outbox.clear();
          end = Clock::now() >= session->deadline;
        }
        for (const std::string& line : lines) {
          if (!sink.write(line.data(), line.size())) return false;
        }
        if (end) sink.done();
        return true;
      },
      [this, session](bool /*success*/) {
        std::lock_guard lock(mutex_);
        watches_.erase(std::remove(watches_.begin(), watches_.end(), session), watches_.end());
        changed_.notify_all();
      });
}

}  // namespace nodemesh::testing
