#include "client.hpp"

#include <cstdlib>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <climits>
#include <string>
#include <string_view>
#include <vector>

#include "args.hpp"
#include "files.hpp"
#include "layout.hpp"
#include "runtime.hpp"
#include "spawn.hpp"
#include "wire.hpp"

namespace fake_runsc {
namespace {

constexpr int kMaxAttempts = 200;

int print_reply(const Reply& r) {
  write_all(STDOUT_FILENO, r.out);
  write_all(STDERR_FILENO, r.err);
  return r.code;
}

int fail(std::string message) { return print_reply(Reply::fail(1, "fake-runsc: " + message)); }

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Everything until EOF; false on a read error (e.g. ECONNRESET from a retiring daemon).
bool read_to_eof(int fd, std::string& out) {
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      return true;
    } else if (errno != EINTR) {
      return false;
    }
  }
}

// With no daemon there is no container: the CLI answers everything but create itself.
int answer_locally(const std::string& root, const Request& req) {
  Runtime empty(root, nullptr, 0, nullptr);
  return print_reply(empty.execute(req));
}

// Under ROOT/fake-runsc.lock: connect, or start the daemon and connect.
int connect_or_spawn(const std::string& root, std::string& err) {
  if (!make_dirs(root, 0711)) {
    err = "cannot create root " + root;
    return -1;
  }
  const int lock = ::open(join_path(root, kLockName).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
    err = "cannot lock " + join_path(root, kLockName);
    if (lock >= 0) ::close(lock);
    return -1;
  }
  const std::string sock = join_path(root, kSocketName);
  int fd = unix_connect(sock);
  if (fd < 0 && spawn_daemon(root, err)) fd = unix_connect(sock);
  if (fd < 0 && err.empty()) err = "cannot connect to " + sock;
  ::close(lock);
  return fd;
}

}  // namespace

// What the agent's start-up probe asks: by default the answers of Debian's runsc
// (20221219: ptrace and kvm, no Docker-in-gVisor); FAKE_RUNSC_PROFILE=current answers like
// current gVisor (systrap; --allow-packet-socket-write).
bool current_profile() {
  const char* p = std::getenv("FAKE_RUNSC_PROFILE");
  return p && std::string_view(p) == "current";
}

int answer_probe(const GlobalArgs& g, bool& answered) {
  answered = true;
  const bool current = current_profile();
  if (g.version) {
    write_all(STDOUT_FILENO, current ? "runsc version fake-current\nspec: 1.2.1\n"
                                     : "runsc version fake\nspec: 1.0.2-dev\n");
    return 0;
  }
  if (g.command == "flags") {  // runsc prints these on stderr, as Go's flag package does
    std::string text =
        "  -host-uds value\n    \tcontrols permission to access host Unix-domain sockets.\n"
        "  -ignore-cgroups\n    \tdon't configure cgroups.\n"
        "  -net-raw\n    \tenable raw sockets.\n"
        "  -network value\n    \tspecifies which network to use.\n"
        "  -platform string\n    \tspecifies which platform to use.\n"
        "  -root string\n    \troot directory for storage of container state.\n";
    if (current) text += "  -allow-packet-socket-write\n    \tallow writes on packet sockets.\n";
    write_all(STDERR_FILENO, text);
    return 0;
  }
  if (g.command == "help" && !g.rest.empty() && g.rest[0] == "platforms") {
    write_all(STDOUT_FILENO, current ? "kvm\nptrace\nsystrap\n" : "kvm\nptrace\n");
    return 0;
  }
  answered = false;
  return 0;
}

