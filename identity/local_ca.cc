#include "identity/local_ca.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/fd.h"

namespace nodemesh::identity {
namespace {

constexpr size_t kMaxPemFileBytes = 1 << 20;
constexpr int kSerialBytes = 16;

// ---- files ----

Status makeDirs(const std::string& path) {
  if (path.empty()) return Error::invalid("CA state directory: empty path");
  for (size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
    const std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return Error::fromErrno("creating CA state directory " + prefix);
    }
    if (pos == std::string::npos) break;
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Error::fromErrno("CA state directory " + path);
  if (!S_ISDIR(st.st_mode))
    return Error{ENOTDIR, "CA state directory " + path + ": not a directory"};
  return okStatus();
}

// Whether `name` exists in `dir_fd` (lstat: a dangling symlink counts as existing, and is
// then refused by readPemFile).
Result<bool> exists(int dir_fd, const std::string& dir, const char* name) {
  struct stat st {};
  if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) return true;
  if (errno == ENOENT) return false;
  return Error::fromErrno("stat " + dir + "/" + name);
}

// Reads a small regular file. With `private_file`, refuses one that group or others can
// access, as OpenSSH does for private keys.
Result<std::string> readPemFile(int dir_fd, const std::string& dir, const char* name,
                                bool private_file) {
  const std::string path = dir + "/" + name;
  UniqueFd fd(::openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return Error::fromErrno("opening " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::fromErrno("stat " + path);
  if (!S_ISREG(st.st_mode)) return Error::invalid(path + ": not a regular file");
  if (private_file && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    std::array<char, 8> mode{};
    std::snprintf(mode.data(), mode.size(), "%04o", st.st_mode & 07777);
    return Error{EACCES, path + " is accessible by group or others (mode " + mode.data() +
                             "); refusing to use the CA key: chmod 600 it"};
  }
  if (st.st_size > static_cast<off_t>(kMaxPemFileBytes)) {
    return Error::invalid(path + ": larger than 1 MiB, not a PEM file");
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::read(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::fromErrno("reading " + path);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  data.resize(done);
  return data;
}

Status writeAll(int fd, const char* data, size_t len, const std::string& what) {
  while (len > 0) {
    const ssize_t n = ::write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::fromErrno("writing " + what);
    data += n;
    len -= static_cast<size_t>(n);
  }
  return okStatus();
}

// Writes `name` in `dir_fd` as a whole or not at all: temp file (0600), fsync, rename. A reader
// that does not take the lock sees either no file or the complete one.
Status writeFileAtomically(int dir_fd, const std::string& dir, const char* name, const char* data,
                           size_t len) {
  std::array<unsigned char, 8> rnd{};
  if (RAND_bytes(rnd.data(), rnd.size()) != 1) return opensslError("RAND_bytes");
  std::string tmp = std::string(".") + name + ".tmp.";
  for (unsigned char b : rnd) {
    constexpr std::string_view kHex = "0123456789abcdef";
    tmp += kHex[b >> 4];
    tmp += kHex[b & 0xf];
  }
  const std::string path = dir + "/" + name;
  UniqueFd fd(
      ::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return Error::fromErrno("creating " + dir + "/" + tmp);
  Status st = writeAll(fd.get(), data, len, path);
  if (st && ::fchmod(fd.get(), 0600) != 0) st = Error::fromErrno("chmod " + path);
  if (st && ::fsync(fd.get()) != 0) st = Error::fromErrno("fsync " + path);
  fd.reset();
  if (st && ::renameat(dir_fd, tmp.c_str(), dir_fd, name) != 0) {
    st = Error::fromErrno("renaming into " + path);
  }
  if (!st) {
    ::unlinkat(dir_fd, tmp.c_str(), 0);
    return st;
  }
  return okStatus();
}

// ---- certificates ----

// A positive 127-bit random serial (RFC 5280 4.1.2.2: positive, at most 20 octets; CA/B
// Forum: at least 64 bits of entropy).
Status setRandomSerial(X509* cert) {
  std::array<unsigned char, kSerialBytes> bytes{};
  if (RAND_bytes(bytes.data(), bytes.size()) != 1) return opensslError("RAND_bytes");
  bytes[0] &= 0x7f;
  bytes[0] |= 0x01;  // never zero, never shorter than expected
  BignumPtr bn(BN_bin2bn(bytes.data(), bytes.size(), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return opensslError("setting the certificate serial");
  }
  return okStatus();
}

Status setValidity(X509* cert, std::chrono::system_clock::time_point not_before,
                   std::chrono::system_clock::time_point not_after) {
  if (ASN1_TIME_set(X509_getm_notBefore(cert), std::chrono::system_clock::to_time_t(not_before)) ==
          nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert), std::chrono::system_clock::to_time_t(not_after)) ==
          nullptr) {
    return opensslError("setting the certificate validity");
  }
  return okStatus();
}

// An extension from its fixed config text ("critical,CA:TRUE"). Only for constant values: the
// config syntax splits on commas, so names go through addUriSan instead.
Status addExtension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return opensslError(std::string("adding certificate extension ") + OBJ_nid2sn(nid) + "=" +
                        value);
  }
  return okStatus();
}

Status addUriSan(X509* cert, const std::string& uri) {
  auto names = uriGeneralNames(uri);
  if (!names) return names.error();
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names->get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return opensslError("adding the URI SAN");
  }
  return okStatus();
}

Status addNameEntry(X509_NAME* name, const char* field, std::string_view value) {
  if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(value.data()),
                                 static_cast<int>(value.size()), -1, 0) != 1) {
    return opensslError(std::string("setting certificate name ") + field);
  }
  return okStatus();
}

