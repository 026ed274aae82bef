#include "tests/istiod_standin/istiod_standin.h"

#include <openssl/pem.h>

#include <charconv>
#include <memory>
#include <set>
#include <utility>

#include <fmt/format.h>

#include <google/protobuf/any.pb.h>
#include <google/protobuf/struct.pb.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_context.h>

#include "envoy/service/discovery/v3/discovery.grpc.pb.h"
#include "identity/openssl_ptr.h"

namespace nodemesh::testing {
namespace {

namespace discovery = envoy::service::discovery::v3;
using identity::BioPtr;
using identity::EvpPkeyPtr;
using identity::X509Ptr;

// --- certificates ------------------------------------------------------------------------------

Status addExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  identity::X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return identity::opensslError(fmt::format("certificate extension {}", value));
  }
  return okStatus();
}

// A certificate for `key` named `common_name`, signed by (issuer, issuer_key) or self-signed, with
// the given extensions (nid, value).
Result<X509Ptr> makeCertificate(EVP_PKEY* key, const char* common_name, X509* issuer,
                                EVP_PKEY* issuer_key, long serial,
                                const std::vector<std::pair<int, const char*>>& extensions) {
  X509Ptr cert(X509_new());
  if (!cert) return identity::opensslError("X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  for (const auto& [nid, value] : extensions) {
    if (auto added = addExtension(cert.get(), signer, nid, value); !added) return added.error();
  }
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    return identity::opensslError("X509_sign");
  }
  return cert;
}

