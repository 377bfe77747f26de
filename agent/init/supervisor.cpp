#include "supervisor.hpp"

#include <cerrno>
#include <cstring>
#include <string>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.hpp"
#include "markers.hpp"
#include "spawn.hpp"

namespace sinit {

namespace {
constexpr auto kDockerdStopTimeout = std::chrono::seconds(5);
constexpr auto kReapAfterKillTimeout = std::chrono::seconds(2);

std::string sig_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "killed by " + sig_name(WTERMSIG(status));
  return "exit code " + std::to_string(exit_code_from_wait_status(status));
}
}  // namespace

int Supervisor::run() {
  log_msg("%s starting as pid %d", kVersionLine, getpid());
  // Outside a sandbox init is not PID 1: become the subreaper so orphans still come to us.
  if (getpid() != 1 && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
    log_msg("prctl(PR_SET_CHILD_SUBREAPER): %s", errno_str(errno).c_str());
  if (!loop_.init() || !signals_.install() || !loop_.add(signals_.fd(), EPOLLIN, this)) {
    log_console("cannot set up the event loop or signal handling; exiting");
    write_exit_marker(opts_.status_dir, kInitExitMarker, 1);
    return 1;
  }
  remove_stale_markers(opts_.status_dir);

  if (opts_.dockerd) start_dockerd();  // first: it takes the longest to become ready
  if (!opts_.command.empty()) start_main_child();
  maybe_finish();
  if (!finished_) loop_.run();
  return exit_code_;
}

void Supervisor::start_dockerd() {
  dockerd_ = std::make_unique<Dockerd>(loop_, opts_);
  if (!opts_.relay_socket.empty()) {
    relay_ = std::make_unique<Relay>(loop_, opts_.dockerd_socket, opts_.relay_socket);
    relay_->remove_stale_socket();
  }
  if (!dockerd_->start()) {
    on_dockerd_exited(127);
    return;
  }
  if (relay_) relay_->start_waiting();
}

void Supervisor::start_main_child() {
  SpawnRequest req;
  req.argv = opts_.command;  // stdin/stdout/stderr: init's own
  SpawnResult r = spawn(req);
  const char* what = opts_.command[0].c_str();
  if (r.pid < 0) {
    log_console("cannot start '%s': %s: %s", what, r.error.c_str(), errno_str(r.err).c_str());
    on_main_exited(127);
    return;
  }
  main_pid_ = r.pid;
  if (r.started) {
    log_msg("main child started, pid %d: %s", main_pid_, what);
  } else {
    // The child exits with 126/127 by itself; it is reaped like any other exit.
    log_console("cannot execute '%s': %s%s%s", what, r.error == "exec" ? "" : r.error.c_str(),
                r.error == "exec" ? "" : ": ", errno_str(r.err).c_str());
  }
}

void Supervisor::on_events(uint32_t) {
  for (int sig : signals_.drain()) {
    if (finished_) return;
    on_signal(sig);
  }
}

void Supervisor::on_signal(int sig) {
  if (sig == SIGCHLD) {
    reap_children();
    return;
  }
  if (main_pid_ > 0) {
    if (::kill(main_pid_, sig) == 0)
      log_msg("forwarded %s to the main child (pid %d)", sig_name(sig).c_str(), main_pid_);
    else
      log_msg("forwarding %s to pid %d: %s", sig_name(sig).c_str(), main_pid_,
              errno_str(errno).c_str());
  } else {
    log_msg("received %s", sig_name(sig).c_str());
  }
  if (sig == SIGTERM || sig == SIGINT) begin_shutdown(sig);
}

void Supervisor::reap_children() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) return;  // 0: others still running; ECHILD: no children at all
    int code = exit_code_from_wait_status(status);
    if (pid == main_pid_) {
      log_msg("main child (pid %d) exited: %s", pid, describe_status(status).c_str());
      main_pid_ = -1;
      on_main_exited(code);
    } else if (dockerd_ && pid == dockerd_->pid()) {
      log_msg("dockerd (pid %d) exited: %s", pid, describe_status(status).c_str());
      on_dockerd_exited(code);
    } else if (dockerd_ && pid == dockerd_->containerd_pid()) {
      log_msg("containerd (pid %d) exited: %s", pid, describe_status(status).c_str());
      on_containerd_exited();
    } else {
      log_msg("reaped orphan pid %d (%s)", pid, describe_status(status).c_str());
    }
    if (finished_) return;
  }
}

void Supervisor::on_main_exited(int code) {
  main_done_ = true;
  main_code_ = code;
  stop_dockerd();
  maybe_finish();
}

