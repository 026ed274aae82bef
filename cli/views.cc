#include "cli/views.h"

#include <algorithm>

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace nodemesh::cli {

namespace {

using nlohmann::json;

std::string str(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return "";
  return j[key].get<std::string>();
}

uint64_t num(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return 0;
  return j[key].get<uint64_t>();
}

const json& arr(const json& j, const char* key) {
  static const json kEmpty = json::array();
  if (!j.is_object() || !j.contains(key) || !j[key].is_array()) return kEmpty;
  return j[key];
}

std::string joinStrings(const json& list, const std::string& sep = ",") {
  std::string out;
  if (!list.is_array()) return out;
  for (const auto& v : list) {
    if (!v.is_string()) continue;
    out += (out.empty() ? "" : sep) + v.get<std::string>();
  }
  return out;
}

std::string portMap(const json& ports) {
  std::string out;
  if (!ports.is_object()) return out;
  for (const auto& [port, target] : ports.items()) {
    out += (out.empty() ? "" : ",") + port + "->" +
           (target.is_number() ? std::to_string(target.get<uint64_t>()) : "?");
  }
  return out;
}

// "shop/frontend-7d9f" or "shop" from an identity / pod name.
std::string namespaceOf(const std::string& namespaced) {
  auto slash = namespaced.find('/');
  return slash == std::string::npos ? "" : namespaced.substr(0, slash);
}

std::string identityNamespace(const std::string& spiffe) {
  auto ns = spiffe.find("/ns/");
  if (ns == std::string::npos) return "";
  auto end = spiffe.find('/', ns + 4);
  return spiffe.substr(ns + 4, end == std::string::npos ? std::string::npos : end - ns - 4);
}

bool nsMatches(const Filters& f, const std::string& ns) {
  return f.namespace_name.empty() || f.namespace_name == ns;
}

bool nodeMatches(const Filters& f, const std::string& node) {
  return f.node.empty() || f.node == node;
}

std::string matchSummary(const json& m) {
  std::string out;
  for (const auto& [field, values] : m.items()) {
    std::string list;
    for (const auto& v : values) {
      std::string item;
      if (v.is_object() && v.size() == 1) {
        // The object's only member. Not `*v.items().begin()`: that binds to a temporary that
        // is gone at the end of the statement (ASan: stack-use-after-scope).
        const auto member = v.begin();
        const std::string& kind = member.key();
        const json& value = member.value();
        if (kind == "Exact" && value.is_string()) {
          item = value.get<std::string>();
        } else if (kind == "Prefix" && value.is_string()) {
          item = value.get<std::string>() + "*";
        } else if (kind == "Suffix" && value.is_string()) {
          item = "*" + value.get<std::string>();
        } else if (kind == "Presence") {
          item = "*";
        } else if (v.contains("namespace")) {
          item = str(v, "namespace") + "/" + str(v, "serviceAccount");
        }
      } else if (v.is_object()) {
        item = str(v, "namespace") + "/" + str(v, "serviceAccount");
      } else if (v.is_string()) {
        item = v.get<std::string>();
      } else if (v.is_number()) {
        item = std::to_string(v.get<uint64_t>());
      }
      list += (list.empty() ? "" : ",") + item;
    }
    out += (out.empty() ? "" : " ") + field + "=" + list;
  }
  return out;
}

// rules -> clauses -> matches, as "(a | b) & c ; d".
std::string rulesSummary(const json& rules) {
  std::string out;
  for (const auto& rule : rules) {
    std::string r;
    for (const auto& clause : rule) {
      std::string c;
      for (const auto& m : clause) c += (c.empty() ? "" : " | ") + matchSummary(m);
      if (clause.size() > 1) c = "(" + c + ")";
      r += (r.empty() ? "" : " & ") + c;
    }
    out += (out.empty() ? "" : " ; ") + (r.empty() ? "any" : r);
  }
  return out.empty() ? "nothing" : out;
}

}  // namespace

View workloadsView(const json& dump, const Filters& f, size_t width) {
  std::map<std::string, std::string> enrolled;  // uid -> netns
  for (const auto& p : arr(dump, "enrolledPods")) enrolled[str(p, "workloadUid")] = str(p, "netns");
  const std::string this_node = str(dump.value("agent", json::object()), "node");
  View v;
  v.data = json::array();
  Table t({"NAMESPACE", "NAME", "NODE", "IPS", "PROTOCOL", "SERVICE-ACCOUNT", "ENROLLED"});
  for (const auto& w : arr(dump, "workloads")) {
    if (!nsMatches(f, str(w, "namespace")) || !nodeMatches(f, str(w, "node"))) continue;
    v.data.push_back(w);
    std::string state = "-";
    if (str(w, "node") == this_node) {
      state = enrolled.count(str(w, "uid")) ? "yes" : str(w, "protocol") == "HBONE" ? "no" : "-";
    }
    t.addRow({str(w, "namespace"), str(w, "name"), str(w, "node"),
              joinStrings(w.value("workloadIps", json::array())), str(w, "protocol"),
              str(w, "serviceAccount"), state});
  }
  v.table = t.render(width);
  return v;
}

View servicesView(const json& dump, const Filters& f, size_t width) {
  View v;
  v.data = json::array();
  Table t({"NAMESPACE", "NAME", "HOSTNAME", "VIPS", "PORTS", "ENDPOINTS"});
  for (const auto& s : arr(dump, "services")) {
    if (!nsMatches(f, str(s, "namespace"))) continue;
    v.data.push_back(s);
    size_t healthy = 0;
    const auto& eps = arr(s, "endpoints");
    for (const auto& ep : eps) healthy += str(ep, "status") == "Healthy" ? 1 : 0;
    t.addRow({str(s, "namespace"), str(s, "name"), str(s, "hostname"),
              joinStrings(s.value("vips", json::array())),
              portMap(s.value("ports", json::object())),
              fmt::format("{}/{} healthy", healthy, eps.size())});
  }
  v.table = t.render(width);
  return v;
}

View policiesView(const json& dump, const Filters& f, size_t width) {
  View v;
  v.data = json::array();
  Table t({"NAMESPACE", "NAME", "SCOPE", "ACTION", "RULES"});
  for (const auto& p : arr(dump, "policies")) {
    if (!nsMatches(f, str(p, "namespace"))) continue;
    v.data.push_back(p);
    std::string action = str(p, "action");
    if (p.value("dryRun", false)) action += " (dry run)";
    t.addRow({str(p, "namespace"), str(p, "name"), str(p, "scope"), action,
              rulesSummary(p.value("rules", json::array()))});
  }
  v.table = t.render(width);
  return v;
}

View certsView(const json& dump, const Filters& f, std::chrono::system_clock::time_point now,
               size_t width) {
  View v;
  v.data = json::array();
  Table t({"IDENTITY", "EXPIRES", "EXPIRES-IN", "SERIAL"});
  for (const auto& c : arr(dump, "certificates")) {
    const std::string id = str(c, "identity");
    if (!nsMatches(f, identityNamespace(id))) continue;
    v.data.push_back(c);
    const auto& chain = arr(c, "certChain");
    json leaf = chain.empty() ? json::object() : chain[0];
    std::string expires = str(leaf, "expirationTime");
    std::string in = "-";
    std::tm tm{};
    if (strptime(expires.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) != nullptr) {
      auto t_exp = std::chrono::system_clock::from_time_t(timegm(&tm));
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t_exp - now).count();
      in = ms <= 0 ? "expired" : humanDuration(ms);
    }
    t.addRow({id, expires, in, str(leaf, "serialNumber")});
  }
  v.table = t.render(width);
  return v;
}

