#include "process.hpp"

#include <asio/posix/stream_descriptor.hpp>
#include <asio/write.hpp>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "paths.hpp"
#include "unique_fd.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3  // <linux/wait.h> clashes with <sys/wait.h>
#endif

namespace sandbox_agent {

std::string ExitStatus::describe() const {
  if (signal) return std::string("killed by signal ") + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
  return "exit code " + std::to_string(code);
}

int open_pidfd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

Child::Child(Child&& o) noexcept : pid_(o.pid_), pidfd_(o.pidfd_) {
  o.pid_ = -1;
  o.pidfd_ = -1;
}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    reap_now();
    pid_ = o.pid_;
    pidfd_ = o.pidfd_;
    o.pid_ = -1;
    o.pidfd_ = -1;
  }
  return *this;
}

Child::~Child() { reap_now(); }

void Child::kill(int sig) {
  if (pidfd_ >= 0) ::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0);
}

void Child::reap_now() {
  if (pidfd_ < 0) return;
  kill(SIGKILL);
  siginfo_t info{};
  while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info, WEXITED) < 0 && errno == EINTR) {
  }
  ::close(pidfd_);
  pidfd_ = -1;
}

awaitable<ExitStatus> Child::wait() {
  ExitStatus st;
  if (pidfd_ < 0) co_return st;
  // The descriptor object borrows the pidfd only while waiting; release() keeps it open,
  // also when this coroutine is destroyed mid-wait (the destructor then reaps).
  asio::posix::stream_descriptor d(co_await asio::this_coro::executor, pidfd_);
  struct Release {
    asio::posix::stream_descriptor& d;
    ~Release() { if (d.is_open()) d.release(); }
  } release{d};
  for (;;) {
    siginfo_t info{};
    info.si_pid = 0;
    int r = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info, WEXITED | WNOHANG);
    if (r == 0 && info.si_pid != 0) {
      if (info.si_code == CLD_EXITED) st.code = info.si_status;
      else st.signal = info.si_status;
      break;
    }
    if (r < 0 && errno != EINTR) break;  // ECHILD: reaped elsewhere; report unknown
    auto [ec] = co_await d.async_wait(asio::posix::descriptor_base::wait_read, use_nothrow);
    if (ec && ec != asio::error::interrupted) break;
  }
  d.release();
  ::close(pidfd_);
  pidfd_ = -1;
  co_return st;
}

Result<Child> spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) return make_error(ErrorCode::internal, "spawn: empty argv");
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawnattr_init(&attr);
  if (spec.stdin_fd >= 0) ::posix_spawn_file_actions_adddup2(&fa, spec.stdin_fd, 0);
  else ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (spec.stdout_fd >= 0) ::posix_spawn_file_actions_adddup2(&fa, spec.stdout_fd, 1);
  else ::posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  if (spec.stderr_fd >= 0) ::posix_spawn_file_actions_adddup2(&fa, spec.stderr_fd, 2);
  else ::posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  if (spec.fd3 >= 0) ::posix_spawn_file_actions_adddup2(&fa, spec.fd3, 3);
  // Asio's sockets and our files are not all close-on-exec: close everything else.
  ::posix_spawn_file_actions_addclosefrom_np(&fa, spec.fd3 >= 0 ? 4 : 3);

  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (spec.new_session) flags |= POSIX_SPAWN_SETSID;
  ::posix_spawnattr_setflags(&attr, flags);

  pid_t pid = -1;
  std::vector<char*> envp;
  if (spec.env) {
    for (const auto& e : *spec.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  int rc = ::posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), spec.env ? envp.data() : environ);
  ::posix_spawn_file_actions_destroy(&fa);
  ::posix_spawnattr_destroy(&attr);
  if (rc != 0)
    return make_error(ErrorCode::internal, "cannot run " + spec.argv[0] + ": " + std::strerror(rc));
  // We are the only one who reaps our children, so the pid cannot be reused before this.
  int pidfd = open_pidfd(pid);
  if (pidfd < 0) {
    int e = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return make_error(ErrorCode::internal, std::string("pidfd_open: ") + std::strerror(e));
  }
  ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  return Child(pid, pidfd);
}

std::string CapturedRun::describe(std::string_view what, Millis timeout) const {
  std::string w(what);
  if (!spawn_error.empty()) return spawn_error;
  if (timed_out) return w + " did not finish within " + std::to_string(timeout.count()) + " ms";
  return w + ": " + status.describe();
}

namespace {

// Reads a pipe to its end, keeping at most `max` bytes.
awaitable<void> drain_pipe(asio::posix::stream_descriptor& in, std::string& out, std::size_t max) {
  char buf[16384];
  for (;;) {
    auto [ec, n] = co_await in.async_read_some(asio::buffer(buf), use_nothrow);
    if (ec) co_return;  // EOF once the child (and anything holding the pipe) is gone
    if (out.size() < max) out.append(buf, std::min(n, max - out.size()));
  }
}

}  // namespace

awaitable<CapturedRun> run_captured(CaptureSpec spec) {
  CapturedRun run;
  auto ex = co_await asio::this_coro::executor;
  int out_pipe[2], in_pipe[2] = {-1, -1};
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    run.spawn_error = "pipe: " + paths::errno_text();
    co_return run;
  }
  asio::posix::stream_descriptor out(ex, out_pipe[0]);
  UniqueFd out_w{out_pipe[1]};
  if (!spec.input.empty() && ::pipe2(in_pipe, O_CLOEXEC) != 0) {
    run.spawn_error = "pipe: " + paths::errno_text();
    co_return run;
  }
  UniqueFd in_r{in_pipe[0]};
  std::optional<asio::posix::stream_descriptor> in;
  if (in_pipe[1] >= 0) in.emplace(ex, in_pipe[1]);
  SpawnSpec ss{spec.argv, out_pipe[1], spec.stderr_fd >= 0 ? spec.stderr_fd : out_pipe[1]};
  ss.stdin_fd = in_pipe[0];
  if (!spec.env.empty()) ss.env = &spec.env;
  auto child = spawn(ss);
  out_w.reset();
  in_r.reset();
  if (!child) {
    run.spawn_error = child.error().message;
    co_return run;
  }
  auto proc = std::make_shared<Child>(std::move(child.value()));
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer deadline(ex, spec.timeout);
  deadline.async_wait([proc, timed_out](std::error_code ec) {
    if (!ec) {
      *timed_out = true;
      proc->kill(SIGKILL);
    }
  });
  if (in) {
    // A child that does not read its input gets its pipe closed under it, not the agent a
    // SIGPIPE (the agent ignores SIGPIPE; the write just fails).
    co_await asio::async_write(*in, asio::buffer(spec.input), use_nothrow);
    in->close();
  }
  co_await drain_pipe(out, run.output, spec.max_output);
  run.status = co_await proc->wait();
  deadline.cancel();
  run.timed_out = *timed_out;
  co_return run;
}

}  // namespace sandbox_agent
