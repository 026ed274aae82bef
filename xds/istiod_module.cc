// libnodemesh-istiod.so: the istiod side of the agent (xds/istiod.h), in a module of its own so
// that gRPC and protobuf are mapped only by an agent that talks to istiod.

#include <memory>
#include <utility>

#include "xds/ads_client.h"
#include "xds/istio_ca_client.h"
#include "xds/istiod.h"
#include "xds/istiod_connection.h"
#include "xds/xds_source.h"

namespace nodemesh::xds {
namespace {

class ModuleIstiod final : public Istiod {
 public:
  Result<std::unique_ptr<IstiodConfigSource>> configSource(IstiodConfigOptions options) override {
    XdsSourceOptions xds_options;
    xds_options.client.connection = std::move(options.connection);
    xds_options.client.node = NodeInfo::fromEnvironment();
    if (xds_options.client.node.node_name.empty()) {
      xds_options.client.node.node_name = std::move(options.node_name);
    }
    xds_options.client.node.cluster_id = std::move(options.cluster_id);
    xds_options.initial_timeout = options.initial_timeout;
    auto source = XdsSource::create(std::move(xds_options));
    if (!source) return source.error();
    return std::unique_ptr<IstiodConfigSource>(std::move(*source));
  }

  Result<std::unique_ptr<IstiodCa>> certificateAuthority(const IstiodConnection& connection,
                                                         const identity::Clock& clock) override {
    auto channel = makeIstiodChannel(connection);
    if (!channel) return channel.error();
    auto ca = IstioCaClient::create(*channel, connection, clock);
    if (!ca) return ca.error();
    return std::unique_ptr<IstiodCa>(std::move(*ca));
  }
};

}  // namespace
}  // namespace nodemesh::xds

// The entry point the agent looks up with dlsym (xds/istiod.h); the only symbol the module
// exports besides what its libraries need.
// NOLINTNEXTLINE(readability-identifier-naming): a C symbol, looked up by this name.
extern "C" __attribute__((visibility("default"))) nodemesh::xds::Istiod* nodemesh_istiod_module(
    int abi) {
  if (abi != nodemesh::xds::kIstiodModuleAbi) return nullptr;
  static nodemesh::xds::ModuleIstiod istiod;
  return &istiod;
}
