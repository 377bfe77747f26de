// Processes run in a running sandbox (`runsc exec`), with the client's own descriptors as
// their stdio: the stream goes from the process to the client, never through the agent.
// Each one is a child of the agent waited for on the ring; a timeout, the client going away,
// the sandbox's stop or the agent's shutdown ends it (the process inside first, by its pid
// there, then runsc's if it lingers). At most `max` at once.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "exec_args.hpp"
#include "process.hpp"
#include "reactor.hpp"
#include "runsc.hpp"
#include "sandbox_agent/error.hpp"
#include "unique_fd.hpp"

namespace sandbox_agent {

class Execs {
 public:
  struct Target {
    std::string sandbox_id;
    std::string runsc_id;
    std::string work_dir;  // host-only: the internal pid files go here
    std::string log_path;  // runsc kill's lines
  };
  // -1 for `in`: /dev/null. capture_err: the agent keeps stderr (a pipe), for cp's report.
  struct Stdio {
    UniqueFd in, out, err;
    bool capture_err = false;
  };
  // Called once: the outcome, or why it could not start; `captured` is stderr when captured.
  using Done = std::function<void(const Result<ExecOutcome>&, const std::string& captured)>;

  Execs(asio::any_io_executor ex, Runsc& runsc, unsigned max);
  ~Execs();

  // Spawns it now and returns its exec id; `done` follows when it has ended.
  Result<std::string> start(const Target& target, const ExecArgs& args, Stdio stdio, Done done);
  // Ends one (its client went away) or every one of a sandbox (it stops), with `reason`.
  void end(const std::string& exec_id, std::string_view reason);
  void end_sandbox(const std::string& sandbox_id, std::string_view reason);
  // After a restart: the processes execs of a previous agent left running in this sandbox
  // (their clients lost the agent's connection with it) are killed, by their pid files.
  void end_left_behind(const Target& target);
  // Ends them all and waits (bounded) until each has been reported.
  awaitable<void> end_all(std::string_view reason, Millis bound);
  std::size_t running() const { return running_.size(); }

 private:
  struct Running;
  using RunningPtr = std::shared_ptr<Running>;
  awaitable<void> supervise(RunningPtr r);
  awaitable<void> kill_inside(RunningPtr r);
  void end(const RunningPtr& r, std::string_view reason);
  awaitable<void> kill_left_behind(Target target, std::vector<long> pids);

  asio::any_io_executor ex_;
  Runsc& runsc_;
  unsigned max_;
  std::uint64_t next_id_ = 0;
  std::map<std::string, RunningPtr> running_;
  Wake changed_;
};

}  // namespace sandbox_agent
