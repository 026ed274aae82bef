// nodemesh-waypoint: the optional L7 proxy of a namespace or service (docs/waypoint.md).
//
//   nodemesh-waypoint --config FILE --workload UID --state-dir DIR
//
// The waypoint is a workload of the config (its uid, service account and address) running in
// its own pod network namespace, never captured by a node agent: it terminates HBONE on 15008
// and originates HBONE to the endpoints with its own identity. With the embedded defaults its
// certificate comes from the local CA in the state directory, as the agents' do.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "config/local/local_file_source.h"
#include "hbone/tls/tls_context.h"
#include "hbone/tls_provider.h"
#include "identity/cert_manager.h"
#include "identity/local_ca.h"
#include "telemetry/access_log_writer.h"
#include "waypoint/admin.h"
#include "waypoint/proxy/loop.h"

namespace {

using namespace nodemesh;  // NOLINT(google-build-using-namespace): a main file

struct Flags {
  std::string config;
  std::string workload;
  std::string state_dir = "/var/lib/nodemesh";
  uint16_t port = 15008;
  uint16_t admin_port = 15000;
  uint16_t metrics_port = 15020;
  uint16_t readiness_port = 15021;
  unsigned cert_lifetime_s = 24 * 3600;
  std::string log_level = "info";
  std::string access_log_format = "text";
  int access_log_flush_ms = 200;
  unsigned request_timeout_ms = 30000;
  unsigned upstream_max_idle = 32;
  unsigned upstream_idle_timeout_ms = 15000;
  double retry_budget_ratio = 0.2;
  unsigned retry_budget_min_per_second = 10;
};

int run(const Flags& flags) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // every thread started below inherits it

  config::LocalFileSource source(flags.config);
  std::unique_ptr<waypoint::Loop> loop;
  std::mutex loop_mu;
  Status st = source.start([&](model::SnapshotPtr snapshot) {
    std::lock_guard lock(loop_mu);
    if (loop) loop->setSnapshot(std::move(snapshot));
  });
  if (!st) {
    spdlog::error("config {}:\n{}", flags.config, st.error().message);
    return 1;
  }
  model::SnapshotPtr snapshot = source.current();
  const model::Workload* self = snapshot->workloadByUid(flags.workload);
  if (!self) {
    spdlog::error("workload {} is not in {}: the waypoint must be a workload of the config",
                  flags.workload, flags.config);
    return 1;
  }
  auto self_id =
      identity::SpiffeId::create(self->trust_domain, self->namespace_name, self->service_account);
  if (!self_id) {
    spdlog::error("workload {}: {}", flags.workload, self_id.error().message);
    return 1;
  }
  identity::SystemClock clock;
  auto ca = identity::LocalCa::loadOrCreate(flags.state_dir, self->trust_domain, clock);
  if (!ca) {
    spdlog::error("local CA in {}: {}", flags.state_dir, ca.error().message);
    return 1;
  }
  auto factory = tls::TlsContextFactory::create((*ca)->rootCertificate());
  if (!factory) {
    spdlog::error("TLS: {}", factory.error().message);
    return 1;
  }
  identity::CertificateManager certificates(**ca, clock,
                                            std::chrono::seconds(flags.cert_lifetime_s));
  hbone::TlsProvider tls(certificates, std::move(*factory));
  if (auto cert = certificates.get(*self_id); !cert) {
    spdlog::error("certificate for {}: {}", self_id->toString(), cert.error().message);
    return 1;
  }

  // One access log line per request on stdout (the line has its own timestamp), written in
  // batches. Declared before the loop, so it outlives it and writes its last lines at exit.
  telemetry::AccessLogWriterOptions access_options;
  access_options.flush_interval = std::chrono::milliseconds(flags.access_log_flush_ms);
  telemetry::AccessLogWriter access_log(STDOUT_FILENO, access_options);
  waypoint::RequestTelemetry telemetry(
      flags.access_log_format == "json" ? telemetry::AccessLogFormat::kJson
                                        : telemetry::AccessLogFormat::kText,
      [&access_log](const std::string& line) { access_log.write(line); });

