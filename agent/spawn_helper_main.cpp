// The spawn helper: a small process the agent starts once, which forks and execs runsc for
// it and reaps what it started. The agent's reactor then spends one sendmsg per runsc call
// and reads one datagram when the call ends, instead of a clone (which copies the agent's
// descriptor table and signal state and, with CLONE_VM, makes later unmaps of the agent's
// memory reach the child's CPU too) and the reaping. Single-threaded, blocking, nothing else.
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "fd_passing.hpp"
#include "kernel_sigaction.hpp"
#include "sandbox_agent/agent.hpp"
#include "spawn_helper_wire.hpp"

extern char** environ;

namespace sandbox_agent::spawn_wire {

namespace {

// What the child does between vfork and exec, decided before the vfork.
struct Plan {
  char* const* argv;
  char* const* envp;
  int sources[kMaxFds];  // the helper's descriptors for the child's 0-3 (-1: none)
  bool new_session;
};

// In the vforked child, in the helper's memory: system calls only, then exec or _exit.
[[noreturn]] __attribute__((noinline)) void exec_child(const Plan& plan, volatile int* exec_errno) {
  KernelSigaction dfl{};
  for (long sig = 1; sig <= 64; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, 8);
  if (plan.new_session) ::setsid();
  // Sources are the helper's own descriptors above 3 (0-3 are its stdio and the socket), so
  // no dup2 overwrites a later one's source; dup2 clears close-on-exec on the copy.
  for (int target = 0; target < kMaxFds; ++target)
    if (plan.sources[target] >= 0 && ::dup2(plan.sources[target], target) < 0) {
      *exec_errno = errno;
      ::_exit(127);
    }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(plan.argv[0], plan.argv, plan.envp);
  *exec_errno = errno;
  ::_exit(127);
}

struct Helper {
  int sock;
  int dev_null;
  std::unordered_map<pid_t, std::uint64_t> seq_of;
  std::unordered_map<std::uint64_t, pid_t> pid_of;

  // Blocking: a full socket means the agent is behind; the helper waits for it rather than
  // drop the news that a child ended.
  bool send(const Reply& r) {
    for (;;) {
      if (::send(sock, &r, sizeof r, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof r)) return true;
      if (errno != EINTR) return false;
    }
  }

  bool reap() {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      auto it = seq_of.find(pid);
      if (it == seq_of.end()) continue;
      Reply r;
      r.seq = it->second;
      r.pid = pid;
      if (WIFEXITED(status)) r.code = WEXITSTATUS(status);
      else if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
      pid_of.erase(it->second);
      seq_of.erase(it);
      if (!send(r)) return false;
    }
    return true;
  }

  // One request, with the descriptors that came with it (closed by their owner).
  bool handle(const char* data, std::size_t size, const std::vector<UniqueFd>& fds) {
    Request q;
    if (size < sizeof q) return true;  // not ours to answer: no seq
    std::memcpy(&q, data, sizeof q);
    if (q.kind == kKill) {
      if (auto it = pid_of.find(q.seq); it != pid_of.end()) ::kill(it->second, q.signal);
      return true;  // reaped already: nothing to signal, and the pid may be another's now
    }
    Reply failed;
    failed.seq = q.seq;
    failed.code = 127;
    failed.exec_errno = EINVAL;
    // Strings: exactly nargs + nenv of them, each NUL-terminated, in the datagram.
    std::vector<char*> argv, envp;
    const char* p = data + sizeof q;
    const char* end = data + size;
    for (std::uint32_t i = 0; i < q.nargs + q.nenv; ++i) {
      const char* nul = static_cast<const char*>(std::memchr(p, '\0', static_cast<std::size_t>(end - p)));
      if (!nul) return send(failed);
      (i < q.nargs ? argv : envp).push_back(const_cast<char*>(p));
      p = nul + 1;
    }
    if (argv.empty() || __builtin_popcount(q.fds) != static_cast<int>(fds.size()) || q.fds >= (1u << kMaxFds))
      return send(failed);
    argv.push_back(nullptr);
    envp.push_back(nullptr);

    Plan plan;
    plan.argv = argv.data();
    plan.envp = (q.flags & kOwnEnv) ? envp.data() : environ;
    plan.new_session = (q.flags & kNewSession) != 0;
    std::size_t next = 0;
    for (int target = 0; target < kMaxFds; ++target)
      plan.sources[target] = (q.fds & (1u << target)) ? fds[next++].get() : (target < 3 ? dev_null : -1);
    volatile int exec_errno = 0;  // written by the child in this frame's memory: read it again
    // vfork: the helper waits while the child sets up and execs (its memory is not copied);
    // the helper has no handlers that could run on the child's side meanwhile.
    pid_t pid = ::vfork();
    if (pid == 0) exec_child(plan, &exec_errno);
    if (pid < 0 || exec_errno != 0) {
      failed.exec_errno = pid < 0 ? errno : exec_errno;
      if (pid > 0) ::waitpid(pid, nullptr, 0);  // it has exited already
      return send(failed);
    }
    seq_of[pid] = q.seq;
    pid_of[q.seq] = pid;
    return true;
  }

