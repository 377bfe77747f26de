#include "process.hpp"

#include <asio/posix/stream_descriptor.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel_sigaction.hpp"
#include "paths.hpp"
#include "spawn_helper.hpp"
#include "unique_fd.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3  // <linux/wait.h> clashes with <sys/wait.h>
#endif

namespace sandbox_agent {

std::string ExitStatus::describe() const {
  if (exec_errno) return std::string("could not be executed: ") + std::strerror(exec_errno);
  if (signal) return std::string("killed by signal ") + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
  return "exit code " + std::to_string(code);
}

std::string exec_error_text(const std::string& program, int exec_errno) {
  return "cannot run " + program + ": " + std::strerror(exec_errno);
}

int open_pidfd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

namespace {

// The child's system calls. It runs in the agent's memory and with the agent's thread-local
// storage (CLONE_VM, and the agent does not wait for it), so it must not go through libc's
// wrappers: one that failed would set errno, the agent's errno, under the agent's feet.
// Each returns the result or -errno, as the kernel does.
#if defined(__x86_64__)
constexpr bool kChildRunsAlongside = true;
__attribute__((always_inline, no_sanitize("address", "undefined"))) inline long sys(long n, long a = 0, long b = 0,
                                                                                       long c = 0, long d = 0) {
  long ret;
  register long r10 asm("r10") = d;
  asm volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
  return ret;
}
#elif defined(__aarch64__)
constexpr bool kChildRunsAlongside = true;
__attribute__((always_inline, no_sanitize("address", "undefined"))) inline long sys(long n, long a = 0, long b = 0,
                                                                                       long c = 0, long d = 0) {
  register long x8 asm("x8") = n;
  register long x0 asm("x0") = a;
  register long x1 asm("x1") = b;
  register long x2 asm("x2") = c;
  register long x3 asm("x3") = d;
  asm volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory", "cc");
  return x0;
}
#else
// Elsewhere the agent waits for the child's exec (CLONE_VFORK), so libc's errno is safe.
constexpr bool kChildRunsAlongside = false;
inline long sys(long n, long a = 0, long b = 0, long c = 0, long d = 0) {
  long r = ::syscall(n, a, b, c, d);
  return r < 0 ? -errno : r;
}
#endif

int dev_null() {
  // One descriptor for every child's unused stdio, opened once (close-on-exec in the agent);
  // opened again later if the first try failed (a full descriptor table, say).
  static int fd = -1;
  if (fd < 0) fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  return fd;
}

constexpr std::size_t kChildStack = 16 * 1024;  // raw system calls only: a few hundred bytes used

}  // namespace

// What a child reads of the agent's memory until it has exec'd: its argv, environment and
// descriptor plan, its stack, and where it says why its exec failed. The agent goes on
// meanwhile, so all of it is the child's own copy, and is reused only once the kernel has
// cleared `running` (CLONE_CHILD_CLEARTID: at the child's exec or exit, the moment a vfork
// would have returned).
struct Launch {
  std::atomic<int> running{0};  // the kernel writes it as the pid_t it clears
  std::atomic<int> exec_errno{0};
  bool owned = false;  // by a Child (or being set up); the pool may reuse it otherwise
  std::string strings;
  std::vector<std::size_t> starts;  // of each string in `strings`
  std::vector<char*> argv, envp;
  char* const* args = nullptr;  // argv.data(): the child touches no container code
  char* const* env = nullptr;
  int fds[4] = {-1, -1, -1, -1};  // sources for 0..3; -1: fd 3 unused
  int first_free = 3;             // everything from here up is closed
  bool new_session = true;
  alignas(16) char stack[kChildStack];

