#include "identity/cert_manager.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace nodemesh::identity {

CertificateManager::CertificateManager(CertificateIssuer& issuer, const Clock& clock,
                                       std::chrono::seconds validity)
    : issuer_(issuer), clock_(clock), validity_(validity) {}

Result<std::shared_ptr<const WorkloadCertificate>> CertificateManager::get(const SpiffeId& id) {
  {
    std::lock_guard lock(mutex_);
    auto it = certs_.find(id);
    if (it != certs_.end() && clock_.now() < it->second->notAfter()) return it->second;
  }
  auto issued = issuer_.issue(id, validity_);
  if (!issued) return issued.error();
  std::lock_guard lock(mutex_);
  auto& slot = certs_[id];
  // Another thread may have issued concurrently: keep the one already stored if still valid,
  // so that every caller shares one certificate per identity.
  if (!slot || clock_.now() >= slot->notAfter()) slot = std::move(issued).value();
  return slot;
}

size_t CertificateManager::rotateDue() {
  std::vector<std::pair<SpiffeId, std::shared_ptr<const WorkloadCertificate>>> due;
  {
    std::lock_guard lock(mutex_);
    const auto now = clock_.now();
    for (const auto& [id, cert] : certs_) {
      if (now >= cert->refreshAt()) due.emplace_back(id, cert);
    }
  }
  size_t rotated = 0;
  for (auto& [id, old_cert] : due) {
    auto issued = issuer_.issue(id, validity_);
    std::lock_guard lock(mutex_);
    if (!issued) {
      ++rotation_failures_;
      continue;
    }
    auto it = certs_.find(id);
    // Forgotten meanwhile, or already replaced by get() after expiry: leave it alone.
    if (it == certs_.end() || it->second != old_cert) continue;
    it->second = std::move(issued).value();
    ++rotated;
  }
  return rotated;
}

void CertificateManager::forget(const SpiffeId& id) {
  std::lock_guard lock(mutex_);
  certs_.erase(id);
}

size_t CertificateManager::size() const {
  std::lock_guard lock(mutex_);
  return certs_.size();
}

std::vector<std::shared_ptr<const WorkloadCertificate>> CertificateManager::certificates() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<const WorkloadCertificate>> out;
  out.reserve(certs_.size());
  for (const auto& entry : certs_) out.push_back(entry.second);
  return out;
}

uint64_t CertificateManager::rotationFailures() const {
  std::lock_guard lock(mutex_);
  return rotation_failures_;
}

std::chrono::system_clock::time_point CertificateManager::nextRotation() const {
  std::lock_guard lock(mutex_);
  auto next = std::chrono::system_clock::time_point::max();
  for (const auto& entry : certs_) next = std::min(next, entry.second->refreshAt());
  return next;
}

}  // namespace nodemesh::identity