std::string bioText(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

std::string certificatePem(X509* cert) {
  const BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return bioText(bio.get());
}

std::string keyPem(EVP_PKEY* key) {
  const BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return bioText(bio.get());
}

struct Tls {
  std::string root_cert_pem;
  std::string root_key_pem;
  std::string cert_pem;
  std::string key_pem;
};

Result<Tls> makeTls(const std::string& root_cert_pem, const std::string& root_key_pem) {
  Tls tls;
  EvpPkeyPtr root_key;
  X509Ptr root;
  if (root_cert_pem.empty() && root_key_pem.empty()) {
    root_key.reset(EVP_EC_gen("P-256"));
    if (!root_key) return identity::opensslError("root key");
    auto made = makeCertificate(root_key.get(), "istiod stand-in root", nullptr, nullptr, 1,
                                {{NID_basic_constraints, "critical,CA:TRUE"},
                                 {NID_key_usage, "critical,keyCertSign,cRLSign"}});
    if (!made) return made.error();
    root = std::move(*made);
    tls.root_cert_pem = certificatePem(root.get());
    tls.root_key_pem = keyPem(root_key.get());
  } else {
    const BioPtr cert_bio(
        BIO_new_mem_buf(root_cert_pem.data(), static_cast<int>(root_cert_pem.size())));
    root.reset(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    if (!root) return identity::opensslError("istiod stand-in: root certificate PEM");
    const BioPtr key_bio(
        BIO_new_mem_buf(root_key_pem.data(), static_cast<int>(root_key_pem.size())));
    root_key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    if (!root_key) return identity::opensslError("istiod stand-in: root key PEM");
    tls.root_cert_pem = root_cert_pem;
    tls.root_key_pem = root_key_pem;
  }
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return identity::opensslError("serving key");
  const std::string san = fmt::format("DNS:{}", IstiodStandin::kServerName);
  auto cert =
      makeCertificate(key.get(), IstiodStandin::kServerName, root.get(), root_key.get(), 2,
                      {{NID_subject_alt_name, san.c_str()}, {NID_ext_key_usage, "serverAuth"}});
  if (!cert) return cert.error();
  tls.cert_pem = certificatePem(cert->get());
  tls.key_pem = keyPem(key.get());
  return tls;
}

std::string metadataValue(const grpc::ServerContext& context, const char* key) {
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find(key);
  return found == metadata.end() ? std::string()
                                 : std::string(found->second.data(), found->second.size());
}

}  // namespace

// --- the server ----------------------------------------------------------------------------------

struct IstiodStandin::Impl final : discovery::AggregatedDiscoveryService::Service {
  using Stream =
      grpc::ServerReaderWriter<discovery::DeltaDiscoveryResponse, discovery::DeltaDiscoveryRequest>;
  struct Entry {
    std::string version;
    google::protobuf::Any any;
  };
  struct OpenStream {
    int id = 0;
    Stream* stream = nullptr;
    std::set<std::string> subscribed;                                // guarded by mutex
    std::map<std::string, std::map<std::string, std::string>> held;  // type -> name -> version
  };

  Options options;
  Tls tls;
  std::string host;
  int port = 0;
  std::unique_ptr<grpc::Server> server;

  // Lock order: push_mutex, then mutex. push_mutex serializes every write to every stream, so
  // deltas reach a stream in the order they were computed.
  std::mutex push_mutex;
  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::map<std::string, std::map<std::string, Entry>> resources;
  uint64_t version = 0;
  uint64_t nonce = 0;
  int next_stream = 0;
  std::set<std::shared_ptr<OpenStream>> open;  // guarded by push_mutex and mutex
  std::vector<Request> requests;
  std::vector<IstiodStandin::Stream> streams;
  std::vector<Response> responses;

  Status serve() {
    grpc::SslServerCredentialsOptions credentials;
    credentials.pem_key_cert_pairs.push_back({tls.key_pem, tls.cert_pem});
    grpc::ServerBuilder builder;
    int selected = 0;
    builder.AddListeningPort(fmt::format("{}:{}", host, port),
                             grpc::SslServerCredentials(credentials), &selected);
    builder.RegisterService(this);
    for (grpc::Service* extra : options.extra) builder.RegisterService(extra);
    server = builder.BuildAndStart();
    if (!server || selected == 0) {
      server.reset();
      return Error::invalid(fmt::format("istiod stand-in: cannot serve on {}:{}", host, port));
    }
    port = selected;
    return okStatus();
  }

  // Sends `stream` what it does not hold of `type_url`; with `always`, also an empty response.
  // Called with push_mutex held.
  void sendDelta(OpenStream& stream, const std::string& type_url, bool always) {
    discovery::DeltaDiscoveryResponse response;
    {
      const std::lock_guard lock(mutex);
      auto& held = stream.held[type_url];
      const auto& current = resources[type_url];
      Response record{stream.id, type_url, {}, {}, {}, {}};
      for (const auto& [name, entry] : current) {
        auto found = held.find(name);
        if (found != held.end() && found->second == entry.version) continue;
        auto* resource = response.add_resources();
        resource->set_name(name);
        resource->set_version(entry.version);
        *resource->mutable_resource() = entry.any;
        held[name] = entry.version;
        record.names.push_back(name);
      }
      for (auto it = held.begin(); it != held.end();) {
        if (current.count(it->first) != 0) {
          ++it;
          continue;
        }
        response.add_removed_resources(it->first);
        record.removed.push_back(it->first);
        it = held.erase(it);
      }
      if (!always && response.resources_size() == 0 && response.removed_resources_size() == 0) {
        return;
      }
      response.set_type_url(type_url);
      response.set_nonce(fmt::format("nonce-{}", ++nonce));
      response.set_system_version_info(fmt::format("{}", version));
      record.nonce = response.nonce();
      record.version = response.system_version_info();
      responses.push_back(std::move(record));
    }
    changed.notify_all();
    stream.stream->Write(response);
  }

  void push(const std::string& type_url) {
    const std::lock_guard push_lock(push_mutex);
    std::vector<std::shared_ptr<OpenStream>> targets;
    {
      const std::lock_guard lock(mutex);
      for (const auto& stream : open) {
        if (stream->subscribed.count(type_url) != 0) targets.push_back(stream);
      }
    }
    for (const auto& stream : targets) sendDelta(*stream, type_url, false);
  }

  grpc::Status DeltaAggregatedResources(grpc::ServerContext* context, Stream* rw) override {
    auto stream = std::make_shared<OpenStream>();
    stream->stream = rw;
    {
      const std::lock_guard lock(mutex);
      stream->id = ++next_stream;
      IstiodStandin::Stream record{stream->id, metadataValue(*context, "authorization"),
                                   metadataValue(*context, "clusterid"), false};
      record.refused = !options.token.empty() && record.authorization != "Bearer " + options.token;
      streams.push_back(record);
      if (record.refused) {
        changed.notify_all();
        return {grpc::StatusCode::UNAUTHENTICATED, "authentication failure"};
      }
      open.insert(stream);
    }
    changed.notify_all();

    discovery::DeltaDiscoveryRequest request;
    while (rw->Read(&request)) {
      Request record;
      record.stream = stream->id;
      record.node_id = request.node().id();
      for (const auto& [key, value] : request.node().metadata().fields()) {
        if (value.has_string_value()) record.node_metadata[key] = value.string_value();
      }
      record.type_url = request.type_url();
      record.subscribe.assign(request.resource_names_subscribe().begin(),
                              request.resource_names_subscribe().end());
      record.initial_resource_versions.insert(request.initial_resource_versions().begin(),
                                              request.initial_resource_versions().end());
      record.response_nonce = request.response_nonce();
      record.nack = request.has_error_detail();
      record.error_message = request.error_detail().message();
      bool subscribes = false;
      {
        const std::lock_guard lock(mutex);
        requests.push_back(std::move(record));
        if (request.response_nonce().empty() && stream->subscribed.count(request.type_url()) == 0) {
          subscribes = true;
        }
      }
      changed.notify_all();
      if (subscribes) {
        const std::lock_guard push_lock(push_mutex);
        {
          const std::lock_guard lock(mutex);
          stream->subscribed.insert(request.type_url());
          auto& held = stream->held[request.type_url()];
          held.clear();
          held.insert(request.initial_resource_versions().begin(),
                      request.initial_resource_versions().end());
        }
        sendDelta(*stream, request.type_url(), true);
      }
    }
    {
      const std::lock_guard push_lock(push_mutex);
      const std::lock_guard lock(mutex);
      open.erase(stream);
    }
    changed.notify_all();
    return grpc::Status::OK;
  }
};

Result<std::unique_ptr<IstiodStandin>> IstiodStandin::start(Options options) {
  auto impl = std::make_unique<Impl>();
  auto tls = makeTls(options.root_cert_pem, options.root_key_pem);
  if (!tls) return tls.error();
  impl->tls = std::move(*tls);
  const auto colon = options.address.rfind(':');
  if (colon == std::string::npos) {
    return Error::invalid(fmt::format("istiod stand-in: address {} has no port", options.address));
  }
  impl->host = options.address.substr(0, colon);
  const std::string port = options.address.substr(colon + 1);
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), impl->port);
  if (error != std::errc() || end != port.data() + port.size() || impl->port < 0 ||
      impl->port > 65535) {
    return Error::invalid(fmt::format("istiod stand-in: bad port in {}", options.address));
  }
  impl->options = std::move(options);
  if (auto served = impl->serve(); !served) return served.error();
  return std::make_unique<IstiodStandin>(std::move(impl));
}

