#include "sim/testapp_client.h"

#include <cstdlib>
#include <sstream>

#include "common/ip_address.h"

#ifndef NODEMESH_BIN_DIR
#error "NODEMESH_BIN_DIR must be defined by the build (the directory of nm-testapp)"
#endif

namespace nodemesh::sim {

std::string binDir() {
  if (const char* dir = std::getenv("NODEMESH_BIN_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  return NODEMESH_BIN_DIR;
}

std::string testappPath() {
  return binDir() + "/nm-testapp";
}

std::string agentPath() {
  return binDir() + "/nodemesh-agent";
}

std::string waypointPath() {
  return binDir() + "/nodemesh-waypoint";
}

std::vector<nlohmann::json> jsonLines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line.front() != '{') continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

std::vector<nlohmann::json> findEvents(const std::string& text, const std::string& event) {
  std::vector<nlohmann::json> out;
  for (auto& j : jsonLines(text)) {
    auto it = j.find("event");
    if (it != j.end() && it->is_string() && it->get<std::string>() == event) {
      out.push_back(std::move(j));
    }
  }
  return out;
}

std::optional<nlohmann::json> findEvent(const std::string& text, const std::string& event) {
  auto all = findEvents(text, event);
  if (all.empty()) return std::nullopt;
  return all.front();
}

std::optional<nlohmann::json> findLastEvent(const std::string& text, const std::string& event) {
  auto all = findEvents(text, event);
  if (all.empty()) return std::nullopt;
  return all.back();
}

std::optional<uint16_t> waitForListening(Process& server, std::chrono::milliseconds timeout) {
  if (!server.waitForOutput("\"listening\"", timeout)) return std::nullopt;
  auto event = findEvent(server.output(), "listening");
  if (!event || !event->contains("port")) return std::nullopt;
  return (*event)["port"].get<uint16_t>();
}

std::string hostOf(const std::string& address) {
  auto sa = SocketAddress::parse(address);
  return sa ? sa->ip.toString() : "";
}

}  // namespace nodemesh::sim
