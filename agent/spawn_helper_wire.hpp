// What the agent and its spawn helper say to each other over their SOCK_SEQPACKET pair: one
// datagram per request (a spawn with its descriptors attached, or a kill) and one per reply
// (the child's end). Both ends are the same build of the same binary.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sandbox_agent::spawn_wire {

enum Kind : std::uint32_t { kSpawn = 1, kKill = 2 };
enum Flags : std::uint32_t { kNewSession = 1, kOwnEnv = 2 };

// Followed (kSpawn) by `nargs` then `nenv` NUL-terminated strings. The descriptors ride as
// SCM_RIGHTS, one for each bit of `fds` (bit i: the child's fd i), lowest bit first.
struct Request {
  std::uint32_t kind = kSpawn;
  std::uint32_t flags = 0;
  std::uint64_t seq = 0;
  std::int32_t signal = 0;  // kKill
  std::uint32_t nargs = 0;
  std::uint32_t nenv = 0;
  std::uint32_t fds = 0;
};

// A child has ended (or could not be executed: exec_errno, code 127). seq 0: the helper is
// up (pid is its own); the first datagram it sends.
struct Reply {
  std::uint64_t seq = 0;
  std::int32_t code = -1;
  std::int32_t signal = 0;
  std::int32_t exec_errno = 0;
  std::int32_t pid = 0;
};

inline constexpr std::size_t kMaxRequest = 256 * 1024;  // argv + env; larger: the agent spawns it itself
inline constexpr int kMaxFds = 4;  // fd_passing's kMaxFdsPerMessage
inline constexpr char kHelperFlag[] = "--spawn-helper";

// The helper's loop, on the agent's socket at `fd`, until the agent closes its end. Returns
// the process's exit code.
int run_spawn_helper(int fd);

}  // namespace sandbox_agent::spawn_wire
