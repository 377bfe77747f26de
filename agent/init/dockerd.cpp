#include "dockerd.hpp"

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.hpp"
#include "fd.hpp"
#include "log.hpp"
#include "spawn.hpp"
#include "userns.hpp"

namespace sinit {

namespace {
// What dockerd itself would give its own containerd (root under dockerd's data root, the CRI
// plugin off), minus the snapshotters and the /opt plugin that cannot work in a sandbox and
// only cost start-up time and log lines. `dir` holds its state, config and socket.
std::string containerd_toml(const std::string& dir) {
  return "version = 2\n"
         "root = \"/var/lib/docker/containerd/daemon\"\n"
         "state = \"" + dir + "/containerd\"\n"
         "disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.aufs\",\n"
         "  \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.devmapper\",\n"
         "  \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.internal.v1.opt\"]\n"
         "[grpc]\n"
         "  address = \"" + dir + "/containerd.sock\"\n";
}

bool write_new_file(const std::string& path, const std::string& data) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  return fd.valid() && write_all(fd.get(), data.data(), data.size());
}

// The user chose a containerd of their own (`--dockerd-arg=--containerd=…`).
bool names_containerd(const std::vector<std::string>& args) {
  for (const std::string& a : args)
    if (a == "--containerd" || a.rfind("--containerd=", 0) == 0) return true;
  return false;
}
}  // namespace

Dockerd::Dockerd(EventLoop& loop, const Options& opts) : opts_(opts), log_(loop, opts.log_dir) {}

bool Dockerd::start(bool with_containerd) {
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

  // containerd and dockerd are forked one after the other, and exec side by side: inside
  // gVisor the exec of each takes ~10 ms that dockerd, the slower to start, need not wait.
  PendingSpawn containerd;
  if (!opts_.containerd_path.empty() && with_containerd) {
    if (decision.userns) {  // dockerd must start containerd itself, inside its namespace
      log_msg("containerd: left to dockerd (it runs in a user namespace)");
    } else if (names_containerd(opts_.dockerd_args)) {
      log_msg("containerd: left alone (dockerd_args name a --containerd of their own)");
    } else {
      std::string address = begin_containerd(req.stdin_fd, req.stdout_fd, containerd);
      if (!address.empty()) req.argv.push_back("--containerd=" + address);
    }
  }

  PendingSpawn dockerd;
  SpawnResult r;
  if (!req.new_userns) dockerd = spawn_begin(req);
  else r = spawn(req);
  if (containerd.pid >= 0 && !finish_containerd(containerd)) {
    // Pointed at a containerd that will never listen: start dockerd again with its own.
    if (dockerd.pid >= 0) {
      ::kill(dockerd.pid, SIGKILL);
      while (::waitpid(dockerd.pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    req.argv.pop_back();
    dockerd = spawn_begin(req);
  }
  if (!req.new_userns) r = spawn_finish(dockerd);
  std::string cmdline;
  for (const std::string& a : req.argv) cmdline += (cmdline.empty() ? "" : " ") + a;
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

std::string Dockerd::begin_containerd(int stdin_fd, int out_fd, PendingSpawn& pending) {
  // Beside dockerd's socket (/run in a sandbox: a fresh tmpfs, so no stale socket is there
  // for dockerd to find before containerd listens).
  const std::string& sock = opts_.dockerd_socket;
  const auto slash = sock.rfind('/');
  const std::string dir = (slash == std::string::npos || slash == 0 ? std::string("/run") : sock.substr(0, slash)) + "/sandbox-init";
  const std::string config = dir + "/containerd.toml";
  if ((::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) || !write_new_file(config, containerd_toml(dir))) {
    log_msg("containerd: cannot write %s: %s; dockerd starts its own", config.c_str(),
            errno_str(errno).c_str());
    return {};
  }
  SpawnRequest req;
  req.argv = {opts_.containerd_path, "--config", config};
  containerd_config_ = config;
  req.new_session = true;
  req.stdin_fd = stdin_fd;
  req.stdout_fd = req.stderr_fd = out_fd;  // its lines go to dockerd.log, as when dockerd runs it
  pending = spawn_begin(req);
  if (pending.pid < 0) {
    finish_containerd(pending);  // says why
    return {};
  }
  return dir + "/containerd.sock";
}

bool Dockerd::finish_containerd(PendingSpawn& pending) {
  SpawnResult r = spawn_finish(pending);
  if (r.pid < 0 || !r.started) {
    // A child whose exec failed exits by itself and is reaped as an orphan.
    log_msg("containerd: cannot start %s: %s%s%s; dockerd starts its own", opts_.containerd_path.c_str(),
            r.error.c_str(), r.err ? ": " : "", r.err ? errno_str(r.err).c_str() : "");
    return false;
  }
  containerd_pid_ = r.pid;
  log_msg("containerd: started pid %d: %s --config %s", containerd_pid_, opts_.containerd_path.c_str(),
          containerd_config_.c_str());
  return true;
}

void Dockerd::signal_containerd(int sig) {
  if (containerd_pid_ <= 0) return;
  if (::kill(containerd_pid_, sig) != 0)
    log_msg("containerd: kill(%d, %d): %s", containerd_pid_, sig, errno_str(errno).c_str());
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
