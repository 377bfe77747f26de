#include "process.hpp"

#include <asio/posix/stream_descriptor.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
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

namespace {

// What the child needs, prepared by the parent: the child may not allocate.
struct ChildPlan {
  char* const* argv;
  char* const* envp;
  int fds[4];      // sources for 0..3; -1: fd 3 unused
  int first_free;  // everything from here up is closed
  bool new_session;
  int exec_errno;  // written by the child when execve fails (it shares our memory)
};

int dev_null() {
  // One descriptor for every child's unused stdio, opened once (close-on-exec in the agent);
  // opened again later if the first try failed (a full descriptor table, say).
  static int fd = -1;
  if (fd < 0) fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  return fd;
}

// Runs in the child, on its own stack, in the agent's memory while the agent waits
// (CLONE_VM | CLONE_VFORK): system calls only, nothing that allocates or takes a lock.
// Not instrumented: the sanitizers do not know this stack.
__attribute__((no_sanitize("address", "undefined"))) int child_main(void* arg) {
  auto* plan = static_cast<ChildPlan*>(arg);
  // A handler left in place would run in the agent's memory; exec would reset only the
  // handled signals, so the ignored ones (SIGPIPE) are reset here too.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction old {};
    if (sig == SIGKILL || sig == SIGSTOP || ::sigaction(sig, nullptr, &old) != 0) continue;
    if (old.sa_handler != SIG_DFL) ::sigaction(sig, &dfl, nullptr);
  }
  if (plan->new_session) ::setsid();
  // Sources below 4 would be overwritten by an earlier dup2: move them out of the way.
  for (int& fd : plan->fds)
    if (fd >= 0 && fd < 4 && (fd = ::fcntl(fd, F_DUPFD, 4)) < 0) {
      plan->exec_errno = errno;
      ::_exit(127);
    }
  for (int target = 0; target < 4; ++target)
    if (plan->fds[target] >= 0 && ::dup2(plan->fds[target], target) < 0) {
      plan->exec_errno = errno;
      ::_exit(127);
    }
  // Asio's sockets and our files are not all close-on-exec: close everything else (one by
  // one where the kernel has no close_range, or a seccomp profile refuses it).
  if (::syscall(SYS_close_range, plan->first_free, ~0U, 0) != 0) {
    struct rlimit rl {};  // the limit now: the agent raises it at start, embedders may too
    int limit = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1u << 20) ? static_cast<int>(rl.rlim_cur) : 1 << 20;
    for (int fd = plan->first_free; fd < limit; ++fd) ::close(fd);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(plan->argv[0], plan->argv, plan->envp);
  plan->exec_errno = errno;
  ::_exit(127);
}

// The child's stack. Spawns come from the reactor's one thread and the agent waits for
// each child to exec (CLONE_VFORK), so one stack serves them all; it is static so that a
// spawn costs no mmap/munmap (the munmap of a stack a CLONE_VM child ran on flushes TLBs).
alignas(64) char child_stack[64 * 1024];
std::atomic_flag child_stack_busy;  // clear (C++20)

}  // namespace

// clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD): what posix_spawn does, without its
// per-spawn stack mapping, its RLIMIT_NOFILE check per file action and the pidfd_open after.
Result<Child> spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) return make_error(ErrorCode::internal, "spawn: empty argv");
  if (dev_null() < 0) return make_error(ErrorCode::internal, "cannot open /dev/null: " + paths::errno_text());
  std::vector<char*> argv;
  argv.reserve(spec.argv.size() + 1);
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (spec.env) {
    envp.reserve(spec.env->size() + 1);
    for (const auto& e : *spec.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  ChildPlan plan{argv.data(), spec.env ? envp.data() : environ,
                 {spec.stdin_fd >= 0 ? spec.stdin_fd : dev_null(), spec.stdout_fd >= 0 ? spec.stdout_fd : dev_null(),
                  spec.stderr_fd >= 0 ? spec.stderr_fd : dev_null(), spec.fd3},
                 spec.fd3 >= 0 ? 4 : 3, spec.new_session, 0};

  std::unique_ptr<char[]> own_stack;  // only if a second thread ever spawns at the same time
  char* stack = child_stack;
  std::size_t stack_size = sizeof child_stack;
  if (child_stack_busy.test_and_set()) {
    own_stack = std::make_unique_for_overwrite<char[]>(stack_size);
    stack = own_stack.get();
  }
  // Blocked until the child has reset its handlers: none of ours may run on its stack.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid = ::clone(child_main, stack + stack_size, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &plan, &pidfd);
  int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!own_stack) child_stack_busy.clear();
  if (pid < 0) return make_error(ErrorCode::internal, "cannot run " + spec.argv[0] + ": clone: " + std::strerror(clone_errno));
  Child child(pid, pidfd);
  if (plan.exec_errno != 0) {
    child = Child();  // reaps it (it has exited with 127)
    return make_error(ErrorCode::internal, "cannot run " + spec.argv[0] + ": " + std::strerror(plan.exec_errno));
  }
  return child;
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
