// PID-1 duties: runs the main child and dockerd, reaps every zombie, forwards signals, and
// shuts down in order (main child gone or SIGTERM/SIGINT -> stop dockerd -> markers -> exit).
#pragma once

#include <memory>
#include <sys/types.h>

#include "args.hpp"
#include "dockerd.hpp"
#include "event_loop.hpp"
#include "relay.hpp"
#include "signals.hpp"

namespace sinit {

class Supervisor : public EventHandler {
 public:
  explicit Supervisor(const Options& opts) : opts_(opts) {}
  int run();  // returns init's exit status
  void on_events(uint32_t events) override;  // the signal pipe is readable

 private:
  void start_dockerd();
  void start_main_child();
  void on_signal(int sig);
  void reap_children();
  void on_main_exited(int code);
  void on_dockerd_exited(int code);
  void on_containerd_exited();
  void stop_containerd();
  void begin_shutdown(int sig);
  void stop_dockerd();
  bool shutting_down() const { return shutdown_requested_ || main_done_; }
  void maybe_finish();
  void finish(int code);

  const Options& opts_;
  EventLoop loop_;  // declared first: everything below registers with it
  SignalPipe signals_;
  std::unique_ptr<Dockerd> dockerd_;
  std::unique_ptr<Relay> relay_;

  pid_t main_pid_ = -1;
  bool main_done_ = false;  // the main child exited, or could not be created
  int main_code_ = 0;
  bool shutdown_requested_ = false;  // SIGTERM or SIGINT received
  bool stopping_dockerd_ = false;
  bool gave_up_on_dockerd_ = false;  // not reaped even after SIGKILL
  EventLoop::TimerId kill_timer_ = 0, give_up_timer_ = 0;
  EventLoop::TimerId containerd_kill_timer_ = 0;  // SIGKILL, then giving up, once stopping
  // containerd died before dockerd came up: dockerd is being killed to be started again
  // with a containerd of its own.
  bool restarting_dockerd_ = false;
  bool finished_ = false;
  int exit_code_ = 0;
};

}  // namespace sinit
