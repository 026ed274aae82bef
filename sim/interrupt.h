#pragma once

// Ctrl-C for programs that build SimClusters (the demo, the benchmark, the e2e tests). Left to the
// default action, SIGINT, SIGTERM or SIGHUP kills such a program where it stands, and what its
// clusters created (network namespaces, cgroups, bpffs pins, work directories) stays until the next
// run sweeps it. With cleanUpWhenInterrupted(), the signal starts a sweeper instead: this same
// executable, run again with NODEMESH_SIM_SWEEP_AFTER=<pid>, which waits until the program is gone
// and then runs SimCluster::sweepStale(). The program exits at once with 128 + the signal; the
// processes it started die with it (they are started with PR_SET_PDEATHSIG) or are killed through
// their cgroups by the sweep.

namespace nodemesh::sim {

// Call once, early in main(). Installs handlers for SIGINT, SIGTERM and SIGHUP (each unless the
// program was started with it ignored, as nohup does) that only write to a pipe, and starts
// the thread that reads it.
void cleanUpWhenInterrupted();

// Call first in main(): when this process is such a sweeper, sweeps and exits; otherwise
// returns at once.
void runSweeperIfAsked();

}  // namespace nodemesh::sim
