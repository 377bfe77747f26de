// Starts and stops dockerd: `DOCKERD --host=unix://SOCKET --group=root [--dockerd-arg...]`,
// plain or in a nested user namespace (cgroup.hpp decides), output piped into dockerd.log.
#pragma once

#include <sys/types.h>

#include "args.hpp"
#include "dockerd_log.hpp"
#include "event_loop.hpp"

namespace sinit {

class Dockerd {
 public:
  Dockerd(EventLoop& loop, const Options& opts);

  // False when no dockerd process could be created at all (then nothing will be reaped).
  // A dockerd whose setup or exec failed still exits and is reaped like any other.
  bool start();
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  void signal(int sig);
  // Call when the supervisor reaped dockerd: copies its last output into the log first.
  void on_exited();
  void drain_log() { log_.drain(); }

 private:
  const Options& opts_;
  DockerdLogPump log_;
  pid_t pid_ = -1;
};

}  // namespace sinit
