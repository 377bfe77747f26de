// What the kernel work of one launch costs with nothing else around it: the system calls the
// agent cannot avoid for a Docker sandbox under the contract's layout (docs/benchmarks.md,
// "The floor"), done N times in a loop, with this process's CPU (utime + stime, not its
// children's) per sandbox. A baseline for bench/scale.py's agent CPU per sandbox, measured in
// the same run: the agent's figure minus this one is what its own logic costs.
//
//   syscall_floor DIR [N] [--no-spawn] [--calls K]
//     DIR: an empty directory (a tmpfs, as scale.py uses); K: runsc calls per launch, 1 (the
//     agent's `runsc run --detach`, the default) or 2 (runsc.launch "create_start")
//
// Per sandbox: bundles/ID, logs/ID, sockets/ID made; a tmpfs of 16 MiB mounted on logs/ID
// (the log quota; needs root, skipped with a note otherwise); config.json written (4 KiB);
// the record written twice (staging file, rename; then RENAME_EXCHANGE); an inotify watch on
// sockets/ID; per runsc call, runsc.log appended to and a child spawned the agent's way
// (sandbox_agent::spawn: clone without waiting for the exec) and reaped; the pid file read.
// Not included: the readiness probe's socket round trip, and everything in user space.
// The mounts and directories are removed after the measurement.
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "process.hpp"

namespace {

double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void write_file(const std::string& path, const std::string& data, int flags) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | flags, 0640);
  if (fd < 0 || ::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    std::perror(path.c_str());
    std::exit(1);
  }
  ::close(fd);
}

void spawn_and_reap() {
  auto child = sandbox_agent::spawn(sandbox_agent::SpawnSpec{{"/bin/true"}});
  if (!child) {
    std::fprintf(stderr, "%s\n", child.error().message.c_str());
    std::exit(1);
  }
  siginfo_t info{};
  ::waitid(P_PID, static_cast<id_t>(child->pid()), &info, WEXITED | WNOWAIT);  // exited; reaped below
}  // ~Child reaps it

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: syscall_floor DIR [N] [--no-spawn] [--calls K]\n");
    return 2;
  }
  const std::string root = argv[1];
  const int n = argc > 2 && argv[2][0] != '-' ? std::atoi(argv[2]) : 1000;
  bool spawn = true;
  int calls = 1;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--no-spawn") spawn = false;
    if (std::string(argv[i]) == "--calls" && i + 1 < argc) calls = std::atoi(argv[++i]);
  }
  for (const char* d : {"bundles", "logs", "sockets", "state"}) ::mkdir((root + "/" + d).c_str(), 0750);
  const std::string config(4126, 'c'), record(700, 'r'), header(200, 'h');
  int inotify = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  bool can_mount = ::geteuid() == 0;

  double t0 = cpu_seconds();
  for (int i = 0; i < n; ++i) {
    const std::string id = "s" + std::to_string(i);
    const std::string bundle = root + "/bundles/" + id, logs = root + "/logs/" + id, sockets = root + "/sockets/" + id;
    ::mkdir(bundle.c_str(), 0700);
    ::mkdir(logs.c_str(), 0750);
    if (can_mount)
      ::mount("floor-logs", logs.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16777216,nr_inodes=256,mode=0750");
    ::mkdir(sockets.c_str(), 0700);
    write_file(bundle + "/config.json", config, O_CREAT | O_TRUNC);
    const std::string rec = root + "/state/" + id + ".json", tmp = root + "/state/." + id + ".json.tmp";
    write_file(tmp, record, O_CREAT | O_TRUNC | O_NOFOLLOW);
    ::rename(tmp.c_str(), rec.c_str());
    ::inotify_add_watch(inotify, sockets.c_str(), IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR);
    for (int call = 0; call < calls; ++call) {  // runsc run (or runsc create, runsc start)
      write_file(logs + "/runsc.log", header, O_CREAT | O_APPEND | O_NOFOLLOW);
      if (spawn) spawn_and_reap();
    }
    write_file(bundle + "/sandbox.pid", "12345", O_CREAT | O_TRUNC);
    char buf[32];
    int fd = ::open((bundle + "/sandbox.pid").c_str(), O_RDONLY | O_CLOEXEC);
    [[maybe_unused]] ssize_t got = ::read(fd, buf, sizeof buf);
    ::close(fd);
    write_file(tmp, record, O_CREAT | O_TRUNC | O_NOFOLLOW);  // ready
    ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, rec.c_str(), RENAME_EXCHANGE);
  }
  double per = (cpu_seconds() - t0) / n * 1e6;
  std::printf("%d sandboxes: %.0f us of CPU per sandbox for the kernel work of a launch (%d runsc call%s)%s%s\n", n,
              per, calls, calls == 1 ? "" : "s", spawn ? "" : " (no children spawned)", can_mount ? "" : " (no log quota mount: not root)");

  for (int i = 0; i < n; ++i) {  // clean up (not measured)
    const std::string id = "s" + std::to_string(i);
    if (can_mount) ::umount2((root + "/logs/" + id).c_str(), MNT_DETACH);
    for (const char* f : {"/bundles/ID/config.json", "/bundles/ID/sandbox.pid", "/logs/ID/runsc.log",
                          "/state/ID.json", "/state/.ID.json.tmp"}) {
      std::string p = root + f;
      p.replace(p.find("ID"), 2, id);
      ::unlink(p.c_str());
    }
    for (const char* d : {"/bundles/", "/logs/", "/sockets/"}) ::rmdir((root + d + id).c_str());
  }
  for (const char* d : {"bundles", "logs", "sockets", "state"}) ::rmdir((root + "/" + d).c_str());
  return 0;
}
