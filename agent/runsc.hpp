// The runtime driver: runs `runsc` subcommands for one sandbox at a time, never blocking the
// reactor, each bounded by a deadline, at most N at once (FIFO beyond that).
#pragma once

#include <string>
#include <vector>

#include "process.hpp"
#include "reactor.hpp"
#include "sandbox_agent/config.hpp"
#include "semaphore.hpp"

namespace sandbox_agent {

struct RunscResult {
  ExitStatus status;
  bool timed_out = false;
  std::string spawn_error;  // runsc could not be run at all
  std::string output;       // stdout, for state/list
  std::string log_excerpt;  // what this call wrote to runsc.log (last 4 KiB)
  bool ok() const { return !timed_out && spawn_error.empty() && status.ok(); }
  // One line for a status's reason text / log: "timed out after 60000 ms", "exit code 1: …".
  std::string describe() const;
};

class Runsc {
 public:
  Runsc(asio::any_io_executor ex, const RunscConfig& config, std::string state_root,
        unsigned max_concurrent);

  // `log_path` receives runsc's stdout and stderr (O_APPEND, rotated past 4 MiB). For
  // create it is also the sandbox's console: the sandbox inherits it.
  awaitable<RunscResult> create(const std::string& id, const std::string& bundle,
                                const std::string& pid_file, const std::string& log_path,
                                bool host_network);
  awaitable<RunscResult> start(const std::string& id, const std::string& log_path);
  awaitable<RunscResult> kill(const std::string& id, const char* signal, const std::string& log_path);
  awaitable<RunscResult> remove(const std::string& id, const std::string& log_path);  // delete --force
  awaitable<RunscResult> state(const std::string& id);
  awaitable<RunscResult> list();

  unsigned queued() const { return slots_.waiting(); }

 private:
  // Parameters by value: a coroutine must not hold references to its caller's temporaries.
  awaitable<RunscResult> invoke(std::vector<std::string> args, std::string log_path,
                                bool capture_stdout, bool host_network = false);
  std::vector<std::string> base_argv(bool host_network) const;

  asio::any_io_executor ex_;
  const RunscConfig& config_;
  std::string state_root_;
  AsyncSemaphore slots_;
};

}  // namespace sandbox_agent
