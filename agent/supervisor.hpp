// The supervisor: the only owner of sandbox state. It takes validated launch requests from the
// intakes, drives each sandbox through spec → runtime → probe → store on its own coroutine,
// and publishes every state change on the event bus.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "durable_writer.hpp"
#include "events.hpp"
#include "exec.hpp"
#include "layout.hpp"
#include "metrics.hpp"
#include "network.hpp"
#include "reactor.hpp"
#include "runsc.hpp"
#include "store.hpp"
#include "sandbox.hpp"
#include "sandbox_agent/config.hpp"
#include "watchers.hpp"

namespace sandbox_agent {

class Supervisor {
 public:
  // `runtime` is filled in by the start-up probe before recover() and any launch.
  Supervisor(asio::any_io_executor ex, const Config& config, const RuntimeInfo& runtime, EventBus& events,
             DurableWriter& writer, DirWatcher& dirs, PidWatcher& pids);

  // Takes a validated request (policy applied). Assigns the id when absent, records the
  // sandbox durably, answers, then runs its lifecycle. Errors: exists, overloaded, internal.
  awaitable<Result<std::string>> launch(LaunchRequest request, std::string origin);

  // Pools (supervisor_pool.cpp; the refills are Pools'): a member is launched like any
  // sandbox, with its own id and origin pool:NAME; a launch naming the pool takes a ready one
  // (its id, labels, socket owner and ttl become the caller's), or launches the template cold.
  awaitable<Result<std::string>> launch_pool_member(const PoolConfig& pool);
  struct PoolMembers {
    unsigned warming = 0;  // launched, not ready yet
    unsigned ready = 0;    // ready, not claimed
  };
  PoolMembers pool_members(const std::string& pool, std::uint64_t template_hash) const;
  // Waiting members no pool of this configuration wants (its pool is gone, its template
  // changed, or there are more than `size`): the newest beyond `size` first.
  std::vector<std::string> unwanted_pool_members() const;
  Result<SandboxState> stop(const std::string& id, unsigned timeout_ms);
  // A ready sandbox to run something in; the error names /id.
  Result<const Sandbox*> ready_sandbox(const std::string& id) const;
  // Sets the sandbox's deadline to `ttl_ms` from now (shorter or longer than before); at the
  // deadline it is stopped with reason ttl_expired. Returns the deadline (Unix µs).
  Result<std::int64_t> extend(const std::string& id, std::uint64_t ttl_ms);
  // The host path of a sandbox's log: main (its console: the main process's stdout/stderr,
  // with runsc's own lines), dockerd, runsc.
  Result<std::string> log_path(const std::string& id, const std::string& source) const;
  // Runs a process in a ready sandbox with the client's descriptors as its stdio (see
  // exec.hpp); returns its exec id at once, `done` follows when it has ended.
  Result<std::string> exec(const std::string& id, const ExecArgs& args, Execs::Stdio stdio, Execs::Done done);
  // Copies one file in or out of a ready sandbox, `fd` being the client's end: sandbox-init
  // (`cp-in` / `cp-out`, through an exec) moves it, so the image needs no tool of its own.
  using CopyDone = std::function<void(const Result<std::uint64_t>&)>;
  Result<std::string> copy(const std::string& id, const CopyArgs& args, UniqueFd fd, CopyDone done);
  // The client of an exec or cp went away: it ends (reason client_gone).
  void end_exec(const std::string& exec_id) { execs_.end(exec_id, "client_gone"); }
  const Sandbox* find(const std::string& id) const;
  std::vector<std::string> ids_with_origin(const std::string& origin) const;
  std::vector<SandboxStatus> list() const;
  Stats stats() const;
  // What it counted as it went (failures and stops by reason, time to ready, runsc calls,
  // probe attempts, pool claims): read by the `metrics` op.
  const Metrics& metrics() const { return metrics_; }
  std::map<SandboxState, std::uint64_t> count_by_state() const;
  std::size_t execs_running() const { return execs_.running(); }
  const Networks& networks() const { return networks_; }
  // What requests from every intake are held to, built once from the configuration (which
  // does not change while the agent runs).
  const RequestPolicy& policy() const { return policy_; }
  std::size_t active() const;  // sandboxes not yet torn down

  // runsc calls go through the helper from now on (runsc.hpp).
  void use_spawn_helper(SpawnHelper* helper) { runsc_.use_spawn_helper(helper); }

