#pragma once

// istiod's resources -> the model: each function checks one resource the way ztunnel does and
// converts it, or fails with an error naming the resource and the field ("workload
// cluster1//Pod/shop/cart-1: addresses[1]: 5 bytes, want 4 or 16"). A failed resource is NACKed
// by the xDS client; the others of the same response still apply.

#include "common/result.h"
#include "model/authorization.h"
#include "model/service.h"
#include "model/workload.h"

namespace istio::workload {
class Workload;
class Service;
}  // namespace istio::workload
namespace istio::security {
class Authorization;
}  // namespace istio::security

namespace nodemesh::xds {

Result<model::Workload> toWorkload(const istio::workload::Workload& workload);
Result<model::Service> toService(const istio::workload::Service& service);
Result<model::Authorization> toAuthorization(const istio::security::Authorization& policy);

}  // namespace nodemesh::xds