struct RootCa {
  EvpPkeyPtr key;
  X509Ptr cert;
};

Result<RootCa> createRoot(const std::string& trust_domain, const Clock& clock) {
  auto key = generateP256Key();
  if (!key) return key.error();
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return opensslError("creating the root certificate");
  }
  if (auto st = setRandomSerial(cert.get()); !st) return st.error();
  const auto now = clock.now();
  if (auto st = setValidity(cert.get(), now - LocalCa::kBackdate, now + LocalCa::kRootValidity);
      !st) {
    return st.error();
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  // RFC 5280 ub-common-name: 64 characters; the URI SAN carries the full trust domain.
  const std::string cn = ("nodemesh local CA " + trust_domain).substr(0, 64);
  if (auto st = addNameEntry(name, "O", "nodemesh"); !st) return st.error();
  if (auto st = addNameEntry(name, "CN", cn); !st) return st.error();
  if (X509_set_issuer_name(cert.get(), name) != 1 || X509_set_pubkey(cert.get(), key->get()) != 1) {
    return opensslError("creating the root certificate");
  }
  X509V3_CTX ctx{};
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  // pathlen:0: this root signs workload certificates directly, never a sub-CA.
  for (const auto& [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                                   std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                                   std::pair{NID_subject_key_identifier, "hash"}}) {
    if (auto st = addExtension(cert.get(), &ctx, nid, value); !st) return st.error();
  }
  if (auto st = addUriSan(cert.get(), "spiffe://" + trust_domain); !st) return st.error();
  if (X509_sign(cert.get(), key->get(), EVP_sha256()) <= 0) {
    return opensslError("signing the root certificate");
  }
  return RootCa{std::move(key).value(), std::move(cert)};
}

// Whether `cert` has the URI SAN `uri`.
bool hasUriSan(X509* cert, std::string_view uri) {
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return false;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = name->d.uniformResourceIdentifier;
    if (std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<size_t>(ASN1_STRING_length(s))) == uri) {
      return true;
    }
  }
  return false;
}

// Refuses interactive passphrase prompts: without this, PEM_read_bio_PrivateKey on an
// encrypted key asks on the controlling terminal.
int noPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) {
  return -1;
}

