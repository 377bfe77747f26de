#include "spec.hpp"

#include "mounts.hpp"

#include <simdjson.h>

#include <charconv>
#include <string_view>
#include <utility>
#include <vector>

#include "files.hpp"

namespace fake_runsc {
namespace {

using simdjson::SUCCESS;

bool parse_int(std::string_view s, int64_t& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

// Directives that are a fixed key=value pair.
struct Switch {
  std::string_view key, value;
  void (*apply)(Directives&);
};
constexpr Switch kSwitches[] = {
    {"create", "fail", [](Directives& d) { d.create_fail = true; }},
    {"create", "hang", [](Directives& d) { d.create_hang = true; }},
    {"start", "fail", [](Directives& d) { d.start_fail = true; }},
    {"start", "hang", [](Directives& d) { d.start_hang = true; }},
    {"delete", "hang", [](Directives& d) { d.delete_hang = true; }},
    {"state", "fail", [](Directives& d) { d.state_fail = true; }},
    {"kill", "ignore-term", [](Directives& d) { d.ignore_term = true; }},
    {"dockerd", "never", [](Directives& d) { d.dockerd_never = true; }},
    {"ping", "ok", [](Directives& d) { d.ping = PingMode::ok; }},
    {"ping", "error", [](Directives& d) { d.ping = PingMode::error; }},
    {"ping", "garbage", [](Directives& d) { d.ping = PingMode::garbage; }},
    {"ping", "hang", [](Directives& d) { d.ping = PingMode::hang; }},
};

// Directives that take a number of milliseconds.
struct Delay {
  std::string_view key;
  int64_t Directives::*field;
};
constexpr Delay kDelays[] = {
    {"exit_after_ms", &Directives::exit_after_ms},
    {"dockerd_delay_ms", &Directives::dockerd_delay_ms},
    {"answer_delay_ms", &Directives::answer_delay_ms},
    {"listen_gap_ms", &Directives::listen_gap_ms},
    {"dockerd_exit_after_ms", &Directives::dockerd_exit_after_ms},
    {"start_delay_ms", &Directives::start_delay_ms},
};

std::string apply_directive(std::string_view key, std::string_view value, Directives& d) {
  for (const auto& s : kSwitches) {
    if (s.key == key && s.value == value) {
      s.apply(d);
      return {};
    }
  }
  int64_t n = 0;
  for (const auto& delay : kDelays) {
    if (delay.key != key) continue;
    if (!parse_int(value, n) || n < 0)
      return "directive " + std::string(key) + " needs a number >= 0";
    d.*delay.field = n;
    return {};
  }
  if (key == "exit_code") {
    if (!parse_int(value, n) || n < 0 || n > 255) return "directive exit_code needs 0..255";
    d.exit_code = static_cast<int>(n);
    return {};
  }
  return "unknown directive \"" + std::string(key) + "=" + std::string(value) + "\"";
}

// sandbox-init's options, parsed as it does: each takes a value ("--opt value" or
// "--opt=value"); they end at "--" or at the first word that is not an option.
struct InitOptions {
  bool docker = false;
  std::string status_dir = "/.sandbox-agent/sockets";  // when absent (the agent passes both)
  std::string log_dir = "/.sandbox-agent/logs";
  std::string relay_socket;  // absent: no relay, so no host-visible socket
  std::string dockerd_socket;
};

InitOptions parse_init_args(const std::vector<std::string_view>& args) {
  InitOptions o;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "--" || !a.starts_with("-")) break;
    a.remove_prefix(a.starts_with("--") ? 2 : 1);
    const auto eq = a.find('=');
    const std::string_view name = a.substr(0, eq);
    std::string_view value;
    if (eq != std::string_view::npos)
      value = a.substr(eq + 1);
    else if (i + 1 < args.size())
      value = args[++i];
    if (name == "dockerd")
      o.docker = true;
    else if (name == "status-dir")
      o.status_dir = value;
    else if (name == "log-dir")
      o.log_dir = value;
    else if (name == "relay-socket")
      o.relay_socket = value;
    else if (name == "dockerd-socket")
      o.dockerd_socket = value;
  }
  return o;
}

std::vector<std::string_view> string_array(simdjson::dom::element parent, const char* key) {
  std::vector<std::string_view> out;
  simdjson::dom::array arr;
  if (parent.at_key(key).get(arr) != SUCCESS) return out;
  for (auto e : arr) {
    std::string_view s;
    if (e.get(s) == SUCCESS) out.push_back(s);
  }
  return out;
}

}  // namespace

std::string parse_directives(std::string_view text, Directives& d) {
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) return "directive \"" + std::string(item) + "\" has no '='";
    if (auto err = apply_directive(item.substr(0, eq), item.substr(eq + 1), d); !err.empty())
      return err;
  }
  return {};
}

std::optional<Plan> load_plan(const std::string& bundle, std::string& err) {
  static simdjson::dom::parser parser;  // the daemon is single-threaded; reuse buffers
  const std::string path = join_path(bundle, "config.json");
  simdjson::dom::element doc;
  if (auto e = parser.load(path).get(doc); e != SUCCESS) {
    err = "reading spec: error reading spec file \"" + path + "\": " + simdjson::error_message(e);
    return std::nullopt;
  }
  simdjson::dom::element process;
  if (doc.at_key("process").get(process) != SUCCESS) {
    err = "reading spec: spec \"" + path + "\" has no process";
    return std::nullopt;
  }

  Plan plan;
  for (auto env : string_array(process, "env")) {
    if (!env.starts_with("FAKE_RUNSC=")) continue;
    if (auto e = parse_directives(env.substr(11), plan.d); !e.empty()) {
      err = "fake-runsc: " + e;
      return std::nullopt;
    }
  }

  std::vector<MountView> mounts;
  simdjson::dom::array mount_array;
  if (doc.at_key("mounts").get(mount_array) == SUCCESS) {
    for (auto m : mount_array) {
      MountView mount;
      if (m.at_key("destination").get(mount.destination) == SUCCESS &&
          m.at_key("source").get(mount.source) == SUCCESS)
        mounts.push_back(mount);
    }
  }
  for (const auto& m : mounts) plan.mounts.emplace_back(std::string(m.destination), std::string(m.source));

  const InitOptions init = parse_init_args(string_array(process, "args"));
  plan.docker = init.docker;
  plan.status_dir = host_path(mounts, init.status_dir);
  plan.log_dir = host_path(mounts, init.log_dir);
  if (plan.docker && !init.relay_socket.empty())
    plan.relay_socket = host_path(mounts, init.relay_socket);
  if (!init.dockerd_socket.empty()) plan.dockerd_socket = init.dockerd_socket;
  return plan;
}

}  // namespace fake_runsc