  // Start-up: adopts what state/ and runsc say is still there (see docs/durability.md).
  // Fails (and changes nothing) when runsc cannot say which sandboxes it holds.
  awaitable<Status> recover();
  // Shutdown: by default leaves sandboxes running (adopted on restart); with stop_all stops
  // every one and waits for them.
  awaitable<void> shutdown(bool stop_all);

 private:
  struct PoolTag {
    std::string pool;
    PoolStart start = PoolStart::none;
    std::uint64_t template_hash = 0;
  };
  awaitable<Result<std::string>> launch_sandbox(LaunchRequest request, std::string origin, PoolTag tag);
  awaitable<Result<std::string>> launch_from_pool(LaunchRequest request, std::string origin);
  awaitable<Result<std::string>> claim(SandboxPtr member, const PoolConfig& pool, LaunchRequest request,
                                       std::string origin);
  void apply_socket_owner(Sandbox& sb);
  Execs::Target exec_target(const Sandbox& sb) const;  // where its execs' pid files and log lines go
  awaitable<void> lifecycle(SandboxPtr sb);
  void clean_after_restart(Sandbox& sb);
  bool runsc_create_was_run(const Sandbox& sb) const;
  // runsc.host_cgroups: a host cgroup of its own only where it has limits to enforce.
  bool wants_host_cgroup(const Sandbox& sb) const {
    return config_.runsc.host_cgroups == "always" || sb.request.resources.any();
  }
  awaitable<void> bring_up(SandboxPtr sb);
  awaitable<void> run(SandboxPtr sb, Runsc::Slot slot);
  awaitable<void> start(SandboxPtr sb);
  awaitable<void> started(SandboxPtr sb);
  awaitable<void> probe_docker(SandboxPtr sb);
  awaitable<void> supervise(SandboxPtr sb);
  awaitable<void> stop_flow(SandboxPtr sb);
  void rewatch(SandboxPtr sb);
  awaitable<void> tear_down(SandboxPtr sb);
  // Again, with backoff, while runsc refuses to delete a sandbox that ended.
  awaitable<void> retry_tear_down(SandboxPtr sb);
  awaitable<bool> attach_network(SandboxPtr sb);
  awaitable<void> detach_network(SandboxPtr sb);
  awaitable<void> keep_logs(SandboxPtr sb);

  // The one place state changes: updates, logs, publishes, and records (durably; awaited
  // only by callers that must not act before the record is on disk). `at_unix_us`: when it
  // happened, if that was before now (0: now).
  void transition(Sandbox& sb, SandboxState to, std::string_view reason = {}, std::int64_t at_unix_us = 0);
  void fail(Sandbox& sb, std::string_view reason, std::string detail);
  void persist(Sandbox& sb);
  static DurableWriter::Spare record_spare(Sandbox& sb);
  void retry_record(const std::string& id);
  awaitable<bool> persist_now(SandboxPtr sb);

  Status prepare_host_dirs(Sandbox& sb);
  void watch_sandbox(SandboxPtr sb);
  void watch_pid(SandboxPtr sb);
  void unwatch_sandbox(Sandbox& sb);
  void read_markers(Sandbox& sb);
  void on_exit_marker(Sandbox& sb, std::string_view name);
  bool prepare_docker_socket(Sandbox& sb);
  void resolve_end(Sandbox& sb);
  std::string new_runsc_id();
  std::string new_sandbox_id();
  bool evict_one_finished();
  void note_ready_time(std::int64_t ms);

  asio::any_io_executor ex_;
  Capabilities capabilities_for(const LaunchRequest& request) const;

  const Config& config_;
  const RuntimeInfo& runtime_;
  Layout layout_;
  EventBus& events_;
  DurableWriter& writer_;
  DirWatcher& dirs_;
  PidWatcher& pids_;
  Metrics metrics_;  // before runsc_, which counts into it
  Runsc runsc_;
  RequestPolicy policy_;
  Networks networks_;
  Execs execs_;
  std::map<std::string, SandboxPtr> sandboxes_;
  std::deque<std::string> finished_order_;  // oldest finished first, for eviction
  std::mt19937_64 rng_;
  Stats counters_;
  std::vector<double> ready_samples_;  // ring buffer
  std::size_t ready_next_ = 0;
  std::uint64_t pending_launches_ = 0;
  bool shutting_down_ = false;
  bool recovered_ = false;
  std::set<std::string> unwritten_records_;  // ids whose last record write failed
  bool retrying_records_ = false;
};

}  // namespace sandbox_agent
