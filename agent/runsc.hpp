// The runtime driver: runs `runsc` subcommands for one sandbox at a time, never blocking the
// reactor, each bounded by a deadline, at most N at once (FIFO beyond that).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "metrics.hpp"
#include "process.hpp"
#include "reactor.hpp"
#include "sandbox_agent/config.hpp"
#include "sandbox_agent/runtime.hpp"
#include "semaphore.hpp"
#include "spawn_helper.hpp"

namespace sandbox_agent {

struct RunscResult {
  ExitStatus status;
  bool timed_out = false;
  std::string spawn_error;  // runsc could not be run at all
  std::string output;       // stdout, for state/list
  // What a failed call wrote to runsc.log (last 4 KiB; empty when the call succeeded). The
  // sandbox's console writes to the same file, so for create/start/kill it may hold the
  // sandbox's text too; `delete`'s is runsc's own (Output::runsc_only), failed or not.
  std::string log_excerpt;
  bool ok() const { return !timed_out && spawn_error.empty() && status.ok(); }
  // One line for a status's reason text / log: "timed out after 60000 ms", "exit code 1: …".
  std::string describe() const;
};

// A held runsc slot (one of max_concurrent), released when destroyed.
class RunscSlot {
 public:
  RunscSlot() = default;
  explicit RunscSlot(AsyncSemaphore* s) : s_(s) {}
  RunscSlot(RunscSlot&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  RunscSlot& operator=(RunscSlot&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  ~RunscSlot() { reset(); }
  void reset() {
    if (s_) std::exchange(s_, nullptr)->release();
  }
  explicit operator bool() const { return s_ != nullptr; }

 private:
  AsyncSemaphore* s_ = nullptr;
};

// One `runsc run --detach` split into its create and start halves at the pid file's mtime
// (runsc writes it as the last step of create). Wall-clock microseconds; the split is clamped
// into the call, so a coarse file-system clock or a clock stepped back never gives a
// negative half.
struct RunHalves {
  std::int64_t create_ms = 0;
  std::int64_t start_ms = 0;
  std::int64_t created_at_us = 0;  // when the create half ended
};
RunHalves split_run(std::int64_t began_us, std::int64_t ended_us, std::int64_t pid_file_us);

// How the calls that can leave a runsc sandbox behind begin, after runsc's global flags. The
// driver writes each call's command line to runsc.log just before running it; recovery looks
// for these to tell whether such a call ever ran for a sandbox.
inline constexpr std::string_view kCreateCallHead = "create --bundle";
inline constexpr std::string_view kRunCallHead = "run --detach --bundle";

class Runsc {
 public:
  using Slot = RunscSlot;

  // `runtime`: what the start-up probe decided (flags added to every call); it must outlive
  // this object and is read at each call, so it may be filled in after construction.
  Runsc(asio::any_io_executor ex, const RunscConfig& config, const RuntimeInfo& runtime,
        std::string state_root, unsigned max_concurrent, Metrics& metrics);

  // Waits for a free slot: a caller can record what it is about to do before it does it.
  // Empty if `abandon` gave the place in the queue up first.
  awaitable<Slot> reserve(AsyncSemaphore::Abandon* abandon = nullptr);

  // `log_path` receives runsc's stdout and stderr (O_APPEND, rotated past 4 MiB). For
  // create it is also the sandbox's console: the sandbox inherits it. `slot`: one reserved
  // beforehand, else the call waits for one.
  // `host_cgroup`: false puts the sandbox in no host cgroup of its own (RuntimeInfo's
  // no_cgroup_flags). runsc reads it at create only (later calls use the cgroup saved in its
  // state); start is told the same for consistency.
  awaitable<RunscResult> create(const std::string& id, const std::string& bundle,
                                const std::string& pid_file, const std::string& log_path,
                                NetworkMode network, bool docker, bool host_cgroup, Slot slot = {});
  // create and start in one process (`runsc run --detach`): what create and start do, one
  // runsc start-up less. runsc writes the pid file when the create half is done; if the start
  // half fails, runsc destroys the sandbox itself.
  awaitable<RunscResult> run(const std::string& id, const std::string& bundle,
                             const std::string& pid_file, const std::string& log_path,
                             NetworkMode network, bool docker, bool host_cgroup, Slot slot = {});
  // `network` as given to create: current runsc configures the network at start.
  awaitable<RunscResult> start(const std::string& id, const std::string& log_path, NetworkMode network,
                               bool host_cgroup);
  awaitable<RunscResult> kill(const std::string& id, const char* signal, const std::string& log_path);
  awaitable<RunscResult> remove(const std::string& id, const std::string& log_path);  // delete --force
  // Signals one process inside the sandbox (its pid there, as exec's --internal-pid-file says).
  awaitable<RunscResult> kill_process(const std::string& id, long pid, const char* signal, const std::string& log_path);
  // The command line of `runsc exec`: the caller spawns it with the client's descriptors as
  // its stdio and a pipe at fd 3, where runsc writes its own errors (--log-fd).
  std::vector<std::string> exec_argv(const std::string& id, const std::vector<std::string>& args,
                                     const std::vector<std::string>& env, const std::string& cwd,
                                     const std::string& user, const std::string& internal_pid_file) const;
  awaitable<RunscResult> state(const std::string& id);
  awaitable<RunscResult> list();

  // runsc calls go through this helper from now on (the agent's own clone where it cannot
  // take one); null: the agent's own clone. The helper must outlive this object's calls.
  void use_spawn_helper(SpawnHelper* helper) { helper_ = helper; }

  unsigned queued() const { return slots_.waiting(); }
  bool idle() const { return slots_.available() == max_concurrent_ && slots_.waiting() == 0; }

  // Current runsc pins an empty network namespace for its gofers at RUNSC_ROOT/null-netns
  // (a bind mount, stacked once per create that raced another). Unmounts every layer so
  // nothing of ours stays mounted on the host; the next create pins it again. Call only
  // with no runsc call in flight (start-up, shutdown). Returns how many were unmounted.
  unsigned release_pinned_netns();

  // Waits until no runsc invocation on our --root is running any more (ones a previous agent
  // started outlive it), killing them past the call deadline.
  awaitable<void> wait_for_strays();

 private:
  // Parameters by value: a coroutine must not hold references to its caller's temporaries.
  // Where a call's output goes: runsc.log (the sandbox's console shares it); stdout to
  // RunscResult::output and stderr to the log (state, list); or both through a pipe of this
  // call alone, then appended to the log (delete: its answer is matched, and a sandbox must
  // not be able to write that answer for it).
  enum class Output { log, capture_stdout, runsc_only };
  awaitable<RunscResult> invoke(std::vector<std::string> args, std::string log_path,
                                Output output, std::optional<NetworkMode> network = std::nullopt, bool docker = false,
                                bool host_cgroup = true, Slot slot = {});
  std::vector<std::string> base_argv(std::optional<NetworkMode> network, bool docker, bool host_cgroup = true) const;

  asio::any_io_executor ex_;
  const RunscConfig& config_;
  const RuntimeInfo& runtime_;
  std::string state_root_;
  unsigned max_concurrent_;
  Metrics& metrics_;
  AsyncSemaphore slots_;
  SpawnHelper* helper_ = nullptr;
};

}  // namespace sandbox_agent
