#include "ctl_exec.hpp"

#include <simdjson.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "ctl_client.hpp"
#include "json_out.hpp"

using sandbox_agent::json::quote;

namespace sandboxctl {

namespace {

std::string string_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (const auto& item : items) {
    if (out.size() > 1) out += ',';
    out += quote(item);
  }
  return out + "]";
}

bool digits(const std::string& s) { return !s.empty() && s.size() <= 15 && s.find_first_not_of("0123456789") == std::string::npos; }

bool connect(Client& c, const std::string& socket) {
  if (c.connect(socket)) return true;
  std::fprintf(stderr, "sandboxctl: cannot connect to %s: %s\n", socket.c_str(), std::strerror(errno));
  return false;
}

// gVisor writes to a regular file at an offset of its own (from 0), so output sent straight
// to `> file` would overwrite what is there. Such a descriptor gets a pipe instead, and this
// process copies the pipe to it: still not through the agent.
struct Relay {
  int read_end = -1;
  int to = -1;
};

bool needs_relay(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

// Copies what the relays' pipes carry until each is at EOF, while waiting for the reply
// lines; false when the agent hung up first.
bool pump_until_line(Client& c, std::vector<Relay>& relays) {
  char buf[65536];
  while (!c.has_line()) {
    std::vector<pollfd> p{{c.fd(), POLLIN, 0}};
    for (auto& r : relays)
      if (r.read_end >= 0) p.push_back({r.read_end, POLLIN, 0});
    if (::poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    for (std::size_t k = 1; k < p.size(); ++k) {
      if (!p[k].revents) continue;
      for (auto& r : relays) {
        if (r.read_end != p[k].fd) continue;
        ssize_t n = ::read(r.read_end, buf, sizeof buf);
        if (n > 0) {
          (void)!::write(r.to, buf, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          ::close(r.read_end);
          r.read_end = -1;
        }
      }
    }
    if (p[0].revents) return c.has_line() || c.fill();
  }
  return true;
}

void drain(std::vector<Relay>& relays) {
  char buf[65536];
  for (auto& r : relays) {
    while (r.read_end >= 0) {
      ssize_t n = ::read(r.read_end, buf, sizeof buf);
      if (n > 0) {
        (void)!::write(r.to, buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(r.read_end);
        r.read_end = -1;
      }
    }
  }
}

}  // namespace

int exec_command(const std::string& socket, const std::vector<std::string>& a) {
  bool interactive = false, tty = false;
  std::vector<std::string> env;
  std::string cwd, user, timeout, id;
  std::size_t i = 1;
  for (; i < a.size() && id.empty(); ++i) {
    const auto& x = a[i];
    auto value = [&](std::string& into) {
      if (i + 1 >= a.size()) return false;
      into = a[++i];
      return true;
    };
    std::string v;
    if (x == "-i" || x == "--interactive") interactive = true;
    else if (x == "-t" || x == "--tty") tty = true;
    else if (x == "-it" || x == "-ti") interactive = tty = true;
    else if (x == "-e" || x == "--env") { if (!value(v)) return usage("-e needs NAME=VALUE"); env.push_back(v); }
    else if (x == "-w" || x == "--workdir") { if (!value(cwd)) return usage("-w needs a directory"); }
    else if (x == "-u" || x == "--user") { if (!value(user)) return usage("-u needs UID[:GID]"); }
    else if (x == "--timeout") { if (!value(timeout)) return usage("--timeout needs milliseconds"); }
    else if (!x.empty() && x[0] == '-') return usage("unknown exec option " + x);
    else id = x;
  }
  if (id.empty()) return usage("exec needs a sandbox id and a command");
  if (i < a.size() && a[i] == "--") ++i;
  if (i >= a.size()) return usage("exec needs a command after the sandbox id");
  if (!timeout.empty() && !digits(timeout)) return usage("--timeout takes milliseconds");

  std::string line = "{\"op\":\"exec\",\"id\":" + quote(id) +
                     ",\"args\":" + string_array(std::vector<std::string>(a.begin() + static_cast<std::ptrdiff_t>(i), a.end()));
  if (!env.empty()) line += ",\"env\":" + string_array(env);
  if (!cwd.empty()) line += ",\"cwd\":" + quote(cwd);
  if (!user.empty()) {
    auto colon = user.find(':');
    std::string uid = user.substr(0, colon), gid = colon == std::string::npos ? uid : user.substr(colon + 1);
    if (!digits(uid) || !digits(gid)) return usage("-u takes numeric UID[:GID]");
    line += ",\"user\":{\"uid\":" + uid + ",\"gid\":" + gid + "}";
  }
  if (tty) line += ",\"tty\":true";
  if (!timeout.empty()) line += ",\"timeout_ms\":" + timeout;
  line += "}\n";

  // The process gets our descriptors. -t: our terminal, all three (stderr joins it, as with
  // docker -t); without -i stdin is /dev/null.
  std::vector<int> fds{0, 1, 2};
  int devnull = -1;
  if (tty) {
    if (!::isatty(0) || !::isatty(1)) return usage("-t needs a terminal as stdin and stdout");
    fds = {0, 1, 1};
  } else if (!interactive) {
    devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    fds[0] = devnull;
  }
  std::vector<Relay> relays;
  std::vector<int> write_ends;
  for (int k = 1; k <= 2 && !tty; ++k) {
    int p[2];
    if (!needs_relay(k) || ::pipe2(p, O_CLOEXEC) != 0) continue;
    relays.push_back({p[0], k});
    write_ends.push_back(p[1]);
    fds[static_cast<std::size_t>(k)] = p[1];
  }
  Client c;
  if (!connect(c, socket)) return 2;
  bool sent = c.send_with_fds(line, fds);
  int send_errno = errno;
  if (devnull >= 0) ::close(devnull);
  for (int w : write_ends) ::close(w);  // the process holds them now: EOF when it is done
  if (!sent) {
    errno = send_errno;
    if (int rc = send_failed(c, socket)) return rc;  // else the agent's reply (too_large) is read below
  }
  simdjson::dom::parser parser;
  simdjson::dom::element reply;
  std::string raw;
  for (int replies = 0; replies < 2; ++replies) {
    if (!relays.empty() && !pump_until_line(c, relays)) {
      std::fprintf(stderr, "sandboxctl: the agent closed the connection\n");
      return 2;
    }
    if (int rc = read_reply(c, parser, reply, raw)) return rc;
    if (!ok(reply)) {
      print_error(reply);
      // The command could not be run: the shell's codes (runsc's words went to stderr).
      auto err = member(reply, "error");
      if (str(err, "field") == "/args/0") return str(err, "message").find("no such file") != std::string::npos ? 127 : 126;
      return 1;
    }
  }
  drain(relays);
  std::int64_t code = 1;
  if (reply["exit_code"].get_int64().get(code)) code = 1;
  auto reason = str(reply, "reason");
  if (!reason.empty()) std::fprintf(stderr, "sandboxctl: the agent ended it: %s\n", reason.c_str());
  return static_cast<int>(code & 0xff);
}

namespace {

struct Remote {
  std::string id, path;
};

// ID:/PATH (an id has no '/' or ':'; a local path with a colon needs a ./ in front).
bool remote(const std::string& arg, Remote& r) {
  auto colon = arg.find(':');
  if (colon == std::string::npos || colon == 0 || arg.find('/') < colon) return false;
  r.id = arg.substr(0, colon);
  r.path = arg.substr(colon + 1);
  return true;
}

std::string base_name(const std::string& p) {
  auto s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

}  // namespace

int cp_command(const std::string& socket, const std::vector<std::string>& a, bool json) {
  if (a.size() != 3) return usage("cp needs SRC and DST, one of them ID:/PATH");
  Remote from, to;
  bool out = remote(a[1], from), in = remote(a[2], to);
  if (out == in) return usage("cp copies between this host and a sandbox: exactly one of SRC and DST is ID:/PATH");
  const std::string& local = out ? a[2] : a[1];
  Remote& r = out ? from : to;
  int fd = -1;
  std::string tmp, target = local;
  unsigned mode = 0644;
  if (in) {
    if (local == "-") {
      fd = ::dup(0);
    } else {
      fd = ::open(local.c_str(), O_RDONLY | O_CLOEXEC);
      struct stat st {};
      if (fd >= 0 && (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        std::fprintf(stderr, "sandboxctl: %s is not a regular file\n", local.c_str());
        ::close(fd);
        return 2;
      }
      mode = st.st_mode & 07777;
      if (!r.path.empty() && r.path.back() == '/') r.path += base_name(local);
    }
  } else if (local == "-") {
    fd = ::dup(1);
  } else {
    // Into a temporary file beside the target, renamed once the copy succeeded.
    struct stat st {};
    if (::stat(local.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) target = local + "/" + base_name(r.path);
    tmp = target + ".sandboxctl-XXXXXX";
    fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  }
  if (fd < 0) {
    std::fprintf(stderr, "sandboxctl: %s: %s\n", local.c_str(), std::strerror(errno));
    return 2;
  }
  std::string line = "{\"op\":\"cp\",\"id\":" + quote(r.id) + ",\"direction\":\"" + (in ? "in" : "out") +
                     "\",\"path\":" + quote(r.path);
  if (in && local != "-") line += ",\"mode\":" + std::to_string(mode);
  line += "}\n";
  Client c;
  auto fail = [&](int rc) {
    if (!tmp.empty()) ::unlink(tmp.c_str());
    return rc;
  };
  if (!connect(c, socket)) return ::close(fd), fail(2);
  bool sent = c.send_with_fds(line, {fd});
  int send_errno = errno;
  ::close(fd);
  if (!sent) {
    errno = send_errno;
    if (int rc = send_failed(c, socket)) return fail(rc);
  }
  simdjson::dom::parser parser;
  simdjson::dom::element reply;
  std::string raw;
  if (int rc = read_reply(c, parser, reply, raw)) return fail(rc);
  // Copied to stdout, the reply goes to stderr: the bytes on stdout are the file's alone.
  if (json) std::fprintf(out && local == "-" ? stderr : stdout, "%s\n", raw.c_str());
  if (!ok(reply)) {
    print_error(reply);
    return fail(1);
  }
  if (!tmp.empty()) {
    ::chmod(tmp.c_str(), 0644 & ~[] { mode_t m = ::umask(0); ::umask(m); return m; }());
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
      std::fprintf(stderr, "sandboxctl: %s: %s\n", target.c_str(), std::strerror(errno));
      return fail(2);
    }
  }
  return 0;
}

}  // namespace sandboxctl
