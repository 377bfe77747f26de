#include "spawn.hpp"

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fd.hpp"
#include "log.hpp"
#include "signals.hpp"

namespace sinit {

namespace {

// What the child writes on the report pipe (8 bytes: a single atomic pipe write).
enum Step : int32_t { kReady = 0, kStdio = 1, kSetsid = 2, kUnshare = 3, kWaitMaps = 4, kExec = 5 };
struct Report {
  int32_t step;
  int32_t err;
};

const char* step_name(int32_t step) {
  switch (step) {
    case kStdio: return "dup2 of stdio";
    case kSetsid: return "setsid";
    case kUnshare: return "unshare(CLONE_NEWUSER|CLONE_NEWNS)";
    case kWaitMaps: return "waiting for the id maps";
    case kExec: return "exec";
  }
  return "unknown step";
}

// Runs in the forked child only; never returns.
[[noreturn]] void child_main(const SpawnRequest& req, char* const* argv, int report_fd,
                             int go_fd) {
  reset_signals_in_child();
  restore_fd_limit_in_child();
  auto fail = [&](int32_t step, int exit_status) {
    Report r{step, errno};
    [[maybe_unused]] ssize_t n = ::write(report_fd, &r, sizeof r);
    _exit(exit_status);
  };
  const int wanted[3] = {req.stdin_fd, req.stdout_fd, req.stderr_fd};
  for (int target = 0; target < 3; ++target) {
    // dup2 clears close-on-exec on the target, which is what we want for stdio.
    if (wanted[target] >= 0 && ::dup2(wanted[target], target) < 0) fail(kStdio, kExitSetupFailed);
  }
  if (req.new_session && ::setsid() < 0) fail(kSetsid, kExitSetupFailed);
  if (req.new_userns) {
    // Mount propagation is left as it is (what `unshare --propagation unchanged` does).
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) fail(kUnshare, kExitSetupFailed);
    Report ready{kReady, 0};
    if (::write(report_fd, &ready, sizeof ready) != sizeof ready) _exit(kExitSetupFailed);
    char go = 0;
    ssize_t n;
    do n = ::read(go_fd, &go, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) {  // init closed the pipe: the maps could not be written
      errno = n < 0 ? errno : EPROTO;
      fail(kWaitMaps, kExitSetupFailed);
    }
  }
  ::execvp(argv[0], argv);
  fail(kExec, exec_failure_status(errno));
  _exit(kExitSetupFailed);  // unreachable; keeps [[noreturn]] obvious
}

// Reads one report, waiting at most timeout_ms. Returns 1 for a report, 0 for EOF (the child
// exec'd or died), -1 for a timeout or error.
int read_report(int fd, int timeout_ms, Report* out) {
  long long deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    struct pollfd p {fd, POLLIN, 0};
    long long left = deadline - monotonic_ms();
    if (left < 0) left = 0;
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;  // signals wait in the signal pipe meanwhile
    if (r <= 0) return -1;
    ssize_t n = ::read(fd, out, sizeof *out);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return 0;
    return n == sizeof *out ? 1 : -1;
  }
}

}  // namespace

int exec_failure_status(int err) { return (err == EACCES || err == EPERM) ? 126 : 127; }

int exit_code_from_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

namespace {

constexpr int kReportTimeoutMs = 10000;

// After the last report before exec: EOF means it exec'd, a report says which step failed.
SpawnResult read_exec_report(pid_t pid, int report_fd) {
  SpawnResult result;
  result.pid = pid;
  Report r{};
  int got = read_report(report_fd, kReportTimeoutMs, &r);
  if (got == 0) {
    result.started = true;
  } else if (got == 1) {
    result.err = r.err;
    result.error = step_name(r.step);
  } else {
    // Exec taking this long is odd but not fatal: report it started and let SIGCHLD tell.
    log_msg("pid %d: no exec report after %d ms; assuming it started", pid, kReportTimeoutMs);
    result.started = true;
  }
  return result;
}

std::vector<char*> argv_of(const SpawnRequest& req) {
  std::vector<char*> argv;
  for (const std::string& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  return argv;
}

}  // namespace

PendingSpawn spawn_begin(const SpawnRequest& req) {
  PendingSpawn p;
  if (req.argv.empty() || req.new_userns) {
    p.failed.err = EINVAL;
    p.failed.error = req.argv.empty() ? "empty command" : "spawn_begin cannot set up a user namespace";
    return p;
  }
  std::vector<char*> argv = argv_of(req);  // everything the child needs is prepared before fork
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    p.failed.err = errno;
    p.failed.error = "pipe2";
    return p;
  }
  Fd report_r(report[0]), report_w(report[1]);
  sigset_t old_mask = block_all_signals();
  pid_t pid = ::fork();
  if (pid == 0) child_main(req, argv.data(), report_w.get(), -1);
  int fork_errno = errno;
  restore_signal_mask(old_mask);
  if (pid < 0) {
    p.failed.err = fork_errno;
    p.failed.error = "fork";
    return p;
  }
  p.pid = pid;
  p.report = std::move(report_r);  // the write end closes here: EOF means the child exec'd or exited
  return p;
}

SpawnResult spawn_finish(PendingSpawn& pending) {
  if (pending.pid < 0) return pending.failed;
  SpawnResult r = read_exec_report(pending.pid, pending.report.get());
  pending.report.reset();
  return r;
}

SpawnResult spawn(const SpawnRequest& req) {
  if (!req.new_userns) {
    PendingSpawn p = spawn_begin(req);
    return spawn_finish(p);
  }
  SpawnResult result;
  std::vector<char*> argv = argv_of(req);  // everything the child needs is prepared before fork

  int report[2], go[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    result.err = errno;
    result.error = "pipe2";
    return result;
  }
  Fd report_r(report[0]), report_w(report[1]);
  if (::pipe2(go, O_CLOEXEC) != 0) {
    result.err = errno;
    result.error = "pipe2";
    return result;
  }
  Fd go_r(go[0]), go_w(go[1]);

  sigset_t old_mask = block_all_signals();
  pid_t pid = ::fork();
  if (pid == 0) child_main(req, argv.data(), report_w.get(), go_r.get());
  int fork_errno = errno;
  restore_signal_mask(old_mask);
  if (pid < 0) {
    result.err = fork_errno;
    result.error = "fork";
    return result;
  }
  result.pid = pid;
  report_w.reset();  // so EOF on report_r means the child exec'd or exited
  go_r.reset();

  Report r{};
  int got = read_report(report_r.get(), kReportTimeoutMs, &r);
  if (got != 1 || r.step != kReady) {
    result.err = got == 1 ? r.err : 0;
    result.error = got == 1 ? step_name(r.step) : "child did not report (setup)";
    if (got < 0) ::kill(pid, SIGKILL);
    return result;
  }
  if (!req.map_ids || !req.map_ids(pid)) {
    result.error = "writing the user namespace id maps";
    return result;  // go_w closes: the child exits kExitSetupFailed
  }
  char go_byte = 'G';
  if (!write_all(go_w.get(), &go_byte, 1)) {
    result.err = errno;
    result.error = "signalling the child";
    return result;
  }
  return read_exec_report(pid, report_r.get());
}

}  // namespace sinit