  waypoint::LoopOptions options;
  options.listen.port = flags.port;
  options.request_timeout = std::chrono::milliseconds(flags.request_timeout_ms);
  options.upstream.max_idle_per_endpoint = flags.upstream_max_idle;
  options.upstream.idle_timeout = std::chrono::milliseconds(flags.upstream_idle_timeout_ms);
  options.retry_budget.ratio = flags.retry_budget_ratio;
  options.retry_budget.min_per_second = flags.retry_budget_min_per_second;
  {
    auto started =
        waypoint::Loop::start(options, tls, *self_id, flags.workload, snapshot, &telemetry);
    if (!started) {
      spdlog::error("{}", started.error().message);
      return 1;
    }
    std::lock_guard lock(loop_mu);
    loop = std::move(*started);
    loop->setSnapshot(source.current());  // a reload between start() and now
  }
  spdlog::info("waypoint {} ({}) serving HBONE on {}", flags.workload, self_id->toString(),
               options.listen.toString());

  waypoint::AdminInfo info{flags.workload, self_id->toString(), flags.config};
  auto servers = waypoint::AdminServers::start(
      info, {flags.admin_port, flags.metrics_port, flags.readiness_port},
      [&] { return loop->stats(); }, [&] { return source.current(); }, &telemetry);
  if (!servers) {
    spdlog::error("{}", servers.error().message);
    return 1;
  }

  timespec tick{1, 0};
  while (true) {
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("received {}: stopping", strsignal(sig));
      break;
    }
    certificates.rotateDue();
  }
  (*servers)->setStopping();
  source.stop();
  {
    std::lock_guard lock(loop_mu);
    loop.reset();
  }
  return 0;
}

int waypointMain(int argc, char** argv) {
  Flags flags;
  CLI::App app{"nodemesh-waypoint: HBONE in, routing, HBONE out (docs/waypoint.md)"};
  app.add_option("--config", flags.config, "mesh config file (ztunnel's local format + routes)")
      ->required();
  app.add_option("--workload", flags.workload, "this waypoint's workload uid in the config")
      ->required();
  app.add_option("--state-dir", flags.state_dir, "where the local CA's root lives")
      ->capture_default_str();
  app.add_option("--port", flags.port, "HBONE listener (mutual TLS)")->capture_default_str();
  app.add_option("--admin-port", flags.admin_port, "admin API on 127.0.0.1")->capture_default_str();
  app.add_option("--metrics-port", flags.metrics_port, "Prometheus metrics")->capture_default_str();
  app.add_option("--readiness-port", flags.readiness_port, "readiness probe")
      ->capture_default_str();
  app.add_option("--cert-lifetime-s", flags.cert_lifetime_s, "workload certificate lifetime")
      ->check(CLI::Range(60U, 30U * 24 * 3600))
      ->capture_default_str();
  app.add_option("--request-timeout-ms", flags.request_timeout_ms,
                 "a request still arriving after this long is answered 408")
      ->check(CLI::Range(1000U, 3600U * 1000))
      ->capture_default_str();
  app.add_option("--upstream-max-idle", flags.upstream_max_idle,
                 "idle HTTP/1.1 connections kept per endpoint for reuse (0: none)")
      ->check(CLI::Range(0U, 10000U))
      ->capture_default_str();
  app.add_option("--upstream-idle-timeout-ms", flags.upstream_idle_timeout_ms,
                 "an idle HTTP/1.1 upstream connection is closed after this long")
      ->check(CLI::Range(100U, 3600U * 1000))
      ->capture_default_str();
  app.add_option("--retry-budget-ratio", flags.retry_budget_ratio,
                 "retries of a backend's requests in the last 10 s may be at most this share of "
                 "its requests, plus the minimum below (Linkerd's retry budget)")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  app.add_option("--retry-budget-min-per-second", flags.retry_budget_min_per_second,
                 "retries per second a backend may get whatever the ratio")
      ->check(CLI::Range(0U, 100000U))
      ->capture_default_str();
  app.add_option("--access-log-format", flags.access_log_format,
                 "one line per request: text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--access-log-flush-ms", flags.access_log_flush_ms,
                 "access log lines reach stdout in one write every this many ms (or per 64 KiB); "
                 "0 writes each line at once")
      ->check(CLI::Range(0, 60000))
      ->capture_default_str();
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(flags.log_level));
  return run(flags);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return waypointMain(argc, argv);
  } catch (const std::exception& e) {
    // Errors are Results; this is for what a library still throws (std::bad_alloc, spdlog):
    // exit with its message after the stack unwinds (the loop thread is joined).
    std::cerr << "nodemesh-waypoint: " << e.what() << "\n";
    return 1;
  }
}
