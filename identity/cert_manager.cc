#include "identity/cert_manager.h"

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace nodemesh::identity {

namespace {

// One line per failed attempt: with the backoff, at most one per identity every 150 s in a long
// outage.
void logFailure(const SpiffeId& id, const WorkloadCertificate* current, uint32_t failures,
                std::chrono::system_clock::time_point retry_at,
                std::chrono::system_clock::time_point now, const std::string& error) {
  const auto wait = std::chrono::ceil<std::chrono::seconds>(retry_at - now).count();
  if (current != nullptr && current->notAfter() > now) {
    spdlog::warn(
        "certificate for {}: issuing failed ({}); keeping the current one (serial {}, expires in "
        "{} s); attempt {} failed, next in {} s",
        id.toString(), error, current->serialHex(),
        std::chrono::ceil<std::chrono::seconds>(current->notAfter() - now).count(), failures, wait);
  } else {
    spdlog::warn(
        "certificate for {}: issuing failed ({}) and no valid certificate is held; attempt {} "
        "failed, next in {} s",
        id.toString(), error, failures, wait);
  }
}

}  // namespace

CertificateManager::CertificateManager(CertificateIssuer& issuer, const Clock& clock,
                                       std::chrono::seconds validity)
    : issuer_(issuer), clock_(clock), validity_(validity) {}

void CertificateManager::recordFailure(Entry& entry, std::chrono::system_clock::time_point now,
                                       const Error& error) {
  ++entry.failures;
  // 1 s << (failures - 1), without overflowing the shift for long outages.
  const uint32_t doublings = std::min<uint32_t>(entry.failures - 1, 16);
  const auto delay =
      std::min<std::chrono::seconds>(kIssueRetryInitial * (1U << doublings), kIssueRetryMax);
  entry.retry_at = now + delay;
  // A certificate still in use is retried at its expiry at the latest (as ztunnel does).
  if (entry.cert && entry.cert->notAfter() > now) {
    entry.retry_at = std::min(entry.retry_at, entry.cert->notAfter());
  }
  entry.last_error = error.message;
}

std::chrono::system_clock::time_point CertificateManager::dueAt(const Entry& entry) {
  if (entry.failures > 0) return entry.retry_at;
  if (entry.cert) return entry.cert->refreshAt();
  return std::chrono::system_clock::time_point::max();  // being issued by get() right now
}

Result<std::shared_ptr<const WorkloadCertificate>> CertificateManager::get(const SpiffeId& id) {
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    const auto now = clock_.now();
    if (it != entries_.end()) {
      const Entry& entry = it->second;
      if (entry.cert && now < entry.cert->notAfter()) return entry.cert;
      if (entry.failures > 0 && now < entry.retry_at) {
        return Error{
            EAGAIN,
            fmt::format("no certificate for {}: {} (next attempt in {} s)", id.toString(),
                        entry.last_error,
                        std::chrono::ceil<std::chrono::seconds>(entry.retry_at - now).count())};
      }
    }
    ++stats_.issue_requests;
  }
  auto issued = issuer_.issue(id, validity_);
  std::lock_guard lock(mutex_);
  const auto now = clock_.now();
  Entry& slot = entries_[id];
  if (!issued) {
    ++stats_.issue_failures;
    recordFailure(slot, now, issued.error());
    logFailure(id, slot.cert.get(), slot.failures, slot.retry_at, now, slot.last_error);
    return issued.error();
  }
  // Another thread may have issued concurrently: keep the one already stored if still valid,
  // so that every caller shares one certificate per identity.
  if (!slot.cert || now >= slot.cert->notAfter()) slot.cert = std::move(issued).value();
  slot.failures = 0;
  slot.last_error.clear();
  return slot.cert;
}

size_t CertificateManager::rotateDue() {
  std::vector<std::pair<SpiffeId, std::shared_ptr<const WorkloadCertificate>>> due;
  {
    std::lock_guard lock(mutex_);
    const auto now = clock_.now();
    for (const auto& [id, entry] : entries_) {
      if (now >= dueAt(entry)) due.emplace_back(id, entry.cert);
    }
    stats_.issue_requests += due.size();
  }
  size_t issued_count = 0;
  for (auto& [id, old_cert] : due) {
    auto issued = issuer_.issue(id, validity_);
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (!issued) {
      ++stats_.issue_failures;
      if (old_cert) ++stats_.rotation_failures;
      // Forgotten meanwhile: nothing to retry.
      if (it == entries_.end()) continue;
      const auto now = clock_.now();
      Entry& entry = it->second;
      recordFailure(entry, now, issued.error());
      logFailure(id, entry.cert.get(), entry.failures, entry.retry_at, now, entry.last_error);
      continue;
    }
    // Forgotten meanwhile, or already replaced by get(): leave it alone.
    if (it == entries_.end() || it->second.cert != old_cert) continue;
    it->second.cert = std::move(issued).value();
    it->second.failures = 0;
    it->second.last_error.clear();
    if (old_cert) ++stats_.rotations;
    ++issued_count;
  }
  return issued_count;
}

void CertificateManager::forget(const SpiffeId& id) {
  std::lock_guard lock(mutex_);
  entries_.erase(id);
}

size_t CertificateManager::size() const {
  std::lock_guard lock(mutex_);
  return static_cast<size_t>(std::count_if(entries_.begin(), entries_.end(),
                                           [](const auto& entry) { return entry.second.cert; }));
}

std::vector<std::shared_ptr<const WorkloadCertificate>> CertificateManager::certificates() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<const WorkloadCertificate>> out;
  out.reserve(entries_.size());
  for (const auto& entry : entries_) {
    if (entry.second.cert) out.push_back(entry.second.cert);
  }
  return out;
}

uint64_t CertificateManager::rotationFailures() const {
  std::lock_guard lock(mutex_);
  return stats_.rotation_failures;
}

CertificateManagerStats CertificateManager::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::vector<CertificateStatus> CertificateManager::status() const {
  std::lock_guard lock(mutex_);
  const auto now = clock_.now();
  std::vector<CertificateStatus> out;
  out.reserve(entries_.size());
  for (const auto& [id, entry] : entries_) {
    CertificateStatus s{
        .identity = id,
        .certificate = entry.cert,
        .time_to_expiry =
            entry.cert ? entry.cert->notAfter() - now : std::chrono::system_clock::duration::zero(),
        .consecutive_failures = entry.failures,
        .next_attempt =
            entry.failures > 0 ? entry.retry_at : std::chrono::system_clock::time_point{},
        .last_error = entry.last_error,
    };
    out.push_back(std::move(s));
  }
  return out;
}

std::chrono::system_clock::time_point CertificateManager::nextRotation() const {
  std::lock_guard lock(mutex_);
  auto next = std::chrono::system_clock::time_point::max();
  for (const auto& entry : entries_) next = std::min(next, dueAt(entry.second));
  return next;
}

}  // namespace nodemesh::identity