Result<RootCa> loadRoot(int dir_fd, const std::string& dir, const std::string& trust_domain,
                        const Clock& clock) {
  const std::string key_path = dir + "/" + LocalCa::kKeyFile;
  const std::string cert_path = dir + "/" + LocalCa::kCertFile;
  auto key_pem = readPemFile(dir_fd, dir, LocalCa::kKeyFile, /*private_file=*/true);
  if (!key_pem) return key_pem.error();
  EvpPkeyPtr key;
  {
    BioPtr bio(BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size())));
    ERR_clear_error();
    if (bio) key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassphrase, nullptr));
    OPENSSL_cleanse(key_pem->data(), key_pem->size());
    if (!key) return opensslError(key_path + ": not a valid unencrypted PEM private key", EINVAL);
  }
  auto cert_pem = readPemFile(dir_fd, dir, LocalCa::kCertFile, /*private_file=*/false);
  if (!cert_pem) return cert_pem.error();
  X509Ptr cert;
  {
    BioPtr bio(BIO_new_mem_buf(cert_pem->data(), static_cast<int>(cert_pem->size())));
    ERR_clear_error();
    if (bio) cert.reset(PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr));
    if (!cert) return opensslError(cert_path + ": not a valid PEM certificate", EINVAL);
  }
  ERR_clear_error();
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return opensslError(cert_path + " does not match " + key_path, EINVAL);
  }
  if (X509_check_ca(cert.get()) == 0 || (X509_get_key_usage(cert.get()) & KU_KEY_CERT_SIGN) == 0) {
    return Error::invalid(cert_path + " is not a CA certificate (CA:TRUE, keyCertSign)");
  }
  if (!hasUriSan(cert.get(), "spiffe://" + trust_domain)) {
    return Error::invalid(cert_path + " is not a root for trust domain '" + trust_domain +
                          "' (no URI SAN spiffe://" + trust_domain + ")");
  }
  auto not_after = asn1TimeToTimePoint(X509_get0_notAfter(cert.get()));
  if (!not_after) return Error::invalid(cert_path + ": " + not_after.error().message);
  if (*not_after <= clock.now()) {
    return Error::invalid(cert_path + " has expired; move the CA files away to create a new root");
  }
  ERR_clear_error();
  return RootCa{std::move(key), std::move(cert)};
}

Status storeRoot(int dir_fd, const std::string& dir, const RootCa& root) {
  // The key's PEM goes through secure-heap memory that is cleansed on free.
  BioPtr key_bio(BIO_new(BIO_s_secmem()));
  if (!key_bio || PEM_write_bio_PrivateKey(key_bio.get(), root.key.get(), nullptr, nullptr, 0,
                                           nullptr, nullptr) != 1) {
    return opensslError("encoding the CA key");
  }
  char* key_data = nullptr;
  const long key_len = BIO_get_mem_data(key_bio.get(), &key_data);
  auto cert_pem = certificateToPem(root.cert.get());
  if (!cert_pem) return cert_pem.error();
  // Key first: a crash in between leaves a key without a certificate, which the next start
  // recognizes as an unfinished creation (no root was ever handed out) and redoes.
  if (auto st = writeFileAtomically(dir_fd, dir, LocalCa::kKeyFile, key_data,
                                    static_cast<size_t>(key_len));
      !st) {
    return st;
  }
  if (auto st =
          writeFileAtomically(dir_fd, dir, LocalCa::kCertFile, cert_pem->data(), cert_pem->size());
      !st) {
    return st;
  }
  if (::fsync(dir_fd) != 0) return Error::fromErrno("fsync " + dir);
  return okStatus();
}

}  // namespace

LocalCa::LocalCa(ConstructionTag /*tag*/, std::string trust_domain, const Clock& clock,
                 EvpPkeyPtr key, X509Ptr cert, std::string pem,
                 std::chrono::system_clock::time_point root_not_after)
    : trust_domain_(std::move(trust_domain)),
      clock_(clock),
      root_key_(std::move(key)),
      root_cert_(std::move(cert)),
      root_pem_(std::move(pem)),
      root_not_after_(root_not_after) {}

