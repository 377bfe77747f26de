// fork + exec with the failure reported back: a close-on-exec pipe carries the errno of a
// failed step to init, so "cannot execute" is logged by init and not lost in the child.
#pragma once

#include <functional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "fd.hpp"

namespace sinit {

struct SpawnRequest {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;  // -1: inherit init's own
  // setsid(): a daemon's own session, so signals meant for the main child's process group
  // (`kill 0`, a terminal's ^C) do not reach it.
  bool new_session = false;
  // Put the child in a new user + mount namespace (unshare(2)) before it execs; map_ids is then
  // called in init with the child's pid to write its uid/gid maps, which only a process in the
  // parent namespace may do with more than one id. The child execs after map_ids returns true.
  bool new_userns = false;
  std::function<bool(pid_t)> map_ids;
};

struct SpawnResult {
  pid_t pid = -1;        // -1 when fork failed; otherwise the caller reaps it as usual
  bool started = false;  // true when exec succeeded
  int err = 0;           // errno of the failed step
  std::string error;     // which step failed, for the log
};

// Exit status of a child whose exec failed: 126 for permission problems, 127 otherwise (like
// shells); 125 when a setup step before exec failed.
inline constexpr int kExitSetupFailed = 125;
int exec_failure_status(int err);

SpawnResult spawn(const SpawnRequest& req);

// spawn() in two halves, so that several children exec at once: spawn_begin forks and
// returns without waiting for the exec (which inside gVisor takes ~10 ms for a large
// binary); spawn_finish waits for its report. Not for new_userns (its handshake needs init).
struct PendingSpawn {
  pid_t pid = -1;
  Fd report;           // read end of the child's report pipe: EOF once it exec'd
  SpawnResult failed;  // when fork or pipe2 failed (pid -1)
};
PendingSpawn spawn_begin(const SpawnRequest& req);
SpawnResult spawn_finish(PendingSpawn& pending);

// The status the way shells report it: the exit code, or 128 + signal number.
int exit_code_from_wait_status(int status);

}  // namespace sinit