View controlPlaneView(const json& dump, size_t width) {
  View v;
  const json empty = json::object();
  const json& cp = dump.contains("controlPlane") && dump["controlPlane"].is_object()
                       ? dump["controlPlane"]
                       : empty;
  v.data = cp;
  const json& config = cp.contains("config") ? cp["config"] : empty;
  std::string out;
  if (str(config, "source") == "xds") {
    const json& xds = config.contains("xds") ? config["xds"] : empty;
    const bool connected = xds.value("connected", false);
    out += fmt::format("config:  istiod (delta xDS) at {}: {}\n", str(xds, "address"),
                       connected ? "connected" : "NOT connected");
    if (!connected && !str(xds, "lastError").empty()) {
      out += fmt::format("         last error: {}\n", str(xds, "lastError"));
    }
    Table t({"TYPE", "ACKED-VERSION", "RESOURCES", "PUSHES", "NACKS", "SYNCED"});
    if (xds.contains("types") && xds["types"].is_object()) {
      for (const auto& [url, type] : xds["types"].items()) {
        t.addRow({url.substr(url.rfind('/') + 1), str(type, "ackedVersion"),
                  std::to_string(num(type, "resources")), std::to_string(num(type, "responses")),
                  std::to_string(num(type, "nacks")), type.value("synced", false) ? "yes" : "no"});
      }
    }
    out += t.render(width);
    if (xds.contains("lastNack") && xds["lastNack"].is_object()) {
      const json& nack = xds["lastNack"];
      out += fmt::format("last NACK: {} {} (nonce {}): {}\n", str(nack, "time"),
                         str(nack, "typeUrl").substr(str(nack, "typeUrl").rfind('/') + 1),
                         str(nack, "nonce"), str(nack, "reason"));
    } else {
      out += "last NACK: none\n";
    }
  } else {
    out += fmt::format("config:  local file {}\n", str(config, "path"));
  }
  const json& ca = cp.contains("ca") ? cp["ca"] : empty;
  const json& counters = ca.contains("counters") ? ca["counters"] : empty;
  if (str(ca, "issuer") == "istiod") {
    out += fmt::format("certificates: Istio's CA at {}", str(ca, "address"));
  } else {
    out += fmt::format("certificates: embedded CA ({})", str(ca, "stateDir"));
  }
  out += fmt::format(" ({} requests, {} failed)\n", num(counters, "issue_requests"),
                     num(counters, "issue_failures"));
  Table ids({"IDENTITY", "EXPIRES", "FAILURES", "LAST-ERROR"});
  for (const auto& id : arr(ca, "identities")) {
    ids.addRow({str(id, "identity"),
                str(id, "expirationTime").empty() ? "-" : str(id, "expirationTime"),
                std::to_string(num(id, "consecutiveFailures")),
                str(id, "lastError").empty() ? "-" : str(id, "lastError")});
  }
  if (ids.rows() > 0) out += ids.render(width);
  v.table = out;
  return v;
}

