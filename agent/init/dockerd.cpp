#include "dockerd.hpp"

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <unistd.h>

#include "cgroup.hpp"
#include "log.hpp"
#include "spawn.hpp"
#include "userns.hpp"

namespace sinit {

Dockerd::Dockerd(EventLoop& loop, const Options& opts) : opts_(opts), log_(loop, opts.log_dir) {}

bool Dockerd::start() {
  CgroupDecision decision = decide_cgroup_strategy(opts_.cgroup);
  log_msg("dockerd: cgroup strategy: %s", decision.reason.c_str());

  SpawnRequest req;
  req.argv = {opts_.dockerd_path, "--host=unix://" + opts_.dockerd_socket, "--group=root"};
  req.argv.insert(req.argv.end(), opts_.dockerd_args.begin(), opts_.dockerd_args.end());
  req.new_session = true;
  req.new_userns = decision.userns;
  req.map_ids = write_root_id_maps;

  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  req.stdin_fd = devnull.get();  // -1 if /dev/null is missing: then dockerd inherits init's
  int pipe_fds[2];
  Fd pipe_r, pipe_w;
  if (::pipe2(pipe_fds, O_CLOEXEC) == 0) {
    pipe_r.reset(pipe_fds[0]);
    pipe_w.reset(pipe_fds[1]);
    ::fcntl(pipe_r.get(), F_SETFL, O_NONBLOCK);
    req.stdout_fd = req.stderr_fd = pipe_w.get();
  } else {
    log_msg("dockerd: pipe2: %s; its output goes to init's stderr", errno_str(errno).c_str());
  }

  std::string cmdline;
  for (const std::string& a : req.argv) cmdline += (cmdline.empty() ? "" : " ") + a;
  SpawnResult r = spawn(req);
  pipe_w.reset();  // only dockerd holds the write end now: EOF when it (and its children) exit
  if (pipe_r.valid()) log_.attach(std::move(pipe_r));

  if (r.pid < 0) {
    log_msg("dockerd: cannot start %s: %s: %s", cmdline.c_str(), r.error.c_str(),
            errno_str(r.err).c_str());
    return false;
  }
  pid_ = r.pid;
  if (r.started)
    log_msg("dockerd: started pid %d%s: %s", pid_, decision.userns ? " (user namespace)" : "",
            cmdline.c_str());
  else
    log_msg("dockerd: pid %d failed before running %s: %s: %s", pid_, cmdline.c_str(),
            r.error.c_str(), r.err ? errno_str(r.err).c_str() : "see above");
  return true;
}

void Dockerd::signal(int sig) {
  if (pid_ <= 0) return;
  if (::kill(pid_, sig) != 0)
    log_msg("dockerd: kill(%d, %d): %s", pid_, sig, errno_str(errno).c_str());
}

void Dockerd::on_exited() {
  pid_ = -1;
  log_.drain();
}

}  // namespace sinit