  void prepare(const SpawnSpec& spec) {
    std::size_t size = 0;
    for (const auto& a : spec.argv) size += a.size() + 1;
    if (spec.env)
      for (const auto& e : *spec.env) size += e.size() + 1;
    strings.clear();
    strings.reserve(size);  // pointers into it are taken below, after every append
    starts.clear();
    auto add = [&](const std::string& s) {
      starts.push_back(strings.size());
      strings.append(s.c_str(), s.size() + 1);
    };
    for (const auto& a : spec.argv) add(a);
    if (spec.env)
      for (const auto& e : *spec.env) add(e);
    argv.clear();
    envp.clear();
    std::size_t i = 0;
    for (; i < spec.argv.size(); ++i) argv.push_back(strings.data() + starts[i]);
    argv.push_back(nullptr);
    if (spec.env) {
      for (; i < starts.size(); ++i) envp.push_back(strings.data() + starts[i]);
      envp.push_back(nullptr);
    }
    args = argv.data();
    // The agent's environment does not change once it runs (only start-up unsets a few names).
    env = spec.env ? envp.data() : environ;
    fds[0] = spec.stdin_fd >= 0 ? spec.stdin_fd : dev_null();
    fds[1] = spec.stdout_fd >= 0 ? spec.stdout_fd : dev_null();
    fds[2] = spec.stderr_fd >= 0 ? spec.stderr_fd : dev_null();
    fds[3] = spec.fd3;
    first_free = spec.fd3 >= 0 ? 4 : 3;
    new_session = spec.new_session;
    exec_errno.store(0, std::memory_order_relaxed);
  }
};

static_assert(sizeof(std::atomic<int>) == sizeof(pid_t) && std::atomic<int>::is_always_lock_free);

namespace {

// Launches are kept for reuse (their stacks cost no mmap/munmap, whose munmap would flush
// TLBs after a CLONE_VM child ran on it); there are as many as children were ever before
// their exec at once, plus those whose Child has not yet learnt how its exec went.
class LaunchPool {
 public:
  Launch* take() {
    std::lock_guard lock(mu_);
    for (auto& l : all_)
      if (!l->owned && l->running.load(std::memory_order_acquire) == 0) {
        l->owned = true;
        return l.get();
      }
    all_.push_back(std::make_unique<Launch>());
    all_.back()->owned = true;
    return all_.back().get();
  }
  void give_back(Launch* l) {
    std::lock_guard lock(mu_);
    l->owned = false;
  }

 private:
  std::mutex mu_;  // spawns come from the reactor's thread; an embedder may spawn from others
  std::vector<std::unique_ptr<Launch>> all_;
};

LaunchPool& launches() {
  static auto* pool = new LaunchPool;  // never destroyed: a child may still be on a stack at exit
  return *pool;
}

[[noreturn]] __attribute__((always_inline, no_sanitize("address", "undefined"))) inline void child_fail(Launch* l,
                                                                                                      long err) {
  l->exec_errno.store(static_cast<int>(-err), std::memory_order_release);
  for (;;) sys(SYS_exit_group, 127);
}

// Runs in the child, on its Launch's stack, in the agent's memory while the agent goes on:
// raw system calls only, nothing that allocates, takes a lock or touches errno. Not
// instrumented: the sanitizers do not know this stack.
__attribute__((no_sanitize("address", "undefined"))) int child_main(void* arg) {
  auto* l = static_cast<Launch*>(arg);
  // A handler left in place would run in the agent's memory; exec would reset only the
  // handled signals, so the ignored ones (SIGPIPE) are reset here too. Every signal is
  // blocked until then (the agent blocked them around clone).
  KernelSigaction dfl{}, old{};
  for (long sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    if (sys(SYS_rt_sigaction, sig, 0, reinterpret_cast<long>(&old), 8) != 0) continue;
    if (old.handler != nullptr) sys(SYS_rt_sigaction, sig, reinterpret_cast<long>(&dfl), 0, 8);  // not SIG_DFL
  }
  if (l->new_session) sys(SYS_setsid);
  // Sources below 4 would be overwritten by an earlier dup: move them out of the way.
  int fds[4];
  for (int target = 0; target < 4; ++target) {
    fds[target] = l->fds[target];
    if (fds[target] >= 0 && fds[target] < 4) {
      long moved = sys(SYS_fcntl, fds[target], F_DUPFD, 4);
      if (moved < 0) child_fail(l, moved);
      fds[target] = static_cast<int>(moved);
    }
  }
  for (int target = 0; target < 4; ++target)
    if (fds[target] >= 0)
      if (long r = sys(SYS_dup3, fds[target], target, 0); r < 0) child_fail(l, r);
  // Asio's sockets and our files are not all close-on-exec: close everything else (one by
  // one where the kernel has no close_range, or a seccomp profile refuses it).
  if (sys(SYS_close_range, l->first_free, ~0U, 0) != 0) {
    struct rlimit rl {};  // the limit now: the agent raises it at start, embedders may too
    long limit = sys(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, reinterpret_cast<long>(&rl)) == 0 && rl.rlim_cur < (1u << 20)
                     ? static_cast<long>(rl.rlim_cur)
                     : 1 << 20;
    for (long fd = l->first_free; fd < limit; ++fd) sys(SYS_close, fd);
  }
  std::uint64_t none = 0;
  sys(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&none), 0, 8);
  long r = sys(SYS_execve, reinterpret_cast<long>(l->args[0]), reinterpret_cast<long>(l->args),
               reinterpret_cast<long>(l->env));
  child_fail(l, r);
}

}  // namespace