Result<std::unique_ptr<LocalCa>> LocalCa::loadOrCreate(const std::string& state_dir,
                                                       const std::string& trust_domain,
                                                       const Clock& clock) {
  if (auto st = SpiffeId::validateTrustDomain(trust_domain); !st) return st.error();
  if (auto st = makeDirs(state_dir); !st) return st.error();
  UniqueFd dir_fd(::open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid()) return Error::fromErrno("opening CA state directory " + state_dir);

  // flock, not fcntl: fcntl locks belong to the process, so two threads (or two simulated
  // nodes in one test process) would both "hold" it. The lock drops when lock_fd closes.
  UniqueFd lock_fd(
      ::openat(dir_fd.get(), kLockFile, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock_fd.valid()) return Error::fromErrno("opening " + state_dir + "/" + kLockFile);
  while (::flock(lock_fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return Error::fromErrno("locking " + state_dir + "/" + kLockFile);
  }

  auto have_key = exists(dir_fd.get(), state_dir, kKeyFile);
  if (!have_key) return have_key.error();
  auto have_cert = exists(dir_fd.get(), state_dir, kCertFile);
  if (!have_cert) return have_cert.error();
  if (!*have_key && *have_cert) {
    return Error{ENOENT, state_dir + "/" + kCertFile + " exists but " + kKeyFile +
                             " is missing; restore the key or move the certificate away"};
  }

  RootCa root;
  if (*have_cert) {
    auto loaded = loadRoot(dir_fd.get(), state_dir, trust_domain, clock);
    if (!loaded) return loaded.error();
    root = std::move(loaded).value();
  } else {
    auto created = createRoot(trust_domain, clock);
    if (!created) return created.error();
    if (auto st = storeRoot(dir_fd.get(), state_dir, *created); !st) return st.error();
    root = std::move(created).value();
  }
  auto pem = certificateToPem(root.cert.get());
  if (!pem) return pem.error();
  auto not_after = asn1TimeToTimePoint(X509_get0_notAfter(root.cert.get()));
  if (!not_after) return not_after.error();
  return std::make_unique<LocalCa>(ConstructionTag(), trust_domain, clock, std::move(root.key),
                                   std::move(root.cert), std::move(pem).value(), *not_after);
}

Result<std::shared_ptr<const WorkloadCertificate>> LocalCa::issue(const SpiffeId& id,
                                                                  std::chrono::seconds validity) {
  auto key = generateP256Key();
  if (!key) return key.error();
  auto cert = signPublicKey(id, key->get(), validity);
  if (!cert) return cert.error();
  return WorkloadCertificate::create(std::move(key).value(), std::move(cert).value(), {});
}

Result<X509Ptr> LocalCa::signPublicKey(const SpiffeId& id, EVP_PKEY* public_key,
                                       std::chrono::seconds validity) {
  if (id.trustDomain() != trust_domain_) {
    return Error::invalid("local CA for trust domain '" + trust_domain_ + "' cannot issue for " +
                          id.toString());
  }
  if (validity <= std::chrono::seconds(0)) {
    return Error::invalid("certificate validity must be positive");
  }
  if (public_key == nullptr) return Error::invalid("no public key to sign");
  const auto now = clock_.now();
  const auto not_after =
      std::min<std::chrono::system_clock::time_point>(now + validity, root_not_after_);
  if (not_after <= now) return Error::invalid("local CA root has expired");

  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return opensslError("creating a workload certificate");
  }
  if (auto st = setRandomSerial(cert.get()); !st) return st.error();
  // Backdated for clock skew between nodes, but never by more than a tenth of the lifetime:
  // the half-life (rotation) stays close to half-way from issue for short lifetimes too.
  auto backdate = std::min<std::chrono::seconds>(kBackdate, validity / 10);
  if (auto st = setValidity(cert.get(), now - backdate, not_after); !st) return st.error();
  if (auto st = addNameEntry(X509_get_subject_name(cert.get()), "O", "nodemesh"); !st) {
    return st.error();
  }
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(root_cert_.get())) != 1 ||
      X509_set_pubkey(cert.get(), public_key) != 1) {
    return opensslError("creating a workload certificate");
  }
  X509V3_CTX ctx{};
  X509V3_set_ctx(&ctx, root_cert_.get(), cert.get(), nullptr, nullptr, 0);
  for (const auto& [nid, value] :
       {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
        std::pair{NID_key_usage, "critical,digitalSignature,keyEncipherment"},
        std::pair{NID_ext_key_usage, "serverAuth,clientAuth"},
        std::pair{NID_authority_key_identifier, "keyid"}}) {
    if (auto st = addExtension(cert.get(), &ctx, nid, value); !st) return st.error();
  }
  if (auto st = addUriSan(cert.get(), id.toString()); !st) return st.error();
  {
    std::lock_guard lock(sign_mutex_);
    if (X509_sign(cert.get(), root_key_.get(), EVP_sha256()) <= 0) {
      return opensslError("signing a workload certificate for " + id.toString());
    }
  }
  return cert;
}

}  // namespace nodemesh::identity
