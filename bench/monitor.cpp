// The per-sandbox-process model in its smallest form, for bench/monitor_overhead.py: what a
// containerd shim or conmon is reduced to. One process per sandbox that spawns the "sandbox"
// (any command), holds a pidfd on it, sleeps in poll() until it ends, and exits with its
// status. It writes "ready\n" to stdout once it is waiting. SIGTERM/SIGINT are forwarded.
//   monitor COMMAND [ARG...]
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <poll.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace {
volatile sig_atomic_t g_child = 0;

void forward(int sig) {
  if (g_child > 0) ::kill(g_child, sig);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: monitor COMMAND [ARG...]\n");
    return 2;
  }
  pid_t child = 0;
  if (int err = ::posix_spawnp(&child, argv[1], nullptr, nullptr, argv + 1, environ); err != 0) {
    std::fprintf(stderr, "monitor: cannot run %s: %s\n", argv[1], std::strerror(err));
    return 127;
  }
  g_child = child;
  struct sigaction sa {};
  sa.sa_handler = forward;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));
  if (pidfd < 0) {
    std::perror("monitor: pidfd_open");
    return 1;
  }
  static const char ready[] = "ready\n";
  [[maybe_unused]] auto n = ::write(STDOUT_FILENO, ready, sizeof ready - 1);
  pollfd p{pidfd, POLLIN, 0};
  while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
