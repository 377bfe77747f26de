// The agent as a library: what the sandbox-agent daemon runs, and what an edge program can
// embed on its own io_context (see docs/embedding.md). Everything runs on the io_context's
// one thread; call these only from that thread (e.g. from a handler or asio::post).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sandbox_agent/config.hpp"
#include "sandbox_agent/error.hpp"
#include "sandbox_agent/request.hpp"
#include "sandbox_agent/runtime.hpp"
#include "sandbox_agent/status.hpp"

namespace asio { class io_context; }

namespace sandbox_agent {

struct AgentOptions {
  bool socket = true;         // serve the Unix socket
  bool spool = true;          // watch the spool directory
  int inherited_socket = -1;  // a listening socket passed by systemd (LISTEN_FDS)
  // A program that serves the agent's runsc calls when run with `--spawn-helper` and the
  // agent's end of a socket at fd 3: the daemon gives its own ("/proc/self/exe"); an embedding
  // program may give its own too if its main calls sandbox_agent::spawn_helper_main() first
  // (docs/embedding.md). Empty: the agent forks runsc itself.
  std::string spawn_helper;
};

// For a program that embeds the agent and sets AgentOptions::spawn_helper to itself: call
// first thing in main; returns the exit code when the process was started as the helper,
// else -1 (go on as usual).
int spawn_helper_main(int argc, char** argv);

class Agent {
 public:
  Agent(asio::io_context& io, Config config, AgentOptions options = {});
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Creates the layout, recovers sandboxes from state/, opens the intakes; `done` runs
  // when the agent is serving (or could not start).
  void start(std::function<void(const Status&)> done);

  // Submits a request built in code (validated and checked against the policy here).
  void launch(LaunchRequest request, std::function<void(Result<std::string>)> done);
  Result<SandboxState> stop(const std::string& id, unsigned timeout_ms = 10000);
  // The sandbox is stopped (ttl_expired) `ttl_ms` from now; returns that deadline (Unix µs).
  Result<std::int64_t> extend(const std::string& id, std::uint64_t ttl_ms);
  std::optional<SandboxStatus> status(const std::string& id) const;
  std::vector<SandboxStatus> list() const;
  Stats stats() const;
  // The Prometheus text exposition (as the `metrics` op and metrics.listen serve it).
  std::string metrics() const;

  // Every state change of every sandbox, in order.
  using EventHandler = std::function<void(const StateEvent&, const SandboxStatus&)>;
  std::uint64_t subscribe(EventHandler handler);
  void unsubscribe(std::uint64_t token);

  // Stops the intakes; stops every sandbox when config.stop_sandboxes_on_exit, else leaves
  // them running for the next start to adopt. `done` runs when the state is on disk.
  void shutdown(std::function<void()> done);

  const Config& config() const;
  // What the start-up probe found the runtime to be (filled in before `start` calls back).
  const RuntimeInfo& runtime() const;
  std::size_t connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sandbox_agent
