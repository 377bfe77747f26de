// Child processes without blocking the reactor: clone(CLONE_VM) with no wait for the exec
// (argv only, no shell, inherited fds closed, signals reset), waited for through the pidfd
// clone returns, polled on the ring. A program that cannot be executed is reported by wait().
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reactor.hpp"
#include "sandbox_agent/error.hpp"

namespace sandbox_agent {

struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0] is the program path (no PATH search)
  int stdout_fd = -1;             // -1: /dev/null
  int stderr_fd = -1;             // -1: /dev/null
  bool new_session = true;        // keep terminal signals (Ctrl-C) away from the child
  int stdin_fd = -1;              // -1: /dev/null
  const std::vector<std::string>* env = nullptr;  // null: the agent's own environment
  int fd3 = -1;                   // becomes the child's fd 3; -1: none
};

struct ExitStatus {
  int code = -1;       // exit code when the child exited
  int signal = 0;      // the signal that killed it, else 0
  int exec_errno = 0;  // the program could not be executed (execve's errno); code is 127 then
  bool ok() const { return signal == 0 && code == 0 && exec_errno == 0; }
  std::string describe() const;
};

// "cannot run PROGRAM: REASON", for a child whose exec failed.
std::string exec_error_text(const std::string& program, int exec_errno);

struct Launch;  // what a child uses of the agent's memory until it has exec'd (process.cpp)
struct RemoteChild;  // one the spawn helper started (spawn_helper.hpp)

// An owned child: its pid and pidfd, or the spawn helper's handle on it. Destroying a Child
// that has not been waited for kills (SIGKILL) and reaps it, so no zombie outlives its owner.
class Child {
 public:
  Child() = default;
  Child(pid_t pid, int pidfd, Launch* launch = nullptr) : pid_(pid), pidfd_(pidfd), launch_(launch) {}
  explicit Child(std::shared_ptr<RemoteChild> remote);
  Child(Child&& o) noexcept;
  Child& operator=(Child&& o) noexcept;
  ~Child();

  pid_t pid() const { return pid_; }  // -1 for the helper's (the agent never signals by pid)
  bool running() const;
  void kill(int sig);
  // Waits (on the ring) until the child exits and reaps it; says so if it could not exec.
  awaitable<ExitStatus> wait();

 private:
  void reap_now();
  void release_launch();
  pid_t pid_ = -1;
  int pidfd_ = -1;
  Launch* launch_ = nullptr;  // until the child is known to be done with the agent's memory
  std::shared_ptr<RemoteChild> remote_;
};

// Starts a child and returns at once: the reactor does not wait for its exec. Errors here
// are the agent's own (no descriptor, no memory); a program that cannot run ends with
// ExitStatus::exec_errno.
Result<Child> spawn(const SpawnSpec& spec);

// A child run to completion: what it printed and how it ended.
struct CapturedRun {
  ExitStatus status;
  bool timed_out = false;
  std::string spawn_error;  // it could not be run at all (not started, or its exec failed)
  std::string output;       // stdout (and stderr unless sent elsewhere), at most max_output bytes
  bool ok() const { return !timed_out && spawn_error.empty() && status.ok(); }
  std::string describe(std::string_view what, Millis timeout) const;
};

struct CaptureSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // empty: the agent's own environment
  std::string input;             // written to its stdin, which is then closed
  Millis timeout{10000};         // killed (SIGKILL) past it
  int stderr_fd = -1;            // -1: into the captured output
  std::size_t max_output = 1 << 20;
};

// Runs a child on the reactor: stdin fed, stdout/stderr collected, bounded by a deadline.
awaitable<CapturedRun> run_captured(CaptureSpec spec);

// Opens a pidfd for any process (not only children); -1 with errno on failure.
int open_pidfd(pid_t pid);

}  // namespace sandbox_agent
