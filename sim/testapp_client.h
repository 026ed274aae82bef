#pragma once

// Helpers for driving nm-testapp (tests/e2e/testapp) and the agent binary from tests.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/process.h"

namespace nodemesh::sim {

// The directory holding nm-testapp and nodemesh-agent: $NODEMESH_BIN_DIR when set, else the
// build's bin directory compiled in as NODEMESH_BIN_DIR.
std::string binDir();
std::string testappPath();   // <binDir()>/nm-testapp
std::string agentPath();     // <binDir()>/nodemesh-agent
std::string waypointPath();  // <binDir()>/nodemesh-waypoint

// Every line of text that parses as a JSON object, in order.
std::vector<nlohmann::json> jsonLines(const std::string& text);
// The first (or last) JSON line whose "event" equals event.
std::optional<nlohmann::json> findEvent(const std::string& text, const std::string& event);
std::optional<nlohmann::json> findLastEvent(const std::string& text, const std::string& event);
// All JSON lines whose "event" equals event.
std::vector<nlohmann::json> findEvents(const std::string& text, const std::string& event);

// Waits for `nm-testapp serve` to print its listening event; returns the bound port (useful
// with --port 0), nullopt on timeout or when the server exited.
std::optional<uint16_t> waitForListening(
    Process& server, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The IP part of "ip:port" / "[ip]:port" as nm-testapp prints it; empty when malformed.
std::string hostOf(const std::string& address);

}  // namespace nodemesh::sim
