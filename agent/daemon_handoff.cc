// Daemon, the way out: stop() and the upgrade's side of it. A new agent takes this one's
// listening sockets over the handoff socket (agent/handoff.h); the old one then drains what it
// holds. Without a handoff, a stop under Kubernetes decides whether the capture stays for the
// next agent (docs/agent.md "Upgrades", docs/install.md "Upgrades").

#include "agent/daemon.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

namespace nodemesh::agent {

Status Daemon::stop(std::unique_ptr<Daemon> daemon) {
  Status result = okStatus();
  daemon->readiness_.setStopping();
  // No new agent may take over from one that is going away.
  daemon->handoff_server_.reset();
  if (daemon->handed_over_) {
    daemon->drainForNextAgent();
  } else if (daemon->kube_) {
    daemon->decideCaptureOnStop();
  }
  daemon->stop_status_ = &result;
  daemon.reset();
  return result;
}

void Daemon::listenForHandoff() {
  if (options_.handoff_socket.empty()) return;
  HandoffServer::Hooks hooks;
  hooks.release_ports = [this] {
    handoff_in_progress_ = true;
    std::lock_guard<std::mutex> lock(servers_mu_);
    admin_server_.reset();
    metrics_server_.reset();
    readiness_server_.reset();
    if (kube_) kube_->releaseCniSocket();
  };
  hooks.export_listeners = [this] { return tunnel_->exportListeners(); };
  hooks.restore_ports = [this] {
    if (auto st = startServers(); !st) {
      spdlog::error("handoff: serving the admin, metrics and readiness ports again: {}",
                    st.error().message);
    }
    if (kube_) {
      if (auto st = kube_->restoreCniSocket(); !st) {
        spdlog::error("handoff: serving the CNI socket again: {}", st.error().message);
      }
    }
    handoff_in_progress_ = false;
  };
  hooks.handed_over = [this](UniqueFd conn) {
    handoff_conn_ = std::move(conn);  // read by the loop thread once it sees handed_over_
    handed_over_ = true;
    pthread_kill(loop_thread_, SIGUSR2);
  };
  auto server = HandoffServer::start(options_.handoff_socket, std::move(hooks));
  if (!server) {
    spdlog::warn("handoff: not listening at {} ({}): an upgrade will restart connections",
                 options_.handoff_socket, server.error().message);
    return;
  }
  handoff_server_ = std::move(*server);
}

void Daemon::drainForNextAgent() {
  // Nothing of the capture is removed: the new agent runs on it.
  keep_capture_ = true;
  agent_->leaveEnrolled();
  tunnel_->drain();
  // The new agent re-arms its accepts once ours are gone: a connection that woke one of ours
  // while it was being cancelled is still queued (agent/handoff.h, "stopped"). Cancelling
  // takes a loop turn of each worker.
  const auto stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!tunnel_->acceptsStopped() && std::chrono::steady_clock::now() < stop_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!tunnel_->acceptsStopped()) {
    spdlog::warn("handoff: accepts still pending after 2 s; telling the new agent anyway");
  }
  if (auto st = reportAcceptsStopped(handoff_conn_); !st) {
    spdlog::warn("handoff: telling the new agent that this one accepts no more: {}",
                 st.error().message);
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(options_.drain_timeout_s);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  const timespec tick{0, 100 * 1000 * 1000};
  // Relayed connections, and accepted HBONE connections (a peer may still open a stream on one
  // until its GOAWAY): both must be gone.
  auto remaining = [this] {
    const tunnel::TunnelStats stats = tunnel_->stats();
    return stats.active + stats.hbone_server_conns;
  };
  const tunnel::TunnelStats at_start = tunnel_->stats();
  uint64_t open = at_start.active + at_start.hbone_server_conns;
  spdlog::info("draining {} open connection{} and {} accepted HBONE connection{} for at most {} s",
               at_start.active, at_start.active == 1 ? "" : "s", at_start.hbone_server_conns,
               at_start.hbone_server_conns == 1 ? "" : "s", options_.drain_timeout_s);
  // In a pod (--kubernetes) the DaemonSet deletes this agent's pod as soon as the new one is
  // ready, a few seconds into the drain: SIGTERM there means "the pod goes", not "cut the
  // drain", and the pod's grace period (the chart: the drain plus 5 s) bounds it. SIGINT, or
  // SIGTERM outside Kubernetes, ends the drain at once.
  bool terminated = false;
  while (open > 0 && std::chrono::steady_clock::now() < deadline) {
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM && kube_ && !terminated) {
      terminated = true;
      const auto left =
          std::chrono::ceil<std::chrono::seconds>(deadline - std::chrono::steady_clock::now());
      spdlog::info(
          "received {} while draining: the pod is deleted; the drain goes on for at "
          "most {} s",
          strsignal(sig), left.count());
    } else if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("received {} while draining: closing the rest", strsignal(sig));
      terminated = true;
      break;
    }
    open = remaining();
  }
  if (open > 0) {
    spdlog::info("drain over with {} connection{} still open: closing them", open,
                 open == 1 ? "" : "s");
  } else {
    spdlog::info("drained: every connection ended");
  }
  if (kube_ && !terminated) {
    // Exiting while the pod still exists would make the kubelet start this agent again, and
    // that agent would take the sockets back from the new one.
    spdlog::info("handoff done: waiting for this pod's deletion (SIGTERM) to exit");
    int sig = 0;
    while (sig != SIGTERM && sig != SIGINT) {
      if (sigwait(&signals, &sig) != 0) break;
    }
  }
}

