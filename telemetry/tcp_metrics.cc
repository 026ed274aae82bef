#include "telemetry/tcp_metrics.h"

#include <algorithm>

namespace nodemesh::telemetry {

namespace {

enum Label : size_t {
  kReporter,
  kSourceWorkload,
  kSourceCanonicalService,
  kSourceCanonicalRevision,
  kSourceWorkloadNamespace,
  kSourcePrincipal,
  kSourceApp,
  kSourceVersion,
  kSourceCluster,
  kDestinationService,
  kDestinationServiceNamespace,
  kDestinationServiceName,
  kDestinationWorkload,
  kDestinationCanonicalService,
  kDestinationCanonicalRevision,
  kDestinationWorkloadNamespace,
  kDestinationPrincipal,
  kDestinationApp,
  kDestinationVersion,
  kDestinationCluster,
  kRequestProtocol,
  kResponseFlags,
  kConnectionSecurityPolicy,
};

std::string seriesKey(const TcpLabels& labels) {
  std::string key;
  for (const auto& v : labels) {
    key += v;
    key += '\x1f';
  }
  return key;
}

}  // namespace

TcpLabels makeTcpLabels(const TcpLabelInput& in) {
  TcpLabels l;
  l[kReporter] = in.reporter;
  l[kSourceWorkload] = in.source.workload;
  l[kSourceCanonicalService] = in.source.canonical_service;
  l[kSourceCanonicalRevision] = in.source.canonical_revision;
  l[kSourceWorkloadNamespace] = in.source.workload_namespace;
  l[kSourcePrincipal] = orUnknown(in.source_principal);
  l[kSourceApp] = in.source.app;
  l[kSourceVersion] = in.source.version;
  l[kSourceCluster] = in.source.cluster;
  l[kDestinationService] = in.service.service;
  l[kDestinationServiceNamespace] = in.service.service_namespace;
  l[kDestinationServiceName] = in.service.service_name;
  l[kDestinationWorkload] = in.destination.workload;
  l[kDestinationCanonicalService] = in.destination.canonical_service;
  l[kDestinationCanonicalRevision] = in.destination.canonical_revision;
  l[kDestinationWorkloadNamespace] = in.destination.workload_namespace;
  l[kDestinationPrincipal] = orUnknown(in.destination_principal);
  l[kDestinationApp] = in.destination.app;
  l[kDestinationVersion] = in.destination.version;
  l[kDestinationCluster] = in.destination.cluster;
  l[kRequestProtocol] = "tcp";
  l[kResponseFlags] = in.response_flags;
  l[kConnectionSecurityPolicy] = in.connection_security_policy;
  return l;
}

TcpMetrics::Series& TcpMetrics::slot(std::string key, TcpLabels labels) {
  auto [it, inserted] = series_.try_emplace(std::move(key));
  if (inserted) it->second.labels = std::make_shared<const TcpLabels>(std::move(labels));
  return it->second;
}

void TcpMetrics::recordOpen(TcpLabels labels) {
  std::string key = seriesKey(labels);
  std::lock_guard<std::mutex> lock(mu_);
  ++slot(std::move(key), std::move(labels)).opened;
}

void TcpMetrics::recordClose(TcpLabels labels, uint64_t received_bytes, uint64_t sent_bytes) {
  std::string key = seriesKey(labels);
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = slot(std::move(key), std::move(labels));
  ++s.closed;
  s.received_bytes += received_bytes;
  s.sent_bytes += sent_bytes;
}

std::vector<TcpMetrics::Series> TcpMetrics::series() const {
  std::vector<Series> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.reserve(series_.size());
    for (const auto& [key, s] : series_) out.push_back(s);
  }
  std::sort(out.begin(), out.end(),
            [](const Series& a, const Series& b) { return *a.labels < *b.labels; });
  return out;
}

void TcpMetrics::write(PrometheusText& out) const {
  const auto all = series();
  // Each series' label text once, for all four families.
  std::vector<std::string> label_text;
  label_text.reserve(all.size());
  for (const Series& s : all) {
    Labels labels;
    labels.reserve(kTcpLabelNames.size());
    for (size_t i = 0; i < kTcpLabelNames.size(); ++i) {
      labels.emplace_back(kTcpLabelNames[i], (*s.labels)[i]);
    }
    label_text.push_back(PrometheusText::formatLabels(labels));
  }
  struct Family {
    const char* name;
    const char* help;
    uint64_t Series::*value;
  };
  static constexpr std::array<Family, 4> kFamilies = {{
      {"istio_tcp_connections_opened_total", "The total number of TCP connections opened",
       &Series::opened},
      {"istio_tcp_connections_closed_total", "The total number of TCP connections closed",
       &Series::closed},
      {"istio_tcp_received_bytes_total",
       "Bytes received from the client (sent to the destination), counted when the connection "
       "closes",
       &Series::received_bytes},
      {"istio_tcp_sent_bytes_total",
       "Bytes sent to the client (received from the destination), counted when the connection "
       "closes",
       &Series::sent_bytes},
  }};
  for (const Family& f : kFamilies) {
    out.family(f.name, "counter", f.help);
    for (size_t i = 0; i < all.size(); ++i) {
      const Series& s = all[i];
      // Opened samples for label sets seen at open, the others for label sets seen at close
      // (response_flags="DENY" only at close, as in ztunnel).
      const bool present = f.value == &Series::opened ? s.opened > 0 : s.closed > 0;
      if (!present) continue;
      out.sampleFormatted(f.name, label_text[i], s.*f.value);
    }
  }
}

}  // namespace nodemesh::telemetry