Child::Child(std::shared_ptr<RemoteChild> remote) : remote_(std::move(remote)) {}

Child::Child(Child&& o) noexcept
    : pid_(o.pid_), pidfd_(o.pidfd_), launch_(o.launch_), remote_(std::move(o.remote_)) {
  o.pid_ = -1;
  o.pidfd_ = -1;
  o.launch_ = nullptr;
}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    reap_now();
    pid_ = o.pid_;
    pidfd_ = o.pidfd_;
    launch_ = o.launch_;
    remote_ = std::move(o.remote_);
    o.pid_ = -1;
    o.pidfd_ = -1;
    o.launch_ = nullptr;
  }
  return *this;
}

Child::~Child() { reap_now(); }

bool Child::running() const { return remote_ ? !remote_->ended : pidfd_ >= 0; }

void Child::kill(int sig) {
  if (remote_) return kill_remote(*remote_, sig);
  if (pidfd_ >= 0) ::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0);
}

void Child::release_launch() {
  if (launch_) launches().give_back(launch_);
  launch_ = nullptr;
}

void Child::reap_now() {
  remote_.reset();  // killed by the helper if it had not ended, and reaped there
  if (pidfd_ < 0) return;
  kill(SIGKILL);
  siginfo_t info{};
  while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info, WEXITED) < 0 && errno == EINTR) {
  }
  ::close(pidfd_);
  pidfd_ = -1;
  release_launch();  // reaped: it is off the agent's memory
}

awaitable<ExitStatus> Child::wait() {
  if (remote_) co_return co_await wait_remote(*remote_);
  ExitStatus st;
  if (pidfd_ < 0) co_return st;
  // Exec'd already: nothing more to learn from its launch, which another child may use.
  if (launch_ && launch_->running.load(std::memory_order_acquire) == 0 &&
      launch_->exec_errno.load(std::memory_order_acquire) == 0)
    release_launch();
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
  if (launch_) {  // it has exited: its exec either failed (and it said why) or happened
    st.exec_errno = launch_->exec_errno.load(std::memory_order_acquire);
    release_launch();
  }
  co_return st;
}

// clone(CLONE_VM | CLONE_PIDFD | CLONE_CHILD_CLEARTID): what posix_spawn does, without
// waiting for the child's exec (posix_spawn's CLONE_VFORK: the reactor sat in clone for as
// long as the child took to exec, tens of milliseconds on a loaded machine), without its
// per-spawn stack mapping, its RLIMIT_NOFILE check per file action and the pidfd_open after.
Result<Child> spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) return make_error(ErrorCode::internal, "spawn: empty argv");
  if (dev_null() < 0) return make_error(ErrorCode::internal, "cannot open /dev/null: " + paths::errno_text());
  Launch* l = launches().take();
  l->prepare(spec);
  l->running.store(1, std::memory_order_relaxed);
  // Blocked until the child has reset its handlers: none of ours may run on its stack.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  int flags = CLONE_VM | CLONE_PIDFD | CLONE_CHILD_CLEARTID | SIGCHLD | (kChildRunsAlongside ? 0 : CLONE_VFORK);
  pid_t pid = ::clone(child_main, l->stack + sizeof l->stack, flags, l, &pidfd, nullptr,
                      reinterpret_cast<pid_t*>(&l->running));
  int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    l->running.store(0, std::memory_order_relaxed);
    launches().give_back(l);
    return make_error(ErrorCode::internal, "cannot run " + spec.argv[0] + ": clone: " + std::strerror(clone_errno));
  }
  return Child(pid, pidfd, l);
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
  if (run.status.exec_errno) run.spawn_error = exec_error_text(spec.argv[0], run.status.exec_errno);
  co_return run;
}

}  // namespace sandbox_agent