void Daemon::restartAcceptsWhenPreviousStops(Handoff handoff) {
  accepts_waiter_stop_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!accepts_waiter_stop_.valid()) {
    spdlog::warn("handoff: eventfd: {}; restarting the accepts now", std::strerror(errno));
    tunnel_->restartAccepts();
    return;
  }
  accepts_waiter_ = std::thread([this, handoff = std::move(handoff)]() mutable {
    auto stopped =
        awaitAcceptsStopped(handoff, accepts_waiter_stop_.get(), std::chrono::seconds(5));
    if (!stopped && stopped.error().code == ECANCELED) return;  // this agent is stopping
    tunnel_->restartAccepts();
    if (!stopped) {
      spdlog::warn(
          "handoff: waiting for the previous agent to stop accepting: {}; accepts "
          "restarted anyway",
          stopped.error().message);
    } else if (!*stopped) {
      spdlog::info(
          "handoff: the previous agent closed the handoff connection without saying that it "
          "stopped accepting (an older agent, or it died): accepts restarted");
    } else {
      spdlog::info("handoff: the previous agent accepts no more: accepts restarted");
    }
  });
}

void Daemon::decideCaptureOnStop() {
  // A DaemonSet's rolling update stops this agent and starts the next: the pods stay captured
  // meanwhile (their connections fail rather than leave the mesh). When the DaemonSet is gone
  // (uninstalled), or this agent does not know its pod, it takes the capture with it.
  if (!options_.pod_name.empty() && !options_.pod_namespace.empty()) {
    auto replaced = kube_->replacedByDaemonSet(options_.pod_namespace, options_.pod_name);
    if (!replaced) {
      spdlog::warn("cannot tell whether DaemonSet replaces pod {}/{} ({}): keeping the capture",
                   options_.pod_namespace, options_.pod_name, replaced.error().message);
    }
    keep_capture_ = !replaced || *replaced;
  }
  if (keep_capture_) {
    spdlog::info("pod {}/{} is replaced by its DaemonSet: pods stay enrolled for the next agent",
                 options_.pod_namespace, options_.pod_name);
    agent_->leaveEnrolled();
    return;
  }
  kube_->uninstallCni();
  const size_t removed = kube_->removeAllAnnotations(std::chrono::seconds(5));
  spdlog::info("leaving the node: removed the redirection annotation from {} pod{}", removed,
               removed == 1 ? "" : "s");
}

}  // namespace nodemesh::agent