IstiodStandin::IstiodStandin(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

IstiodStandin::~IstiodStandin() {
  stop();
}

void IstiodStandin::stop() {
  if (!impl_->server) return;
  // A deadline of now cancels the open streams instead of waiting for them to end.
  impl_->server->Shutdown(std::chrono::system_clock::now());
  impl_->server->Wait();
  impl_->server.reset();
}

Status IstiodStandin::restart() {
  if (impl_->server) return okStatus();
  return impl_->serve();
}

std::string IstiodStandin::address() const {
  return fmt::format("{}:{}", impl_->host, impl_->port);
}

const std::string& IstiodStandin::rootCertPem() const {
  return impl_->tls.root_cert_pem;
}

const std::string& IstiodStandin::rootKeyPem() const {
  return impl_->tls.root_key_pem;
}

void IstiodStandin::setResource(const std::string& type_url, const std::string& name,
                                const google::protobuf::Message& message) {
  {
    const std::lock_guard lock(impl_->mutex);
    auto& entry = impl_->resources[type_url][name];
    entry.version = fmt::format("{}", ++impl_->version);
    entry.any.PackFrom(message);
  }
  impl_->push(type_url);
}

void IstiodStandin::setRawResource(const std::string& type_url, const std::string& name,
                                   const std::string& any_type_url, const std::string& bytes) {
  {
    const std::lock_guard lock(impl_->mutex);
    auto& entry = impl_->resources[type_url][name];
    entry.version = fmt::format("{}", ++impl_->version);
    entry.any.set_type_url(any_type_url);
    entry.any.set_value(bytes);
  }
  impl_->push(type_url);
}

void IstiodStandin::removeResource(const std::string& type_url, const std::string& name) {
  {
    const std::lock_guard lock(impl_->mutex);
    if (impl_->resources[type_url].erase(name) == 0) return;
    ++impl_->version;
  }
  impl_->push(type_url);
}

std::vector<IstiodStandin::Request> IstiodStandin::requests() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->requests;
}

std::vector<IstiodStandin::Stream> IstiodStandin::streams() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->streams;
}

std::vector<IstiodStandin::Response> IstiodStandin::responses() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->responses;
}

bool IstiodStandin::waitForRequests(const std::function<bool(const std::vector<Request>&)>& done,
                                    std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mutex);
  return impl_->changed.wait_for(lock, timeout, [&] { return done(impl_->requests); });
}

int IstiodStandin::openStreams() const {
  const std::lock_guard lock(impl_->mutex);
  int count = 0;
  for (const auto& stream : impl_->open) count += stream->subscribed.empty() ? 0 : 1;
  return count;
}

}  // namespace nodemesh::testing
