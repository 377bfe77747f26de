// sandboxctl: the agent's command-line client. One connection per command, blocking I/O,
// human tables by default, the agent's JSON with --json.
// Exit codes: 0 success, 1 the agent answered an error (or the sandbox failed), 2 usage or
// connection errors.
#include <simdjson.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "ctl_client.hpp"
#include "ctl_exec.hpp"
#include "paths.hpp"
#include "sandbox_agent/config.hpp"

namespace {

using sandboxctl::Client;
using sandboxctl::member;
using sandboxctl::ok;
using sandboxctl::print_error;
using sandboxctl::str;
using sandboxctl::usage;

constexpr const char* kUsage = R"(usage: sandboxctl [--socket PATH | --root DIR] [--json] COMMAND

commands:
  launch FILE|- [--wait]     submit a launch request (JSON); --wait holds until it is ready
                             (or failed) and exits 1 unless ready
  launch --pool NAME [--id ID] [--ttl MS] [--wait]
                             take a ready sandbox from a warm pool (or its template, cold);
                             launch's options go in any order
  status ID                  one sandbox's status
  ps                         every sandbox
  stop ID [--timeout MS] [--wait]
                             stop a sandbox (TERM, then KILL after MS, default 10000);
                             --wait holds until it is stopped (or failed): it watches,
                             or asks its status when the agent has no watch to spare
  extend ID MS               stop the sandbox MS milliseconds from now (ttl_expired), sooner
                             or later than its deadline so far; prints the new deadline
  inspect ID                 the sandbox's whole status as JSON
  logs [-f] [--source S] ID  its log: main (default: its stdout/stderr), dockerd or runsc;
                             -f follows it until the sandbox ends
  exec [-i] [-t] [-e NAME=VALUE] [-w DIR] [-u UID[:GID]] [--timeout MS] ID -- CMD...
                             run CMD in the sandbox with this terminal's stdio (-i: stdin
                             too; -t: as a terminal); exits with CMD's exit code (126: it
                             could not be run, 127: no such command)
  cp SRC DST                 copy a file into or out of a sandbox: one side ID:/PATH, the
                             other a local path (a directory: the same name in it) or -
                             (stdin or stdout; to stdout, --json's reply goes to stderr)
  watch                      print state changes as they happen, until interrupted
  stats                      counters and time-to-ready percentiles
  pools                      each warm pool: size, ready, warming, failures in a row
  metrics                    the Prometheus text exposition (what GET /metrics serves)
  version                    the agent's version (--version: this client's)

The socket is --socket, else ROOT/agent.sock for --root, else $SANDBOX_AGENT_SOCKET, else
/var/lib/sandbox-agent/agent.sock. Exit 0 on success, 1 when the agent answered an error,
2 on usage or connection errors (exec: the command's own code).
)";

std::string num(simdjson::dom::element e, const char* key) {
  int64_t i = 0;
  if (!e[key].get_int64().get(i)) return std::to_string(i);
  double d = 0;
  if (!e[key].get_double().get(d)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", d);
    return buf;
  }
  return {};
}