View connectionsView(const json& connections, const Filters& f, size_t width) {
  View v;
  v.data = json::array();
  Table t({"POD", "DIR", "SRC", "DST", "PROTO", "SRC-ID", "DST-ID", "TO-DST", "FROM-DST", "AGE",
           "STATE"});
  for (const auto& c : arr(connections, "connections")) {
    if (!nsMatches(f, namespaceOf(str(c, "pod")))) continue;
    v.data.push_back(c);
    t.addRow({str(c, "pod"), str(c, "direction") == "outbound" ? "out" : "in", str(c, "src"),
              str(c, "dst"), str(c, "transport"), shortIdentity(str(c, "src_identity")),
              shortIdentity(str(c, "dst_identity")), humanBytes(num(c, "bytes_to_dst")),
              humanBytes(num(c, "bytes_from_dst")),
              humanDuration(static_cast<int64_t>(num(c, "age_ms"))), str(c, "state")});
  }
  v.table = t.render(width);
  return v;
}

View podsView(const std::optional<json>& dump, const std::vector<PodCounters>& pods,
              const Filters& f, size_t width) {
  std::map<uint64_t, json> by_cookie;
  if (dump) {
    for (const auto& p : arr(*dump, "enrolledPods")) by_cookie[num(p, "netnsCookie")] = p;
  }
  const std::string node = dump ? str(dump->value("agent", json::object()), "node") : "";
  View v;
  v.data = json::array();
  Table t(
      {"POD", "NETNS", "COOKIE", "IPS", "CAPTURED", "STEERED", "HBONE-IN", "EXCLUDED", "FAILED"});
  auto sum = [](const std::map<std::string, uint64_t>& c, std::initializer_list<const char*> keys) {
    uint64_t n = 0;
    for (const char* k : keys) {
      auto it = c.find(k);
      if (it != c.end()) n += it->second;
    }
    return n;
  };
  if (!f.node.empty() && !node.empty() && f.node != node) {
    v.table = t.render(width);
    return v;
  }
  for (const auto& pod : pods) {
    auto it = by_cookie.find(pod.netns_cookie);
    json info = it != by_cookie.end() ? it->second : json::object();
    std::string name = str(info, "name");
    if (!f.namespace_name.empty() && namespaceOf(name) != f.namespace_name) continue;
    json entry = {{"name", name.empty() ? json(nullptr) : json(name)},
                  {"netnsCookie", pod.netns_cookie},
                  {"netns", info.value("netns", json(nullptr))},
                  {"ips", info.value("ips", json::array())},
                  {"workloadUid", info.value("workloadUid", json(nullptr))},
                  {"counters", pod.counters}};
    v.data.push_back(entry);
    const auto& c = pod.counters;
    auto cell = [&](std::initializer_list<const char*> keys) {
      return c.empty() ? std::string("?") : std::to_string(sum(c, keys));
    };
    t.addRow({name.empty() ? "?" : name, str(info, "netns"), std::to_string(pod.netns_cookie),
              joinStrings(info.value("ips", json::array())), cell({"out_captured"}),
              cell({"in_steered"}), cell({"in_hbone_steered"}),
              cell({"out_skip_excluded", "in_skip_excluded"}),
              cell({"out_no_listener", "out_storage_failed", "out_orig_dst_failed",
                    "in_no_listener", "in_assign_failed", "delivery_register_failed"})});
  }
  v.table = t.render(width);
  return v;
}

