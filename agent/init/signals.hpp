// Signals become bytes in a pipe (the self-pipe trick), so the event loop handles them as
// ordinary fd events and no logic ever runs inside a signal handler.
#pragma once

#include <csignal>
#include <vector>

#include "fd.hpp"

namespace sinit {

// The signals init forwards to its main child (SIGTERM and SIGINT also start shutdown).
inline constexpr int kForwardedSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

class SignalPipe {
 public:
  // Installs handlers for SIGCHLD and kForwardedSignals, and ignores SIGPIPE (a relay peer
  // going away must not kill init). Returns false if the pipe or a handler cannot be set up.
  bool install();
  int fd() const { return read_end_.get(); }
  // The signals that arrived since the last call, in order.
  std::vector<int> drain();

 private:
  Fd read_end_, write_end_;
};

// Blocks every signal (before fork, so the child cannot run init's handlers between fork and
// exec) and returns the previous mask.
sigset_t block_all_signals();
void restore_signal_mask(const sigset_t& mask);

// In a forked child, before exec: default dispositions for everything init changed (ignored
// signals would otherwise stay ignored across exec) and an empty signal mask.
void reset_signals_in_child();

}  // namespace sinit
