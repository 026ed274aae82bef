#include "xds/istiod_connection.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

namespace nodemesh::xds {
namespace {

Result<std::string> readFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::fromErrno(fmt::format("reading {} {}", what, path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Error::fromErrno(fmt::format("reading {} {}", what, path));
  return text.str();
}

// "host:port" or "[v6]:port" -> host.
Result<std::string> hostOf(const std::string& address) {
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return Error::invalid(fmt::format("istiod address {}: expected [ipv6]:port", address));
    }
    return address.substr(1, close - 1);
  }
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return Error::invalid(fmt::format("istiod address {}: expected host:port", address));
  }
  return address.substr(0, colon);
}

std::string trimmed(std::string text) {
  const auto end = text.find_last_not_of(" \t\r\n");
  text.erase(end == std::string::npos ? 0 : end + 1);
  const auto begin = text.find_first_not_of(" \t\r\n");
  text.erase(0, begin == std::string::npos ? text.size() : begin);
  return text;
}

}  // namespace

Result<std::shared_ptr<grpc::Channel>> makeIstiodChannel(const IstiodConnection& connection) {
  auto host = hostOf(connection.address);
  if (!host) return host.error();
  if (connection.root_cert_file.empty()) {
    return Error::invalid("istiod root certificate: no file given (istiod is reached over TLS)");
  }
  auto roots = readFile(connection.root_cert_file, "istiod root certificate");
  if (!roots) return roots.error();
  if (roots->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return Error::invalid(fmt::format("istiod root certificate {}: no PEM certificate in it",
                                      connection.root_cert_file));
  }
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = std::move(*roots);
  grpc::ChannelArguments arguments;
  // A full push of a large cluster's workloads exceeds gRPC's 4 MiB default; ztunnel allows 200
  // MiB.
  arguments.SetMaxReceiveMessageSize(200 * 1024 * 1024);
  arguments.SetSslTargetNameOverride(
      connection.tls_server_name.empty() ? *host : connection.tls_server_name);
  return grpc::CreateCustomChannel(connection.address, grpc::SslCredentials(tls), arguments);
}

Status addIstiodCallHeaders(grpc::ClientContext& context, const IstiodConnection& connection) {
  if (!connection.token_file.empty()) {
    auto token = readFile(connection.token_file, "service account token");
    if (!token) return token.error();
    std::string value = trimmed(std::move(*token));
    if (value.empty()) {
      return Error::invalid(
          fmt::format("service account token {} is empty", connection.token_file));
    }
    context.AddMetadata("authorization", "Bearer " + value);
  }
  if (!connection.cluster_id.empty()) context.AddMetadata("clusterid", connection.cluster_id);
  return okStatus();
}

}  // namespace nodemesh::xds
