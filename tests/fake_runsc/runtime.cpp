#include "runtime.hpp"

#include <signal.h>

#include <cstdlib>

#include <array>
#include <cctype>
#include <charconv>
#include <vector>

#include "args.hpp"
#include "files.hpp"
#include "output.hpp"

namespace fake_runsc {
namespace {

constexpr int kExitFailure = 1;  // what the directives and duplicate ids give
constexpr int kExitUsage = 2;    // runsc's subcommands.ExitUsageError
constexpr int kExitFatal = 128;  // runsc's util.Fatalf
constexpr std::string_view kNotExist = "file does not exist";

bool valid_id(std::string_view id) {
  if (id.empty()) return false;
  for (const char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '+' && c != '.' &&
        c != '-')
      return false;
  return true;
}

// "TERM", "SIGTERM", "sigterm" or "15". Returns -1 when invalid.
int parse_signal(std::string_view s) {
  static constexpr std::array<std::string_view, 32> kNames = {
      "",     "HUP",  "INT",  "QUIT", "ILL",    "TRAP",   "ABRT",  "BUS",  "FPE",  "KILL", "USR1",
      "SEGV", "USR2", "PIPE", "ALRM", "TERM",   "STKFLT", "CHLD",  "CONT", "STOP", "TSTP", "TTIN",
      "TTOU", "URG",  "XCPU", "XFSZ", "VTALRM", "PROF",   "WINCH", "IO",   "PWR",  "SYS"};
  int n = -1;
  if (auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      ec == std::errc{} && end == s.data() + s.size())
    return n >= 0 && n < 65 ? n : -1;
  std::string upper;
  for (const char c : s) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string_view name = upper;
  if (name.starts_with("SIG")) name.remove_prefix(3);
  for (size_t i = 1; i < kNames.size(); ++i)
    if (kNames[i] == name) return static_cast<int>(i);
  return -1;
}

Reply usage(std::string_view text) {
  return Reply::fail(kExitUsage, "usage: " + std::string(text));
}

}  // namespace

Runtime::Runtime(std::string root, EventLoop* loop, int sandbox_pid, PlanLoader load_plan)
    : root_(std::move(root)), loop_(loop), pid_(sandbox_pid), load_plan_(load_plan) {}

Runtime::~Runtime() = default;

Reply Runtime::execute(const Request& req) {
  std::vector<std::string_view> argv(req.args.begin(), req.args.end());
  const GlobalArgs g = parse_globals(argv);
  if (!g.error.empty()) return Reply::fail(kExitUsage, g.error);
  const Args args(g.rest);
  if (g.command == "create") return create(req, args);
  if (g.command == "start") return start(args);
  if (g.command == "run") return run(req, args);
  if (g.command == "state") return state(args);
  if (g.command == "kill") return kill(args);
  if (g.command == "exec") return exec(args);
  if (g.command == "delete") return remove(args);
  if (g.command == "list") return list(args);
  return Reply::fail(kExitUsage, "fake-runsc: unsupported command \"" + g.command + "\"");
}

Container* Runtime::find(std::string_view id, std::string_view error_prefix, Reply& error) {
  if (id.empty()) {
    error = Reply::fail(kExitFatal, std::string(error_prefix) + std::string(kNotExist));
    return nullptr;
  }
  auto it = table_.lower_bound(id);
  Container* match = nullptr;
  for (; it != table_.end() && it->first.starts_with(id); ++it) {
    if (match) {
      error = Reply::fail(kExitFatal, std::string(error_prefix) + "id " + json_quote(id) +
                                          " is ambiguous and could refer to multiple containers: " +
                                          json_quote(match->id) + ", " + json_quote(it->first));
      return nullptr;
    }
    match = it->second.get();
  }
  if (!match) {
    error = Reply::fail(kExitFatal, std::string(error_prefix) + std::string(kNotExist));
    return nullptr;
  }
  return match;
}

namespace {
constexpr std::string_view kCreateValued[] = {"bundle", "b", "pid-file", "console-socket", "user-log"};
}

Reply Runtime::create(const Request& req, Args raw) {
  const CommandArgs a = parse_command(raw, kCreateValued);
  if (!a.error.empty()) return Reply::fail(kExitUsage, a.error);
  if (a.positional.size() != 1) return usage("create [flags] <container id>");
  const std::string_view id = a.positional[0];
  if (!valid_id(id))
    return Reply::fail(kExitFatal, "creating container: invalid container ID: " + std::string(id));
  if (table_.contains(id))
    return Reply::fail(kExitFailure, "container with id " + std::string(id) + " already exists");
  if (!loop_ || !load_plan_) return Reply::fail(kExitFatal, "fake-runsc: create needs the daemon");

  const auto* bundle_flag = a.find("bundle") ? a.find("bundle") : a.find("b");
  const std::string bundle = absolute_path(req.cwd, bundle_flag ? bundle_flag->value : ".");
  std::string err;
  auto plan = load_plan_(bundle, err);
  if (!plan) return Reply::fail(err.starts_with("fake-runsc") ? kExitFailure : kExitFatal, err);
  if (plan->d.create_fail)
    return Reply::fail(kExitFailure, "creating container: fake-runsc: create=fail directive");
  if (plan->d.create_hang) return Reply::hang_forever();

  auto c = std::make_unique<Container>();
  c->id = std::string(id);
  c->bundle = bundle;
  c->serial = next_serial_++;
  c->created_unix_ns = unix_now_ns();
  c->plan = std::move(*plan);
  if (const auto* pid_file = a.find("pid-file")) {
    if (!write_file(absolute_path(req.cwd, pid_file->value), std::to_string(pid_), &err))
      return Reply::fail(kExitFatal, "creating container: " + err);
  }
  by_serial_.emplace(c->serial, c.get());
  table_.emplace(c->id, std::move(c));
  return {};
}

Reply Runtime::start(Args raw) {
  const CommandArgs a = parse_command(raw, {});
  if (a.positional.size() != 1) return usage("start <container id>");
  Reply r;
  Container* c = find(a.positional[0], "loading container: ", r);
  if (!c) return r;
  if (c->status != Status::created)
    return Reply::fail(kExitFatal, "starting container: cannot start container " +
                                       json_quote(c->id) + " in state " + status_name(c->status));
  return start_created(*c, false);
}

// What start does to a created container, for `start` and `run`'s start half. `destroy`: a
// failed start takes the container away, as runsc's Run does (`start` leaves it stopped).
Reply Runtime::start_created(Container& c, bool destroy) {
  if (c.plan.d.start_hang) return Reply::hang_forever();
  if (c.plan.d.start_fail) {
    stop(c);
    if (destroy) forget(c);
    return Reply::fail(kExitFailure, "starting container: fake-runsc: start=fail directive");
  }
  begin_running(c);
  Reply done;
  done.delay_ms = c.plan.d.start_delay_ms;
  return done;
}

// `run --detach`: create, then start, in one call. As runsc's Run, a start that fails takes
// the container away (runsc destroys it: a later delete finds nothing). Without --detach
// runsc would wait for the container to exit: not faked.
Reply Runtime::run(const Request& req, Args raw) {
  const CommandArgs a = parse_command(raw, kCreateValued);
  if (!a.error.empty()) return Reply::fail(kExitUsage, a.error);
  const auto* detach = a.find("detach");
  if (!detach || detach->value == "false")
    return Reply::fail(kExitUsage, "fake-runsc: run is faked with --detach only");
  if (a.positional.size() != 1) return usage("run [flags] <container id>");
  Reply r = create(req, raw);  // its errors say "creating container: …", as runsc's do
  if (r.code != 0 || r.hang) return r;
  Container* c = find(a.positional[0], "loading container: ", r);
  if (!c) return r;
  return start_created(*c, true);
}

Reply Runtime::state(Args raw) {
  const CommandArgs a = parse_command(raw, {});
  if (a.positional.size() != 1) return usage("state [flags] <container id>");
  Reply r;
  const Container* c = find(a.positional[0], "loading container: ", r);
  if (!c) return r;
  if (c->plan.d.state_fail)
    return Reply::fail(kExitFailure, "getting state: fake-runsc: state=fail directive");
  r.out =
      state_json_pretty({c->id, status_name(c->status), pid_of(*c), c->bundle, c->created_unix_ns});
  return r;
}

Reply Runtime::kill(Args raw) {
  static constexpr std::string_view kValued[] = {"pid"};
  const CommandArgs a = parse_command(raw, kValued);
  if (!a.error.empty()) return Reply::fail(kExitUsage, a.error);
  if (a.positional.empty() || a.positional.size() > 2) return usage("kill <container id> [signal]");
  Reply r;
  Container* c = find(a.positional[0], "loading container: ", r);
  if (!c) return r;
  const std::string_view name = a.positional.size() == 2 ? a.positional[1] : "TERM";
  const int sig = parse_signal(name);
  if (sig < 0)
    return Reply::fail(kExitFatal, "parsing signal \"" + std::string(name) + "\": invalid signal");
  if (const auto* pid = a.find("pid")) {  // a process a fake exec started: a host pid
    const long n = std::strtol(std::string(pid->value).c_str(), nullptr, 10);
    if (n <= 0 || ::kill(static_cast<pid_t>(n), sig) != 0)
      return Reply::fail(kExitFatal, "failed to signal pid " + std::string(pid->value) + ": no such process");
    return {};
  }
  if (c->status == Status::stopped) return Reply::fail(kExitFatal, "sandbox is not running");
  send_signal(*c, sig);
  return {};
}

// The daemon's half of exec: the container must be running; the reply is the host paths
// of the cwd and the command (through the spec's mounts), NUL-separated. The CLI runs it.
Reply Runtime::exec(Args raw) {
  static constexpr std::string_view kValued[] = {"cwd", "user", "env", "internal-pid-file", "pid-file"};
  const CommandArgs a = parse_command(raw, kValued);
  if (!a.error.empty()) return Reply::fail(kExitUsage, a.error);
  if (a.positional.size() < 2) return usage("exec [flags] <container id> <command>");
  Reply r;
  Container* c = find(a.positional[0], "loading container: ", r);
  if (!c) return r;
  if (c->status != Status::running)
    return Reply::fail(kExitFatal, "executing processes for container: container is not running");
  const auto* cwd = a.find("cwd");
  r.out = exec_host_path(c->plan, cwd ? cwd->value : std::string_view("/"));
  for (std::size_t i = 1; i < a.positional.size(); ++i) {
    r.out += '\0';
    r.out += exec_host_path(c->plan, a.positional[i]);
  }
  return r;
}

Reply Runtime::remove(Args raw) {
  const CommandArgs a = parse_command(raw, {});
  if (a.positional.empty()) return usage("delete [flags] <container ids>");
  const bool force = a.has("force") && a.find("force")->value != "false";
  for (const std::string_view id : a.positional) {
    Reply r;
    Container* c = find(id, "loading container \"" + std::string(id) + "\": ", r);
    if (!c) return r;
    if (c->plan.d.delete_hang) return Reply::hang_forever();
    if (c->status == Status::running && !force)
      return Reply::fail(
          kExitFatal,
          "deleting container: cannot delete container that is not stopped without --force flag");
    if (c->status != Status::stopped) stop(*c);
    forget(*c);
  }
  return {};
}

Reply Runtime::list(Args raw) {
  static constexpr std::string_view kValued[] = {"format"};
  const CommandArgs a = parse_command(raw, kValued);
  if (!a.error.empty()) return Reply::fail(kExitUsage, a.error);
  const auto* format = a.find("format");
  const std::string_view fmt = format ? format->value : "text";
  if (fmt != "text" && fmt != "json") return Reply::fail(kExitFatal, "invalid format option");
  std::vector<StateView> states;
  states.reserve(table_.size());
  for (const auto& [id, c] : table_)
    states.push_back({id, status_name(c->status), pid_of(*c), c->bundle, c->created_unix_ns});
  Reply r;
  if (a.has("quiet") || a.has("q")) {
    for (const auto& s : states) r.out.append(s.id).push_back('\n');
  } else {
    r.out = fmt == "json" ? list_json(states) : list_table(states);
  }
  return r;
}

}  // namespace fake_runsc