  // Every datagram waiting; false once the agent has closed its end.
  bool read_requests(std::vector<char>& buf) {
    for (;;) {
      Received got = receive_with_fds(sock, buf.data(), buf.size(), kMaxFds);
      if (got.bytes < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      if (got.bytes == 0) return false;
      if (got.truncated || got.data_truncated) {  // the agent never sends such: refuse it whole
        Request q;
        if (static_cast<std::size_t>(got.bytes) >= sizeof q) {
          std::memcpy(&q, buf.data(), sizeof q);
          Reply failed;
          failed.seq = q.seq;
          failed.code = 127;
          failed.exec_errno = E2BIG;
          if (q.kind == kSpawn && !send(failed)) return false;
        }
        continue;
      }
      // Its descriptors close when `got` goes, after the child has its copies.
      if (!handle(buf.data(), static_cast<std::size_t>(got.bytes), got.fds)) return false;
    }
  }
};

}  // namespace

int run_spawn_helper(int sock) {
  struct stat st {};
  int type = 0;
  socklen_t len = sizeof type;
  if (::fstat(sock, &st) != 0 || !S_ISSOCK(st.st_mode) ||
      ::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET) {
    std::fprintf(stderr, "%s: fd %d is not the agent's socket (the agent starts this mode itself)\n", kHelperFlag, sock);
    return 2;
  }
  ::fcntl(sock, F_SETFD, FD_CLOEXEC);
  ::prctl(PR_SET_NAME, "spawn-helper", 0, 0, 0);
  // Signals meant for the agent (a terminal's Ctrl-C, systemd's SIGTERM) must not end the
  // helper while the agent still needs it to stop sandboxes; it ends when the agent does.
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) std::signal(sig, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &chld, nullptr);
  int sig_fd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  Helper h{sock, ::open("/dev/null", O_RDWR | O_CLOEXEC), {}, {}};
  if (sig_fd < 0 || h.dev_null < 0) {
    std::fprintf(stderr, "%s: %s\n", kHelperFlag, std::strerror(errno));
    return 1;
  }
  Reply hello;
  hello.seq = 0;
  hello.code = 0;
  hello.pid = ::getpid();
  if (!h.send(hello)) return 1;
  std::vector<char> buf(kMaxRequest + sizeof(Request));
  for (;;) {
    pollfd p[2] = {{sock, POLLIN, 0}, {sig_fd, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (p[1].revents) {
      signalfd_siginfo info[16];
      while (::read(sig_fd, info, sizeof info) > 0) {
      }
    }
    // Reaped on every wake: a SIGCHLD coalesced with another is not missed.
    if (!h.reap()) return 0;
    if (p[0].revents && !h.read_requests(buf)) return 0;  // the agent has gone: its children stay
  }
}

}  // namespace sandbox_agent::spawn_wire

namespace sandbox_agent {

int spawn_helper_main(int argc, char** argv) {
  if (argc != 2 || std::strcmp(argv[1], spawn_wire::kHelperFlag) != 0) return -1;
  return spawn_wire::run_spawn_helper(3);
}

}  // namespace sandbox_agent
