#include "client.hpp"

#include <cstdlib>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
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
      if (g.command != "create") return answer_locally(root, Request{cwd, args});
      std::string err;
      fd = connect_or_spawn(root, err);
      if (fd < 0) return fail(err);
    }
    std::string reply;
    const bool ok = send_all(fd, request) && read_to_eof(fd, reply);
    ::close(fd);
    if (!reply.empty()) {
      const auto decoded = decode_reply(reply);
      return decoded ? print_reply(*decoded) : fail("malformed reply from the daemon");
    }
    (void)ok;  // no reply at all: the daemon was retiring and ran nothing; try again
    ::usleep(1000);
  }
  return fail("the daemon at " + sock + " does not answer");
}

}  // namespace fake_runsc
