#include "agent/metrics/tcp_metrics.h"

#include <algorithm>

#include "agent/metrics/connection_peers.h"

namespace nodemesh::agent::metrics {

namespace {

constexpr const char* kUnknown = "unknown";

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

std::string orUnknown(const std::string& s) {
  return s.empty() ? kUnknown : s;
}

// Istio's workload labels: the workload (deployment) name, falling back to the pod's name; the
// canonical service (app) and revision (version), falling back like istiod does (the workload
// name, "latest").
void workloadLabels(const model::Workload* w, TcpLabels& l, size_t workload, size_t service,
                    size_t revision, size_t ns, size_t app, size_t version, size_t cluster) {
  if (!w) {
    for (size_t i : {workload, service, revision, ns, app, version, cluster}) l[i] = kUnknown;
    return;
  }
  l[workload] = w->workload_name.empty() ? w->name : w->workload_name;
  l[service] = w->canonical_name.empty() ? l[workload] : w->canonical_name;
  l[revision] = w->canonical_revision.empty() ? "latest" : w->canonical_revision;
  l[ns] = orUnknown(w->namespace_name);
  l[app] = l[service];
  l[version] = l[revision];
  l[cluster] = orUnknown(w->cluster_id);
}

std::string seriesKey(const TcpLabels& labels) {
  std::string key;
  for (const auto& v : labels) {
    key += v;
    key += '\x1f';
  }
  return key;
}

}  // namespace

TcpLabels tcpLabels(const model::Snapshot* snapshot, const tunnel::ConnectionRecord& r,
                    bool closing) {
  TcpLabels l;
  ConnectionPeers peers;
  if (snapshot) peers = resolvePeers(*snapshot, r);
  const bool outbound = r.direction == tunnel::Direction::kOutbound;
  const bool mtls = r.transport == tunnel::Transport::kHbone;
  l[kReporter] = outbound ? "source" : "destination";
  workloadLabels(peers.source, l, kSourceWorkload, kSourceCanonicalService,
                 kSourceCanonicalRevision, kSourceWorkloadNamespace, kSourceApp, kSourceVersion,
                 kSourceCluster);
  workloadLabels(peers.destination, l, kDestinationWorkload, kDestinationCanonicalService,
                 kDestinationCanonicalRevision, kDestinationWorkloadNamespace, kDestinationApp,
                 kDestinationVersion, kDestinationCluster);
  // Principals are what mutual TLS proved (HBONE), unknown for plaintext.
  l[kSourcePrincipal] = mtls ? orUnknown(r.src_identity) : kUnknown;
  l[kDestinationPrincipal] = mtls ? orUnknown(r.dst_identity) : kUnknown;
  const model::Service* service = peers.service;
  if (!service && snapshot && peers.destination && peers.destination->services.size() == 1) {
    // A workload reached directly that backs exactly one service: that service, as Istio
    // labels a connection to a pod IP behind a Kubernetes service.
    service = snapshot->serviceByKey(peers.destination->services.begin()->first);
  }
  l[kDestinationService] = service ? orUnknown(service->hostname) : kUnknown;
  l[kDestinationServiceNamespace] = service ? orUnknown(service->namespace_name) : kUnknown;
  l[kDestinationServiceName] = service ? orUnknown(service->name) : kUnknown;
  l[kRequestProtocol] = "tcp";
  std::string flags = "-";
  if (closing && verdictOf(r).verdict == "deny") {
    flags = "DENY";
  } else if (closing && !r.error.empty() && r.bytes_to_dst == 0 && r.bytes_from_dst == 0) {
    flags = "CONNECT";
  }
  l[kResponseFlags] = flags;
  l[kConnectionSecurityPolicy] = mtls ? "mutual_tls" : kUnknown;
  return l;
}

TcpMetrics::Series& TcpMetrics::slot(std::string key, TcpLabels labels) {
  auto [it, inserted] = series_.try_emplace(std::move(key));
  if (inserted) it->second.labels = std::make_shared<const TcpLabels>(std::move(labels));
  return it->second;
}

void TcpMetrics::recordOpen(const model::Snapshot* snapshot, const tunnel::ConnectionRecord& r) {
  TcpLabels labels = tcpLabels(snapshot, r, false);
  std::string key = seriesKey(labels);
  std::lock_guard<std::mutex> lock(mu_);
  ++slot(std::move(key), std::move(labels)).opened;
}

void TcpMetrics::recordClose(const model::Snapshot* snapshot, const tunnel::ConnectionRecord& r) {
  TcpLabels labels = tcpLabels(snapshot, r, true);
  std::string key = seriesKey(labels);
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = slot(std::move(key), std::move(labels));
  ++s.closed;
  s.received_bytes += r.bytes_to_dst;
  s.sent_bytes += r.bytes_from_dst;
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

void TcpMetrics::write(telemetry::PrometheusText& out) const {
  const auto all = series();
  // Each series' label text once, for all four families.
  std::vector<std::string> label_text;
  label_text.reserve(all.size());
  for (const Series& s : all) {
    telemetry::Labels labels;
    labels.reserve(kTcpLabelNames.size());
    for (size_t i = 0; i < kTcpLabelNames.size(); ++i) {
      labels.emplace_back(kTcpLabelNames[i], (*s.labels)[i]);
    }
    label_text.push_back(telemetry::PrometheusText::formatLabels(labels));
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

}  // namespace nodemesh::agent::metrics