View bpfView(const bpfpins::PinInventory& pins,
             const std::optional<std::map<std::string, uint64_t>>& counters, size_t width) {
  View v;
  json links = json::array();
  Table lt({"LINK", "ID", "TYPE", "ATTACH", "TARGET", "PROGRAM", "PROG-TYPE", "PROG-ID"});
  for (const auto& l : pins.links) {
    links.push_back({{"pin", l.pin},
                     {"id", l.id},
                     {"type", l.type},
                     {"attach_type", l.attach_type},
                     {"target", l.target},
                     {"prog_id", l.prog_id},
                     {"prog_name", l.prog_name},
                     {"prog_type", l.prog_type},
                     {"run_count", l.run_count},
                     {"run_time_ns", l.run_time_ns}});
    std::string pin = l.pin;
    auto links_dir = pin.find("/links/");
    if (links_dir != std::string::npos) pin = pin.substr(links_dir + 7);
    lt.addRow({pin, std::to_string(l.id), l.type, l.attach_type,
               (l.type == "netns" ? "netns " : "cgroup ") + std::to_string(l.target), l.prog_name,
               l.prog_type, std::to_string(l.prog_id)});
  }
  json maps = json::array();
  Table mt({"MAP", "ID", "TYPE", "KEY", "VALUE", "MAX-ENTRIES", "ENTRIES"});
  for (const auto& m : pins.maps) {
    maps.push_back({{"pin", m.pin},
                    {"id", m.id},
                    {"name", m.name},
                    {"type", m.type},
                    {"key_size", m.key_size},
                    {"value_size", m.value_size},
                    {"max_entries", m.max_entries},
                    {"entries", m.entries ? json(*m.entries) : json(nullptr)}});
    mt.addRow({m.name, std::to_string(m.id), m.type, std::to_string(m.key_size),
               std::to_string(m.value_size), std::to_string(m.max_entries),
               m.entries ? std::to_string(*m.entries) : "-"});
  }
  Table ct({"REASON", "COUNT"});
  if (counters) {
    for (int i = 0; i < bpfpins::reasonCount(); ++i) {
      std::string reason(bpfpins::reasonName(i));
      auto it = counters->find(reason);
      ct.addRow({reason, std::to_string(it == counters->end() ? 0 : it->second)});
    }
  }
  v.data = {{"links", links},
            {"maps", maps},
            {"counters", counters ? json(*counters) : json(nullptr)},
            {"problems", pins.problems}};
  v.table = "LINKS\n" + lt.render(width) + "\nMAPS\n" + mt.render(width) +
            "\nCAPTURE COUNTERS (node-wide)\n" +
            (counters ? ct.render(width) : std::string("unreadable\n"));
  for (const auto& p : pins.problems) v.table += "problem: " + p + "\n";
  return v;
}

