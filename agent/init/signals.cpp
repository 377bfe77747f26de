#include "signals.hpp"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

#include "log.hpp"

namespace sinit {

namespace {
int g_signal_write_fd = -1;

void on_signal(int sig) {
  int saved = errno;
  unsigned char byte = static_cast<unsigned char>(sig);
  // Non-blocking: if the pipe is full, the loop has plenty to read anyway (SIGCHLD reaps all).
  [[maybe_unused]] ssize_t n = ::write(g_signal_write_fd, &byte, 1);
  errno = saved;
}
}  // namespace

bool SignalPipe::install() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    log_msg("pipe2 for signals: %s", errno_str(errno).c_str());
    return false;
  }
  read_end_.reset(fds[0]);
  write_end_.reset(fds[1]);
  g_signal_write_fd = write_end_.get();

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigfillset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  bool ok = sigaction(SIGCHLD, &sa, nullptr) == 0;
  for (int sig : kForwardedSignals) ok = sigaction(sig, &sa, nullptr) == 0 && ok;
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  ok = sigaction(SIGPIPE, &ign, nullptr) == 0 && ok;
  if (!ok) log_msg("sigaction: %s", errno_str(errno).c_str());
  return ok;
}

std::vector<int> SignalPipe::drain() {
  std::vector<int> out;
  unsigned char buf[64];
  for (;;) {
    ssize_t n = ::read(read_end_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) out.push_back(buf[i]);
  }
  return out;
}

sigset_t block_all_signals() {
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  return old;
}

void restore_signal_mask(const sigset_t& mask) { sigprocmask(SIG_SETMASK, &mask, nullptr); }

void reset_signals_in_child() {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGCHLD, &dfl, nullptr);
  sigaction(SIGPIPE, &dfl, nullptr);
  for (int sig : kForwardedSignals) sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace sinit