void print_status(simdjson::dom::element s) {
  auto line = [](const char* k, const std::string& v) {
    if (!v.empty()) std::printf("%-14s %s\n", k, v.c_str());
  };
  line("id", str(s, "id"));
  line("state", str(s, "state"));
  line("reason", str(s, "reason"));
  line("exit code", num(s, "exit_code"));
  line("created", str(s, "created_at"));
  line("ready", str(s, "ready_at"));
  line("docker socket", str(s, "docker_socket"));
  line("deadline", str(s, "ttl_deadline"));
  if (auto pool = str(s, "pool"); !pool.empty()) line("pool", pool + " (" + str(s, "pool_start") + ")");
  simdjson::dom::object timings;
  if (!s["timings"].get_object().get(timings)) {
    std::string t;
    for (auto [k, v] : timings) {
      int64_t ms = 0;
      if (!v.get_int64().get(ms)) t += (t.empty() ? "" : ", ") + std::string(k) + " " + std::to_string(ms);
    }
    line("timings (ms)", t);
  }
  simdjson::dom::element caps;
  if (!s["capabilities"].get(caps) && caps.is_object()) {
    bool nested = false, docker = !s["docker_socket"].error();
    if (caps["nested_containers"].get_bool().get(nested)) nested = false;
    std::string what = str(caps, "runtime_version") + ", platform " + str(caps, "platform");
    if (nested) what += ", nested containers: yes";
    else if (docker) what += ", nested containers: no (this runsc cannot run them)";
    line("runtime", what);
  }
  simdjson::dom::element net;
  if (!s["network"].get(net) && net.is_object()) {
    std::string what = str(net, "ip");
    simdjson::dom::array ports;
    if (!net["ports"].get_array().get(ports))
      for (auto p : ports) {  // docker's notation: 0.0.0.0:8080->80/tcp
        auto host_ip = str(p, "host_ip");
        what += (what.empty() ? "" : ", ") + (host_ip.empty() ? "0.0.0.0" : host_ip) + ":" + num(p, "host_port") +
                "->" + num(p, "sandbox_port") + "/" + str(p, "protocol");
      }
    line("network", what);
  }
  simdjson::dom::object labels;
  if (!s["labels"].get_object().get(labels)) {
    std::string l;
    for (auto [k, v] : labels) {
      std::string_view sv;
      if (!v.get_string().get(sv)) l += (l.empty() ? "" : ", ") + std::string(k) + "=" + std::string(sv);
    }
    line("labels", l);
  }
  auto tail = str(s, "log_tail");
  if (!tail.empty()) std::printf("log tail:\n%s\n", tail.c_str());
}

struct Options {
  std::string socket;
  bool json = false;
  std::vector<std::string> args;
};

// Whether the sandbox has ended (or is unknown): a status on a connection of its own.
bool sandbox_ended(const std::string& socket, const std::string& id) {
  Client c;
  std::string raw;
  if (!c.connect(socket) || !c.send("{\"op\":\"status\",\"id\":\"" + id + "\"}\n") || !c.read_line(raw)) return true;
  simdjson::dom::parser parser;
  simdjson::dom::element reply;
  if (parser.parse(raw).get(reply)) return true;
  if (!ok(reply)) return true;
  auto state = str(member(reply, "sandbox"), "state");
  return state == "stopped" || state == "failed";
}

// The log's descriptor as the agent would hand it over now; -1 if it cannot.
int log_fd_now(const std::string& socket, const std::string& id, const std::string& source) {
  Client c;
  std::string raw;
  if (!c.connect(socket) ||
      !c.send("{\"op\":\"logs\",\"id\":\"" + id + "\",\"source\":\"" + source + "\"}\n") || !c.read_line(raw))
    return -1;
  simdjson::dom::parser parser;
  simdjson::dom::element reply;
  if (parser.parse(raw).get(reply) || !ok(reply)) return -1;
  return c.take_fd();
}

// The file the agent would hand over now, if it is no longer `fd`'s: the log was rotated
// (sandbox-init renames dockerd.log to .1 past 8 MiB, the agent runsc.log past 4 MiB).
int rotated_to(int fd, const std::string& socket, const std::string& id, const std::string& source) {
  int now = log_fd_now(socket, id, source);
  if (now < 0) return -1;
  struct stat a {}, b {};
  if (::fstat(fd, &a) != 0 || ::fstat(now, &b) != 0 || (a.st_dev == b.st_dev && a.st_ino == b.st_ino)) {
    ::close(now);
    return -1;
  }
  return now;
}

