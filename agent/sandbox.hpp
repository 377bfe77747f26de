// One sandbox as the supervisor tracks it. Only the supervisor changes `state`; watchers and
// requests set the flags below and wake the sandbox's lifecycle coroutine.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "network_attachment.hpp"
#include "reactor.hpp"
#include "semaphore.hpp"
#include "sandbox_agent/request.hpp"
#include "sandbox_agent/status.hpp"

namespace sandbox_agent {

struct Sandbox {
  explicit Sandbox(asio::any_io_executor ex) : wake(std::move(ex)) {}

  std::string id;
  std::string runsc_id;  // fixed length: never a prefix of another (runsc matches by prefix)
  LaunchRequest request;
  std::string origin;  // "socket", "spool:NAME", "api", "pool:NAME" (a member not yet claimed)
  // The name of its directories and its record under the root: its id, or, for a sandbox
  // taken from a pool, the member's name it was born with (a claim does not move them).
  std::string dir;
  std::string pool;                    // the pool it belongs to, or came from
  PoolStart pool_start = PoolStart::none;
  std::uint64_t pool_template = 0;     // a member's template hash (a changed template replaces it)

  SandboxState state = SandboxState::accepted;
  std::string reason;
  std::optional<int> exit_code;
  std::int64_t created_at_us = 0;
  std::optional<std::int64_t> ready_at_us;
  Clock::time_point accepted_at;
  Timings timings;
  std::string log_tail;
  std::string docker_socket;
  std::optional<Capabilities> capabilities;
  pid_t pid = -1;  // the sandbox process (runsc's state pid)
  // Bridge: set (and recorded) before the namespace is made, cleared once DEL succeeded.
  bool network_intent = false;
  std::optional<NetworkAttachment> network;
  std::optional<std::int64_t> ttl_deadline_us;  // Unix µs; set at ready from ttl_ms, or by extend

  // What the lifecycle reacts to.
  bool stop_requested = false;
  std::string stop_reason{"stop_requested"};  // or ttl_expired
  unsigned stop_timeout_ms = 10000;
  bool init_exited = false;
  std::optional<int> init_exit_code;
  bool dockerd_exited = false;
  bool process_gone = false;
  bool markers_unread = false;
  AsyncSemaphore::Abandon slot_wait;  // a stop gives up its place in the queue for runsc  // an exit marker could not be read (no descriptor): look again
  bool runsc_created = false;  // runsc may hold state for it: delete before forgetting
  // The intent record already said runsc may hold it (no bridge network: bring_up has
  // nothing to record before runsc create, so it writes no `creating` record of its own).
  bool runsc_promised = false;
  bool finished = false;       // torn down; the id may be reused
  bool recorded = false;       // its state record exists, or a write of it is queued
  bool host_prepared = false;  // its directories and log quota are made: its logs are its own
  bool pending = false;        // counted in the pending launches (before probing/ready)
  bool socket_prepared = false;
  bool adopted = false;        // found running at start-up

  int watch_wd = -1;
  std::uint64_t pid_token = 0;
  Wake wake;

  bool ended() const { return init_exited || dockerd_exited || process_gone; }
  SandboxStatus status() const {
    std::optional<NetworkStatus> net;
    if (network) net = NetworkStatus{network->ip, request.ports};
    return {id, state, reason, exit_code, request.labels, created_at_us, ready_at_us,
            docker_socket, timings, log_tail, capabilities, std::move(net), ttl_deadline_us, pool, pool_start};
  }
};

using SandboxPtr = std::shared_ptr<Sandbox>;

}  // namespace sandbox_agent