View explainView(const json& e, size_t width) {
  View v;
  v.data = e;
  std::string out;
  int step = 1;
  for (const auto& line : arr(e, "story")) {
    if (!line.is_string()) continue;
    std::string text = fmt::format("{:>2}. {}", step++, line.get<std::string>());
    // Wrap long sentences at the width, continuation lines indented.
    while (displayWidth(text) > width) {
      size_t cut = text.rfind(' ', width);
      if (cut == std::string::npos || cut <= 4) cut = width;
      out += text.substr(0, cut) + "\n";
      text = "    " + text.substr(cut + (text[cut] == ' ' ? 1 : 0));
    }
    out += text + "\n";
  }
  // A summary table of the paths.
  Table t({"DESTINATION", "ADDRESS", "TRANSPORT", "INBOUND", "POLICY", "RULE", "VERDICT"});
  for (const auto& p : arr(e, "paths")) {
    const json endpoint = p.value("endpoint", json(nullptr));
    const json inbound = p.value("inbound", json::object());
    const json policy = p.value("policy", json::object());
    std::string rule = policy.contains("rule") && policy["rule"].is_number()
                           ? std::to_string(policy["rule"].get<uint64_t>())
                           : "-";
    t.addRow({endpoint.is_object() ? str(endpoint, "workload") : "(outside the config)",
              str(p, "address"), str(p, "transport"),
              inbound.value("captured", false) && inbound.value("listener", 0) != 0
                  ? std::to_string(inbound.value("listener", 0)) + " " + str(inbound, "reason")
                  : str(inbound, "reason"),
              str(policy, "policy"), rule, str(p, "verdict")});
  }
  v.table = out + "\n" + t.render(width);
  return v;
}

View doctorView(const std::vector<Check>& checks, size_t width) {
  View v;
  v.data = json::array();
  Table t({"CHECK", "STATUS", "DETAIL"});
  for (const auto& c : checks) {
    v.data.push_back({{"check", c.name}, {"status", toString(c.status)}, {"detail", c.detail}});
    t.addRow({c.name, std::string(toString(c.status)), c.detail});
  }
  v.table = t.render(width);
  // What is not ok, in full (the table may have cut it short).
  for (const auto& c : checks) {
    if (c.status == CheckStatus::kOk) continue;
    v.table += fmt::format("\n{} {}: {}", toString(c.status), c.name, c.detail);
  }
  if (v.table.back() != '\n') v.table += '\n';
  return v;
}

}  // namespace nodemesh::cli
