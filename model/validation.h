#pragma once

// The checks every config source applies to a whole set of workloads, services and policies
// before it publishes them as a Snapshot: unique keys and references that resolve. Checks of a
// single resource's fields belong to the source that reads it (the local file's parser, xDS's
// conversion); these are the ones that need the whole set.
//
// A finding names the item by kind and index (and, for a part of it, which part), so each source
// can say where the item came from: the local file a line, the xDS client a resource name.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/authorization.h"
#include "model/service.h"
#include "model/workload.h"

namespace nodemesh::model {

struct ValidationFinding {
  enum class Severity { Error, Warning };
  enum class Kind { Workload, Service, Policy };
  // Which part of the item the finding is about.
  enum class Part {
    Key,      // the item's key: workload uid, service "namespace/hostname", policy "namespace/name"
    Address,  // workload_ips[item]
    Vip,      // vips[item] of a service
    PolicyRef,   // authorization_policies[item] of a workload
    ServiceRef,  // the `services` entry whose key is `subject`
  };

  Severity severity = Severity::Error;
  Kind kind = Kind::Workload;
  size_t index = 0;  // into the workloads, services or policies given to validate()
  Part part = Part::Key;
  size_t item = 0;  // for Address, Vip, PolicyRef: the position in that list
  // The key, address or reference the finding is about ("shop/p", "10.0.0.1").
  std::string subject;
  // For a duplicate: the index of the item of the same kind that has it first.
  std::optional<size_t> first;
  // Says what is wrong, without where ("duplicate workload uid 'w1'"); sources add the place.
  std::string message;

  bool isError() const { return severity == Severity::Error; }
};

struct ValidationOptions {
  // A workload that names a policy nobody defined. A complete config (a local file) makes that an
  // error, since the workload would silently lose its policy; a source whose resources arrive one
  // at a time (xDS: the workload may come before its policy) makes it a warning.
  bool undefined_policy_is_error = true;
};

// Errors:
//   - two workloads with one uid, two services with one "namespace/hostname", two policies with
//     one "namespace/name" (the later one is reported, `first` names the earlier one);
//   - one workload listing an address twice, one service listing a VIP twice;
//   - a workload naming a policy that is not defined (see ValidationOptions).
// Warnings (legal, but likely mistakes; ztunnel accepts them):
//   - a workload backing a service that is not defined (ztunnel keeps its endpoints until the
//     service arrives);
//   - two workloads on one network with the same address (not HostNetwork ones, which share
//     the node's); lookups by address prefer a pod, then an HBONE workload (Snapshot);
//   - two services on one network with the same VIP (lookups take the later one).
// Findings come in the order kind (workloads, services, policies), index, part.
std::vector<ValidationFinding> validate(const std::vector<Workload>& workloads,
                                        const std::vector<Service>& services,
                                        const std::vector<Authorization>& policies,
                                        const ValidationOptions& options = {});

bool hasErrors(const std::vector<ValidationFinding>& findings);

std::string_view toString(ValidationFinding::Kind kind);  // "workload", "service", "policy"

}  // namespace nodemesh::model
