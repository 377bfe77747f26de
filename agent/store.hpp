// The durable record of a sandbox (state/ID.json): enough to adopt, re-probe, stop or
// account for it after the agent restarts.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "sandbox.hpp"
#include "sandbox_agent/error.hpp"

namespace sandbox_agent {

// The request as JSON in the launch-request schema (so it parses back with the same code).
std::string request_to_json(const LaunchRequest& request);

std::string record_to_json(const Sandbox& sb);

struct Record {
  LaunchRequest request;
  std::string id, runsc_id, origin;
  std::string dir;  // empty: the id (records from before pools)
  std::string pool;
  PoolStart pool_start = PoolStart::none;
  std::uint64_t pool_template = 0;
  SandboxState state = SandboxState::accepted;
  std::string reason;
  std::optional<int> exit_code;
  std::int64_t created_at_us = 0;
  std::optional<std::int64_t> ready_at_us;
  Timings timings;
  pid_t pid = -1;
  std::string docker_socket, log_tail;
  std::optional<Capabilities> capabilities;
  std::optional<std::int64_t> ttl_deadline_us;
  bool network_intent = false;
  std::optional<NetworkAttachment> network;
  bool stop_requested = false;
  bool runsc_created = false;
  bool finished = false;
};

Result<Record> parse_record(std::string_view text);

}  // namespace sandbox_agent