// Copies the log the agent handed over (a read-only descriptor, SCM_RIGHTS) to stdout; with
// `follow`, keeps reading as it grows (and across a rotation), until the sandbox has ended
// and nothing more comes.
int print_log(Client& client, const Options& o, const std::string& id, const std::string& source, bool follow) {
  int fd = client.take_fd();
  if (fd < 0) {
    std::fprintf(stderr, "sandboxctl: the agent sent no descriptor with its reply\n");
    return 2;
  }
  char buf[65536];
  bool ended = false;
  for (unsigned idle = 0;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::fprintf(stderr, "sandboxctl: reading the log: %s\n", std::strerror(errno));
      ::close(fd);
      return 2;
    }
    if (n > 0) {
      std::fwrite(buf, 1, static_cast<std::size_t>(n), stdout);
      idle = 0;
      continue;
    }
    if (!follow || ended) break;  // at the end (once more after the sandbox ended)
    std::fflush(stdout);
    if (++idle % 10 == 0) {
      if (int next = rotated_to(fd, o.socket, id, source); next >= 0) {
        // What reached the old file before its rename, then the new file from its start.
        for (ssize_t r; (r = ::read(fd, buf, sizeof buf)) > 0;) std::fwrite(buf, 1, static_cast<std::size_t>(r), stdout);
        // On another file system it is the same log, moved off its tmpfs as the sandbox
        // ended (the agent keeps it): go on where the old one ended, not from the start.
        struct stat was {}, is {};
        if (::fstat(fd, &was) == 0 && ::fstat(next, &is) == 0 && was.st_dev != is.st_dev)
          ::lseek(next, ::lseek(fd, 0, SEEK_CUR), SEEK_SET);
        ::close(fd);
        fd = next;
        continue;
      }
      ended = sandbox_ended(o.socket, id);
    }
    if (!ended) ::usleep(100000);
  }
  ::close(fd);
  return 0;
}

