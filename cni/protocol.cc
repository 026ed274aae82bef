// Encoding and validation of the plugin <-> agent messages (protocol.h). Decoding never throws:
// every field is checked for presence and type, and an error names the field.

#include "cni/protocol.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "common/ip_address.h"

namespace nodemesh::cni {

namespace {

using nlohmann::json;

// Invalid UTF-8 (from a hostile or broken peer) is replaced instead of making dump() throw.
std::string dumpLine(const json& j) {
  std::string out = j.dump(-1, ' ', false, json::error_handler_t::replace);
  out.push_back('\n');
  return out;
}

std::string_view stripLineEnd(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

Result<json> parseObject(std::string_view line, std::string_view what) {
  line = stripLineEnd(line);
  if (line.size() > kMaxMessageBytes) {
    return Error::invalid(fmt::format("{}: longer than {} bytes", what, kMaxMessageBytes));
  }
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error::invalid(fmt::format("{}: not valid JSON", what));
  if (!j.is_object()) return Error::invalid(fmt::format("{}: not a JSON object", what));
  const auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer()) {
    return Error::invalid(fmt::format("{}: \"version\" missing or not an integer", what));
  }
  if (version->get<int64_t>() != kProtocolVersion) {
    return Error::invalid(
        fmt::format("{}: protocol version {} is not supported (this side "
                    "speaks {})",
                    what, version->get<int64_t>(), kProtocolVersion));
  }
  return j;
}

// An optional string field: absent gives "", any other type is an error.
Status readString(const json& j, const char* key, std::string* out, bool required) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return Error::invalid(fmt::format("\"{}\" is missing", key));
    out->clear();
    return okStatus();
  }
  if (!it->is_string()) return Error::invalid(fmt::format("\"{}\" is not a string", key));
  *out = it->get<std::string>();
  return okStatus();
}

}  // namespace

bool isIpCidr(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return false;
  auto ip = IpAddress::parse(text.substr(0, slash));
  if (!ip) return false;
  const std::string_view len = text.substr(slash + 1);
  if (len.empty() || len.size() > 3) return false;
  int n = 0;
  for (char c : len) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  const bool v4 = text.substr(0, slash).find(':') == std::string_view::npos;
  return n <= (v4 ? 32 : 128);
}

std::string_view commandName(CniCommand command) {
  switch (command) {
    case CniCommand::kAdd:
      return "ADD";
    case CniCommand::kDel:
      return "DEL";
    case CniCommand::kCheck:
      return "CHECK";
  }
  return "?";
}

std::string encodeRequest(const CniRequest& request) {
  json j = {{"version", kProtocolVersion},
            {"command", std::string(commandName(request.command))},
            {"containerId", request.container_id},
            {"netns", request.netns},
            {"ifName", request.if_name},
            {"podNamespace", request.pod_namespace},
            {"podName", request.pod_name},
            {"podUid", request.pod_uid},
            {"ips", request.ips}};
  return dumpLine(j);
}

std::string encodeReply(const CniReply& reply) {
  json j = {{"version", kProtocolVersion}, {"ok", reply.ok}};
  if (reply.ok) {
    j["enrolled"] = reply.enrolled;
    j["message"] = reply.message;
  } else {
    j["error"] = reply.error;
  }
  return dumpLine(j);
}

Result<CniRequest> decodeRequest(std::string_view line) {
  auto parsed = parseObject(line, "CNI request");
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  CniRequest request;
  std::string command;
  auto fail = [](const Error& e) { return Error::invalid("CNI request: " + e.message); };
  if (auto s = readString(j, "command", &command, true); !s) return fail(s.error());
  if (command == "ADD") {
    request.command = CniCommand::kAdd;
  } else if (command == "DEL") {
    request.command = CniCommand::kDel;
  } else if (command == "CHECK") {
    request.command = CniCommand::kCheck;
  } else {
    return Error::invalid(fmt::format("CNI request: unknown command \"{}\"", command));
  }
  if (auto s = readString(j, "containerId", &request.container_id, true); !s) {
    return fail(s.error());
  }
  if (request.container_id.empty()) return Error::invalid("CNI request: \"containerId\" is empty");
  const std::pair<const char*, std::string*> optional[] = {
      {"netns", &request.netns},
      {"ifName", &request.if_name},
      {"podNamespace", &request.pod_namespace},
      {"podName", &request.pod_name},
      {"podUid", &request.pod_uid},
  };
  for (const auto& [key, out] : optional) {
    if (auto s = readString(j, key, out, false); !s) return fail(s.error());
  }
  if (request.command != CniCommand::kDel && request.netns.empty()) {
    return Error::invalid(
        fmt::format("CNI request: \"netns\" is required for {}", commandName(request.command)));
  }
  if (const auto ips = j.find("ips"); ips != j.end() && !ips->is_null()) {
    if (!ips->is_array()) return Error::invalid("CNI request: \"ips\" is not an array");
    for (const json& ip : *ips) {
      if (!ip.is_string() || !isIpCidr(ip.get<std::string>())) {
        return Error::invalid(fmt::format("CNI request: \"ips\" holds {}, not an address/prefix",
                                          ip.dump(-1, ' ', false, json::error_handler_t::replace)));
      }
      request.ips.push_back(ip.get<std::string>());
    }
  }
  return request;
}

Result<CniReply> decodeReply(std::string_view line) {
  auto parsed = parseObject(line, "CNI agent reply");
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  const auto ok = j.find("ok");
  if (ok == j.end() || !ok->is_boolean()) {
    return Error::invalid("CNI agent reply: \"ok\" missing or not a boolean");
  }
  CniReply reply;
  reply.ok = ok->get<bool>();
  auto fail = [](const Error& e) { return Error::invalid("CNI agent reply: " + e.message); };
  if (reply.ok) {
    if (const auto enrolled = j.find("enrolled"); enrolled != j.end()) {
      if (!enrolled->is_boolean())
        return Error::invalid("CNI agent reply: \"enrolled\" is not a boolean");
      reply.enrolled = enrolled->get<bool>();
    }
    if (auto s = readString(j, "message", &reply.message, false); !s) return fail(s.error());
  } else {
    if (auto s = readString(j, "error", &reply.error, true); !s) return fail(s.error());
  }
  return reply;
}

}  // namespace nodemesh::cni
