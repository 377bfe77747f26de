// Starts and stops dockerd: `DOCKERD --host=unix://SOCKET --group=root [--dockerd-arg...]`,
// plain or in a nested user namespace (cgroup.hpp decides), output piped into dockerd.log.
// With --containerd, containerd is forked first and dockerd, pointed at it
// (`--containerd=ADDRESS`), right after, without waiting for containerd's exec: inside
// gVisor each takes 100-200 ms just to load and initialise, and dockerd would otherwise
// start containerd only once it is up itself. dockerd's dialer retries a socket that does
// not exist yet every 10 ms, so the two may start in any order.
#pragma once

#include <sys/types.h>

#include "args.hpp"
#include "dockerd_log.hpp"
#include "event_loop.hpp"
#include "spawn.hpp"

namespace sinit {

class Dockerd {
 public:
  Dockerd(EventLoop& loop, const Options& opts);

  // False when no dockerd process could be created at all (then nothing will be reaped).
  // A dockerd whose setup or exec failed still exits and is reaped like any other.
  // with_containerd: start containerd first (when --containerd was given and may be used).
  bool start(bool with_containerd = true);
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  void signal(int sig);
  // Call when the supervisor reaped dockerd: copies its last output into the log first.
  void on_exited();
  void drain_log() { log_.drain(); }

  // The containerd init started (-1: none, or it is gone).
  pid_t containerd_pid() const { return containerd_pid_; }
  bool containerd_running() const { return containerd_pid_ > 0; }
  void signal_containerd(int sig);
  void on_containerd_exited() { containerd_pid_ = -1; }

 private:
  // Writes containerd's config and forks it with `out_fd` as its stdout and stderr, without
  // waiting for its exec; returns the address dockerd is to use, or "" when dockerd should
  // start its own. finish_containerd waits for the exec: false when it failed.
  std::string begin_containerd(int stdin_fd, int out_fd, PendingSpawn& pending);
  bool finish_containerd(PendingSpawn& pending);

  const Options& opts_;
  DockerdLogPump log_;
  pid_t pid_ = -1;
  pid_t containerd_pid_ = -1;
  std::string containerd_config_;
};

}  // namespace sinit
