// What `exec` and `cp` ask for, as the protocol parsed and checked it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sandbox_agent/request.hpp"

namespace sandbox_agent {

struct ExecArgs {
  std::vector<std::string> args;  // args[0]: a path, or a name looked up on the sandbox's PATH
  std::vector<std::string> env;   // NAME=VALUE, added to the sandbox's own environment
  std::string cwd;                // empty: the sandbox's
  std::optional<Owner> user;      // absent: the sandbox's
  bool tty = false;               // the client's descriptors are its terminal
  std::uint64_t timeout_ms = 0;   // 0: none
};

enum class CopyDirection { in, out };

struct CopyArgs {
  CopyDirection direction = CopyDirection::in;
  std::string path;  // inside the sandbox: absolute, normalised
  std::uint32_t mode = 0644;  // `in`, for a file that did not exist
  std::uint64_t timeout_ms = 600000;
};

// How an exec ended. `reason` is set when the agent ended it (then `signal` is SIGKILL).
struct ExecOutcome {
  int exit_code = -1;  // as runsc reports it: the code, or 128+N when signal N ended it
  int signal = 0;
  std::string reason;  // timeout, client_gone, sandbox_stopped, agent_shutdown
};

}  // namespace sandbox_agent