void Supervisor::on_dockerd_exited(int code) {
  if (dockerd_) dockerd_->on_exited();  // its last words into dockerd.log before the marker
  loop_.cancel_timer(kill_timer_);
  loop_.cancel_timer(give_up_timer_);
  kill_timer_ = give_up_timer_ = 0;
  if (restarting_dockerd_) {
    restarting_dockerd_ = false;
    stopping_dockerd_ = false;
    if (!shutting_down()) {
      log_msg("dockerd stopped; starting it again with a containerd of its own");
      if (!dockerd_->start(/*with_containerd=*/false)) on_dockerd_exited(127);
      return;
    }
  }
  if (!shutting_down()) {
    // dockerd died on its own: tell the host agent, which decides; the main child keeps going.
    log_msg("dockerd exited on its own (exit_code %d); the main child keeps running", code);
    write_exit_marker(opts_.status_dir, kDockerdExitMarker, code);
    if (relay_) relay_->stop_waiting();
  }
  stop_containerd();  // only now: dockerd stops its containers through it on the way out
  maybe_finish();
}

void Supervisor::on_containerd_exited() {
  if (dockerd_) dockerd_->on_containerd_exited();
  loop_.cancel_timer(containerd_kill_timer_);
  containerd_kill_timer_ = 0;
  if (dockerd_ && dockerd_->running() && !stopping_dockerd_ && !shutting_down()) {
    if (relay_ && !relay_->listening()) {
      // Before dockerd came up (an image's containerd that refuses the config, say): dockerd
      // can still start one of its own, as it would have without --containerd.
      log_msg("containerd exited before dockerd came up; restarting dockerd with a containerd of its own");
      restarting_dockerd_ = true;
      stopping_dockerd_ = true;
      dockerd_->signal(SIGKILL);
    } else {
      // dockerd cannot work without it: stop dockerd, whose exit then reports the failure.
      log_msg("containerd exited while dockerd runs; stopping dockerd");
      stop_dockerd();
    }
  }
  maybe_finish();
}

void Supervisor::stop_containerd() {
  if (!dockerd_ || !dockerd_->containerd_running() || containerd_kill_timer_ != 0) return;
  log_msg("stopping containerd (pid %d): SIGTERM, SIGKILL after %lld s", dockerd_->containerd_pid(),
          static_cast<long long>(kDockerdStopTimeout.count()));
  dockerd_->signal_containerd(SIGTERM);
  containerd_kill_timer_ = loop_.add_timer(kDockerdStopTimeout, [this] {
    log_msg("containerd still running after SIGTERM: SIGKILL");
    dockerd_->signal_containerd(SIGKILL);
    // Not reaped even then: give up on it, as on dockerd.
    containerd_kill_timer_ = loop_.add_timer(kReapAfterKillTimeout, [this] {
      containerd_kill_timer_ = 0;
      log_msg("containerd not reaped after SIGKILL; exiting without it");
      dockerd_->on_containerd_exited();
      maybe_finish();
    });
  });
}

void Supervisor::begin_shutdown(int sig) {
  if (!shutdown_requested_) log_msg("shutdown requested by %s", sig_name(sig).c_str());
  shutdown_requested_ = true;
  stop_dockerd();
  maybe_finish();
}

void Supervisor::stop_dockerd() {
  if (!dockerd_ || !dockerd_->running() || stopping_dockerd_) return;
  stopping_dockerd_ = true;
  log_msg("stopping dockerd (pid %d): SIGTERM, SIGKILL after %lld s", dockerd_->pid(),
          static_cast<long long>(kDockerdStopTimeout.count()));
  dockerd_->signal(SIGTERM);
  kill_timer_ = loop_.add_timer(kDockerdStopTimeout, [this] {
    kill_timer_ = 0;
    log_msg("dockerd still running after SIGTERM: SIGKILL");
    dockerd_->signal(SIGKILL);
    give_up_timer_ = loop_.add_timer(kReapAfterKillTimeout, [this] {
      give_up_timer_ = 0;
      log_msg("dockerd not reaped after SIGKILL; exiting without it");
      gave_up_on_dockerd_ = true;
      maybe_finish();
    });
  });
}

void Supervisor::maybe_finish() {
  if (finished_) return;
  bool dockerd_gone = !dockerd_ || !dockerd_->running() || gave_up_on_dockerd_;
  if (!dockerd_gone) return;
  if (dockerd_ && dockerd_->containerd_running()) {
    stop_containerd();  // dockerd was given up on, or never ran
    return;
  }
  if (!opts_.command.empty()) {
    if (main_done_) finish(main_code_);
  } else if (shutdown_requested_) {
    finish(0);
  }
}

void Supervisor::finish(int code) {
  finished_ = true;
  exit_code_ = code;
  if (dockerd_) dockerd_->drain_log();
  if (relay_) relay_->shutdown();  // the relay socket disappears before init.exit appears
  log_msg("exiting with status %d", code);
  write_exit_marker(opts_.status_dir, kInitExitMarker, code);
  loop_.stop();
}

}  // namespace sinit
