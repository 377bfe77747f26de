// What a fake sandbox does, read from its OCI config.json: the FAKE_RUNSC directives in
// process.env, whether process.args run dockerd under sandbox-init, and the host paths
// of sandbox-init's status dir, log dir and relay socket (through the spec's mounts).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fake_runsc {

enum class PingMode : uint8_t { ok, error, garbage, hang };

struct Directives {
  bool create_fail = false, create_hang = false;
  bool start_fail = false, start_hang = false;
  bool delete_hang = false, state_fail = false;
  bool ignore_term = false;            // kill=ignore-term
  bool dockerd_never = false;          // dockerd=never
  PingMode ping = PingMode::ok;        // ping=ok|error|garbage|hang
  int exit_code = 0;                   // exit_code=C
  int64_t exit_after_ms = -1;          // exit_after_ms=N (-1: never)
  int64_t dockerd_delay_ms = 20;       // dockerd_delay_ms=N
  int64_t answer_delay_ms = 0;         // answer_delay_ms=N
  int64_t listen_gap_ms = 0;           // listen_gap_ms=N: bound N ms before it listens
  int64_t dockerd_exit_after_ms = -1;  // dockerd_exit_after_ms=N (-1: never)
  int64_t start_delay_ms = 0;          // start_delay_ms=N: start answers N ms late
};

struct Plan {
  Directives d;
  bool docker = false;     // "--dockerd" among sandbox-init's options
  std::string status_dir;  // host paths; empty when not mounted from the host
  std::string log_dir;
  std::string relay_socket;
  std::string dockerd_socket = "/run/docker.sock";  // in the sandbox, for log lines
  std::vector<std::pair<std::string, std::string>> mounts;  // destination, host source
};

// The host path of in-sandbox `path` through `mounts` (the longest destination that covers
// it); `path` itself when none does: a fake exec runs on the host.
std::string exec_host_path(const Plan& plan, std::string_view path);

// Parses "a,b=c,..." into `d`; returns an error message for an unknown directive.
std::string parse_directives(std::string_view text, Directives& d);

// Reads BUNDLE/config.json. On failure returns nullopt and sets `err`.
std::optional<Plan> load_plan(const std::string& bundle, std::string& err);

}  // namespace fake_runsc
