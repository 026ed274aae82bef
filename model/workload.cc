#include "model/workload.h"

namespace nodemesh::model {

std::string_view toString(Protocol protocol) {
  switch (protocol) {
    case Protocol::Tcp:
      return "TCP";
    case Protocol::Hbone:
      return "HBONE";
  }
  return "unknown";
}

std::string_view toString(NetworkMode mode) {
  switch (mode) {
    case NetworkMode::Standard:
      return "Standard";
    case NetworkMode::HostNetwork:
      return "HostNetwork";
  }
  return "unknown";
}

std::string_view toString(HealthStatus status) {
  switch (status) {
    case HealthStatus::Healthy:
      return "Healthy";
    case HealthStatus::Unhealthy:
      return "Unhealthy";
  }
  return "unknown";
}

std::string_view toString(AppProtocol protocol) {
  switch (protocol) {
    case AppProtocol::Unknown:
      return "UNKNOWN";
    case AppProtocol::Http11:
      return "HTTP11";
    case AppProtocol::Http2:
      return "HTTP2";
    case AppProtocol::Grpc:
      return "GRPC";
    case AppProtocol::Tcp:
      return "TCP";
    case AppProtocol::Tls:
      return "TLS";
  }
  return "unknown";
}

std::string Workload::identity() const {
  return "spiffe://" + trust_domain + "/ns/" + namespace_name + "/sa/" + service_account;
}

}  // namespace nodemesh::model
