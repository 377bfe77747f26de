// Sandbox states, the status record callers see, and state-change events.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sandbox_agent/request.hpp"

namespace sandbox_agent {

enum class SandboxState { accepted, creating, starting, probing, ready, stopping, stopped, failed };

std::string_view to_string(SandboxState s);
std::optional<SandboxState> parse_state(std::string_view s);
inline bool is_terminal(SandboxState s) {
  return s == SandboxState::stopped || s == SandboxState::failed;
}

// Failure and stop reasons (the `reason` field). Fixed strings callers may match on.
namespace reason {
inline constexpr std::string_view runsc_create_failed = "runsc_create_failed";
inline constexpr std::string_view runsc_start_failed = "runsc_start_failed";
inline constexpr std::string_view runsc_timeout = "runsc_timeout";
inline constexpr std::string_view ready_timeout = "ready_timeout";
inline constexpr std::string_view dockerd_exited = "dockerd_exited";
inline constexpr std::string_view exited = "exited";
inline constexpr std::string_view stop_requested = "stop_requested";
inline constexpr std::string_view agent_restart = "agent_restart";
inline constexpr std::string_view host_error = "host_error";
inline constexpr std::string_view ttl_expired = "ttl_expired";  // its ttl_ms (or extend) ran out
inline constexpr std::string_view network_setup_failed = "network_setup_failed";  // a CNI plugin, the namespace, the firewall  // disk, permissions, fds
}  // namespace reason

struct Timings {
  std::optional<std::int64_t> create_ms;  // runsc create took (run: its create half, to the pid file)
  std::optional<std::int64_t> start_ms;   // runsc start took (run: its start half)
  std::optional<std::int64_t> ready_ms;   // accepted → ready
  std::optional<std::int64_t> network_ms;  // bridge: namespace + CNI ADD + firewall took
};

// What the runtime that created the sandbox gives it (decided from the runtime probe).
struct Capabilities {
  std::string runtime_version;  // `runsc --version`
  std::string platform;         // systrap, ptrace, …
  bool nested_containers = false;  // Docker sandboxes: `docker run` works inside
};

struct NetworkStatus {
  std::string ip;  // the sandbox's address on the bridge
  std::vector<PortMapping> ports;
};

// How a sandbox relates to a pool: none; waiting (a member not claimed yet); warm (claimed
// ready from the pool); cold (asked of a pool that had none ready: launched from its template).
enum class PoolStart { none, waiting, warm, cold };
std::string_view to_string(PoolStart p);
std::optional<PoolStart> parse_pool_start(std::string_view s);

struct SandboxStatus {
  std::string id;
  SandboxState state = SandboxState::accepted;
  std::string reason;
  std::optional<int> exit_code;
  std::vector<std::pair<std::string, std::string>> labels;
  std::int64_t created_at_us = 0;  // Unix time, microseconds
  std::optional<std::int64_t> ready_at_us;
  std::string docker_socket;  // host path, set once ready
  Timings timings;
  std::string log_tail;  // why it failed, from runsc.log / dockerd.log
  std::optional<Capabilities> capabilities;  // once it reached the runtime
  std::optional<NetworkStatus> network;       // bridge sandboxes, once attached
  std::optional<std::int64_t> ttl_deadline_us;  // when it will be stopped (ttl_expired)
  std::string pool;                    // the pool it belongs to or came from
  PoolStart pool_start = PoolStart::none;
};

struct StateEvent {
  std::string id;
  SandboxState state = SandboxState::accepted;
  std::string reason;
  std::int64_t ts_us = 0;
  std::optional<int> exit_code;
};

struct Stats {
  std::uint64_t accepted = 0, ready = 0, failed = 0, stopped = 0;
  std::uint64_t in_flight = 0;  // accepted and not yet stopped or failed
  std::uint64_t runsc_queued = 0;  // launches waiting for a runsc slot
  std::uint64_t records_unwritten = 0;  // state records that failed to write, being retried
  // Time to ready (accepted → ready) in ms, over the last 10,000 sandboxes that got there.
  std::uint64_t samples = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
};

// RFC 3339 UTC with microseconds: 2026-11-29T08:47:49.123456Z
std::string format_time(std::int64_t unix_us);
std::int64_t now_unix_us();

// One-line JSON, as in the socket protocol and the spool status files.
std::string to_json(const SandboxStatus& status);
std::string to_json(const StateEvent& event);

}  // namespace sandbox_agent