int run(const Options& o) {
  const auto& a = o.args;
  const std::string& cmd = a[0];
  auto want = [&](std::size_t n) { return a.size() >= n; };
  std::string line;
  bool wait = false, follow = false;
  std::string log_source = "main";
  std::string stop_id;

  if (cmd == "exec") return sandboxctl::exec_command(o.socket, a);
  if (cmd == "cp") return sandboxctl::cp_command(o.socket, a, o.json);
  if (cmd == "launch") {
    // Options in any order; the one word that is not an option (or -) is the request file,
    // and --pool anywhere makes it the pool form.
    std::string pool, id, ttl, file;
    bool pooled = false, with_id = false, with_ttl = false, with_file = false;
    for (std::size_t i = 1; i < a.size(); ++i) {
      const std::string& x = a[i];
      auto value = [&](const std::string& flag, std::string& into, bool& given) {  // 1 taken, 0 not it, -1 no value
        if (x == flag) {
          if (i + 1 >= a.size()) return -1;
          into = a[++i];
        } else if (x.starts_with(flag + "=")) {
          into = x.substr(flag.size() + 1);
        } else {
          return 0;
        }
        given = true;
        return 1;
      };
      if (x == "--wait") {
        wait = true;
        continue;
      }
      int taken = value("--pool", pool, pooled);
      if (!taken) taken = value("--id", id, with_id);
      if (!taken) taken = value("--ttl", ttl, with_ttl);
      if (taken < 0) return usage(x + " needs a value");
      if (taken) continue;
      if (x.starts_with("-") && x != "-") return usage("unknown launch option " + x);
      if (with_file) return usage("launch takes one request file (got " + file + " and " + x + ")");
      file = x;
      with_file = true;
    }
    if (pooled && with_file) return usage("launch takes a request file or --pool NAME, not both");
    if (!pooled && (with_id || with_ttl))
      return usage("--id and --ttl go with --pool (a request file has its own id and ttl_ms)");
    if (!pooled && !with_file) return usage("launch needs a request file (or -), or --pool NAME");
    if (pooled) {
      for (char c : pool + id)
        if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return usage("not a pool name or sandbox id");
      if (with_ttl && (ttl.empty() || ttl.find_first_not_of("0123456789") != std::string::npos))
        return usage("--ttl takes milliseconds");
      std::string req = "{\"pool\":\"" + pool + "\"" + (id.empty() ? "" : ",\"id\":\"" + id + "\"") +
                        (ttl.empty() ? "" : ",\"ttl_ms\":" + ttl) + "}";
      line = std::string("{\"op\":\"launch\"") + (wait ? ",\"wait\":\"ready\"" : "") + ",\"request\":" + req + "}";
    } else {
      std::string text;
      if (file == "-") text.assign(std::istreambuf_iterator<char>(std::cin), {});
      else if (!sandbox_agent::paths::read_file(file, text, 64 << 20))
        return usage("cannot read " + file + ": " + sandbox_agent::paths::errno_text());
      // One line on the wire: minify; a raw newline left means the file is not JSON.
      std::string flat(text.size(), '\0');
      std::size_t len = 0;
      if (simdjson::minify(text.data(), text.size(), flat.data(), len) || flat.find('\n', 0) < len) {
        std::fprintf(stderr, "invalid_json: %s is not a JSON document\n", file.c_str());
        return 1;
      }
      flat.resize(len);
      if (flat.empty()) flat = "null";
      line = std::string("{\"op\":\"launch\"") + (wait ? ",\"wait\":\"ready\"" : "") + ",\"request\":" + flat + "}";
    }
  } else if (cmd == "status" || cmd == "inspect") {
    if (a.size() != 2) return usage(cmd + " needs one sandbox id");
    line = "{\"op\":\"status\",\"id\":\"" + a[1] + "\"}";
  } else if (cmd == "logs") {
    std::string& source = log_source;
    for (std::size_t i = 1; i < a.size(); ++i) {
      if (a[i] == "-f" || a[i] == "--follow") follow = true;
      else if (a[i] == "--source" && i + 1 < a.size()) source = a[++i];
      else if (a[i].starts_with("--source=")) source = a[i].substr(9);
      else if (!a[i].empty() && a[i][0] != '-' && stop_id.empty()) stop_id = a[i];
      else return usage("unknown logs argument " + a[i]);
    }
    if (stop_id.empty()) return usage("logs needs a sandbox id");
    if (source != "main" && source != "dockerd" && source != "runsc")
      return usage("--source is main, dockerd or runsc");
    line = "{\"op\":\"logs\",\"id\":\"" + stop_id + "\",\"source\":\"" + source + "\"}";
  } else if (cmd == "extend") {
    if (a.size() != 3) return usage("extend needs a sandbox id and milliseconds");
    if (a[2].empty() || a[2].size() > 15 || a[2].find_first_not_of("0123456789") != std::string::npos)
      return usage("extend takes milliseconds");
    stop_id = a[1];
    line = "{\"op\":\"extend\",\"id\":\"" + a[1] + "\",\"ttl_ms\":" + a[2] + "}";
  } else if (cmd == "ps" || cmd == "list") {
    line = "{\"op\":\"list\"}";
  } else if (cmd == "stop") {
    if (!want(2)) return usage("stop needs a sandbox id");
    stop_id = a[1];
    std::string timeout;
    for (std::size_t i = 2; i < a.size(); ++i) {
      if (a[i] == "--wait") wait = true;
      else if (a[i] == "--timeout" && i + 1 < a.size()) timeout = a[++i];
      else if (a[i].starts_with("--timeout=")) timeout = a[i].substr(10);
      else return usage("unknown stop option " + a[i]);
    }
    if (!timeout.empty() && timeout.find_first_not_of("0123456789") != std::string::npos)
      return usage("--timeout takes milliseconds");
    line = "{\"op\":\"stop\",\"id\":\"" + stop_id + "\"" + (timeout.empty() ? "" : ",\"timeout_ms\":" + timeout) + "}";
  } else if (cmd == "watch") {
    line = "{\"op\":\"watch\"}";
  } else if (cmd == "stats") {
    line = "{\"op\":\"stats\"}";
  } else if (cmd == "pools") {
    line = "{\"op\":\"pools\"}";
  } else if (cmd == "metrics") {
    line = "{\"op\":\"metrics\"}";
  } else if (cmd == "version") {
    line = "{\"op\":\"version\"}";
  } else {
    return usage("unknown command " + cmd);
  }
  // Ids go into the line as JSON strings: refuse anything that would need escaping.
  for (char c : stop_id + (cmd == "status" || cmd == "inspect" ? a[1] : std::string()))
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return usage("not a sandbox id");

  Client client;
  if (!client.connect(o.socket)) {
    std::fprintf(stderr, "sandboxctl: cannot connect to %s: %s\n", o.socket.c_str(), std::strerror(errno));
    return 2;
  }
  // stop --wait watches first, so the final event cannot be missed.
  bool sent = !(cmd == "stop" && wait) || client.send("{\"op\":\"watch\"}\n");
  if (!sent || !client.send(line + "\n"))
    if (int rc = sandboxctl::send_failed(client, o.socket)) return rc;  // else the agent's reply (too_large)
  simdjson::dom::parser parser;
  auto read_reply = [&](simdjson::dom::element& out, std::string& raw) {
    return sandboxctl::read_reply(client, parser, out, raw);
  };
  std::string raw;
  simdjson::dom::element reply;
  bool watching = false;
  if (cmd == "stop" && wait) {
    if (int rc = read_reply(reply, raw)) return rc;  // the watch's {"ok":true}
    // Refused (overloaded: limits.max_watchers): the stop was sent all the same, so it is
    // not a failure; the wait below asks for the sandbox's status instead.
    watching = ok(reply);
  }
  // Once watching, any sandbox's events may come before the stop's reply: they are not it.
  do {
    if (int rc = read_reply(reply, raw)) return rc;
  } while (watching && reply["event"].error() == simdjson::SUCCESS);
  if (!ok(reply)) {
    if (o.json) std::puts(raw.c_str());
    return print_error(reply);
  }

  if (cmd == "launch") {
    if (o.json) std::puts(raw.c_str());
    auto state = str(reply, "state");
    if (!wait) {
      if (!o.json) std::printf("%s %s\n", str(reply, "id").c_str(), state.c_str());
      return 0;
    }
    if (!o.json) print_status(member(reply, "sandbox"));
    return state == "ready" ? 0 : 1;
  }
  if (cmd == "status") {
    if (o.json) std::puts(raw.c_str());
    else print_status(member(reply, "sandbox"));
    return 0;
  }
  if (cmd == "inspect") {  // the status object alone, as docker inspect prints its object
    std::puts(simdjson::to_string(member(reply, "sandbox")).c_str());
    return 0;
  }
  if (cmd == "logs") return print_log(client, o, stop_id, log_source, follow);
  if (cmd == "extend") {
    if (o.json) std::puts(raw.c_str());
    else std::printf("%s ttl_deadline %s\n", str(reply, "id").c_str(), str(reply, "ttl_deadline").c_str());
    return 0;
  }
  if (cmd == "ps" || cmd == "list") {
    if (o.json) {
      std::puts(raw.c_str());
      return 0;
    }
    std::printf("%-24s %-9s %-16s %8s  %s\n", "ID", "STATE", "REASON", "READY_MS", "DOCKER_SOCKET");
    simdjson::dom::array all;
    if (!reply["sandboxes"].get_array().get(all))
      for (auto s : all) {
        simdjson::dom::element timings = member(s, "timings");
        std::printf("%-24s %-9s %-16s %8s  %s\n", str(s, "id").c_str(), str(s, "state").c_str(),
                    str(s, "reason").c_str(), num(timings, "ready_ms").c_str(), str(s, "docker_socket").c_str());
      }
    return 0;
  }
  if (cmd == "stop") {
    if (!wait) {
      if (o.json) std::puts(raw.c_str());
      else std::printf("%s %s\n", stop_id.c_str(), str(reply, "state").c_str());
      return 0;
    }
    auto state = str(reply, "state");
    while (watching && state != "stopped" && state != "failed") {
      if (int rc = read_reply(reply, raw)) return rc;
      if (str(reply, "id") == stop_id) state = str(reply, "state");
    }
    // No watch: ask, a few times a second, until it has ended; --json prints the status
    // object (id, state, reason at its top, as in the event).
    while (!watching && state != "stopped" && state != "failed") {
      ::usleep(100000);
      if (!client.send("{\"op\":\"status\",\"id\":\"" + stop_id + "\"}\n"))
        if (int rc = sandboxctl::send_failed(client, o.socket)) return rc;
      if (int rc = read_reply(reply, raw)) return rc;
      if (!ok(reply)) {
        if (o.json) std::puts(raw.c_str());
        return print_error(reply);
      }
      state = str(member(reply, "sandbox"), "state");
      raw = simdjson::to_string(member(reply, "sandbox"));
    }
    if (o.json) std::puts(raw.c_str());
    else std::printf("%s %s\n", stop_id.c_str(), state.c_str());
    return 0;
  }
  if (cmd == "watch") {
    for (;;) {
      if (int rc = read_reply(reply, raw)) return rc;
      if (o.json) {
        std::puts(raw.c_str());
      } else {
        auto reason = str(reply, "reason");
        std::printf("%s %-24s %-9s %s\n", str(reply, "ts").c_str(), str(reply, "id").c_str(),
                    str(reply, "state").c_str(), reason.c_str());
      }
      std::fflush(stdout);
    }
  }
  if (cmd == "pools") {
    if (o.json) {
      std::puts(raw.c_str());
      return 0;
    }
    std::printf("%-24s %5s %6s %8s %7s  %s\n", "POOL", "SIZE", "READY", "WARMING", "FAILED", "LAST ERROR");
    simdjson::dom::array all;
    if (!reply["pools"].get_array().get(all))
      for (auto p : all) {
        auto retry = str(p, "retry_at");
        auto err = str(p, "last_error");
        if (!retry.empty()) err = "(retrying at " + retry + ") " + err;
        std::printf("%-24s %5s %6s %8s %7s  %s\n", str(p, "name").c_str(), num(p, "size").c_str(), num(p, "ready").c_str(),
                    num(p, "warming").c_str(), num(p, "failed_in_a_row").c_str(), err.c_str());
      }
    return 0;
  }
  if (cmd == "metrics") {
    if (o.json) std::puts(raw.c_str());
    else std::fputs(str(reply, "text").c_str(), stdout);
    return 0;
  }
  if (cmd == "stats") {
    if (o.json) {
      std::puts(raw.c_str());
      return 0;
    }
    auto s = member(reply, "stats");
    auto t = member(s, "time_to_ready_ms");
    std::printf("accepted %s  ready %s  failed %s  stopped %s  in flight %s  queued for runsc %s\n",
                num(s, "accepted").c_str(), num(s, "ready").c_str(), num(s, "failed").c_str(),
                num(s, "stopped").c_str(), num(s, "in_flight").c_str(), num(s, "runsc_queued").c_str());
    std::printf("time to ready (ms, last %s): p50 %s  p90 %s  p99 %s  max %s\n", num(t, "samples").c_str(),
                num(t, "p50").c_str(), num(t, "p90").c_str(), num(t, "p99").c_str(), num(t, "max").c_str());
    return 0;
  }
  if (cmd == "version") {
    if (o.json) std::puts(raw.c_str());
    else std::printf("%s\n", str(reply, "version").c_str());
    return 0;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string root;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (!o.args.empty() && o.args[0] == "exec") {  // the command's own words, --json too
      o.args.push_back(a);
      continue;
    }
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (o.args.empty() && a == "--version") {  // the client's own; `version` asks the agent
      std::printf("sandboxctl %s\n", SANDBOX_AGENT_VERSION);
      return 0;
    }
    if (o.args.empty() && (a == "--socket" || a == "--root")) {
      if (i + 1 >= args.size()) return usage(a + " needs a value");
      (a == "--socket" ? o.socket : root) = args[++i];
    } else if (o.args.empty() && a.starts_with("--socket=")) {
      o.socket = a.substr(9);
    } else if (o.args.empty() && a.starts_with("--root=")) {
      root = a.substr(7);
    } else if (a == "--json") {
      o.json = true;
    } else if (o.args.empty() && a.starts_with("--")) {
      return usage("unknown option " + a);
    } else {
      o.args.push_back(a);
    }
  }
  if (o.args.empty()) return usage("no command");
  if (o.socket.empty() && !root.empty()) o.socket = sandbox_agent::paths::join(root, "agent.sock");
  if (o.socket.empty()) {
    const char* env = std::getenv("SANDBOX_AGENT_SOCKET");
    o.socket = env && *env ? env : std::string(sandbox_agent::kDefaultRoot) + "/agent.sock";
  }
  return run(o);
}