// exec: the daemon checks the container and maps the paths; the command then runs here, on
// the host, as this process's child (it dies with us: PR_SET_PDEATHSIG), with our stdio.
// Like runsc: exit 128 and no internal pid file when it cannot be run; else its exit code,
// or 128+N for signal N.
int run_exec(const std::vector<std::string_view>& args, const GlobalArgs& g, const Reply& resolved) {
  static constexpr std::string_view kValued[] = {"cwd", "user", "env", "internal-pid-file", "pid-file"};
  const CommandArgs a = parse_command(g.rest, kValued);
  int log_fd = -1;
  for (auto arg : args) {
    if (arg == g.command) break;
    if (arg.starts_with("--log-fd=")) log_fd = std::atoi(std::string(arg.substr(9)).c_str());
  }
  std::vector<std::string> parts;
  for (std::size_t at = 0;;) {
    auto nul = resolved.out.find('\0', at);
    parts.push_back(resolved.out.substr(at, nul == std::string::npos ? std::string::npos : nul - at));
    if (nul == std::string::npos) break;
    at = nul + 1;
  }
  if (parts.size() < 2) return fail("exec: malformed reply from the daemon");
  std::vector<char*> child_argv;
  for (std::size_t i = 1; i < parts.size(); ++i) child_argv.push_back(parts[i].data());
  child_argv.push_back(nullptr);
  long uid = -1, gid = -1;
  if (const auto* u = a.find("user")) {
    std::string v(u->value);
    uid = std::strtol(v.c_str(), nullptr, 10);
    auto colon = v.find(':');
    gid = colon == std::string::npos ? uid : std::strtol(v.c_str() + colon + 1, nullptr, 10);
  }
  std::vector<std::string> env;
  for (const auto& f : a.flags)
    if (f.name == "env") env.emplace_back(f.value);

  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return fail("pipe");
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(128 + SIGKILL);
    int err = 0;
    if (::chdir(parts[0].c_str()) != 0) err = errno;
    if (!err && gid >= 0 && (::setgroups(0, nullptr) != 0 || ::setgid(static_cast<gid_t>(gid)) != 0)) err = errno;
    if (!err && uid >= 0 && ::setuid(static_cast<uid_t>(uid)) != 0) err = errno;
    for (auto& e : env) ::putenv(e.data());
    if (!err) {
      ::execvp(child_argv[0], child_argv.data());
      err = errno;
    }
    (void)!::write(report[1], &err, sizeof err);
    ::_exit(127);
  }
  ::close(report[1]);
  int err = 0;
  const bool failed = pid < 0 || ::read(report[0], &err, sizeof err) == static_cast<ssize_t>(sizeof err);
  ::close(report[0]);
  if (failed) {
    if (pid > 0) ::waitpid(pid, nullptr, 0);
    std::string why = std::strerror(pid < 0 ? errno : err);
    if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
    const std::string msg = "executing processes for container: executing command \"" + parts[1] +
                            "\" in sandbox: failed to load " + parts[1] + ": " + why;
    if (log_fd >= 0) write_all(log_fd, "{\"msg\":\"" + msg + "\",\"level\":\"error\"}\n");
    return print_reply(Reply::fail(128, msg));
  }
  if (const auto* f = a.find("internal-pid-file")) {
    const std::string path(f->value);
    const std::string text = std::to_string(pid);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      write_all(fd, text);
      ::close(fd);
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

int run_cli(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  const GlobalArgs g = parse_globals(args);
  bool answered = false;
  if (int rc = answer_probe(g, answered); answered) return rc;
  if (!g.error.empty()) return print_reply(Reply::fail(2, g.error));
  if (g.command.empty())
    return print_reply(Reply::fail(2, "usage: runsc <flags> <subcommand> <subcommand args>"));
  if (g.root.empty()) return fail("--root is required");

  char cwd_buf[PATH_MAX];
  const std::string cwd = ::getcwd(cwd_buf, sizeof cwd_buf) ? cwd_buf : "/";
  const std::string root = absolute_path(cwd, g.root);
  const std::string sock = join_path(root, kSocketName);
  const std::string request = encode_request(cwd, args);

  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    int fd = unix_connect(sock);
    if (fd < 0) {
      if (g.command != "create" && g.command != "run") return answer_locally(root, Request{cwd, args});
      std::string err;
      fd = connect_or_spawn(root, err);
      if (fd < 0) return fail(err);
    }
    std::string reply;
    const bool ok = send_all(fd, request) && read_to_eof(fd, reply);
    ::close(fd);
    if (!reply.empty()) {
      const auto decoded = decode_reply(reply);
      if (decoded && g.command == "exec" && decoded->code == 0) return run_exec(args, g, *decoded);
      return decoded ? print_reply(*decoded) : fail("malformed reply from the daemon");
    }
    (void)ok;  // no reply at all: the daemon was retiring and ran nothing; try again
    ::usleep(1000);
  }
  return fail("the daemon at " + sock + " does not answer");
}

}  // namespace fake_runsc
