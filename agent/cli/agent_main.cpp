// sandbox-agent: the daemon's command line. Thin: flags → Config → Agent on one io_context.
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include "log.hpp"
#include "paths.hpp"
#include "sandbox_agent/agent.hpp"
#include "sandbox_agent/spec.hpp"
#include "runtime_probe.hpp"
#include "sd_notify.hpp"

using namespace sandbox_agent;

namespace {

constexpr const char* kUsage = R"(usage: sandbox-agent [options]
       sandbox-agent [--config FILE] render REQUEST.json

Launches gVisor sandboxes (optionally with Docker inside) on request and reports when each
is ready. Requests arrive on a Unix socket (sandboxctl) and as files in a spool directory.

options:
  --root DIR               everything under DIR (default /var/lib/sandbox-agent)
  --config FILE            JSON configuration (see docs/configuration.md)
  --socket PATH            the Unix socket (default ROOT/agent.sock)
  --spool DIR              the spool directory (default ROOT/spool)
  --runsc PATH             the runsc binary (default /usr/local/lib/sandbox-agent/runsc,
                           built by scripts/install-deps, else /usr/bin/runsc)
  --log-level LEVEL        trace, debug, info, warn, error, critical, off (default info)
  --stop-sandboxes-on-exit stop every sandbox when the agent exits (default: leave them
                           running; the next start adopts them)
  --check-config           validate the configuration, ask runsc what it can do, print
                           both, exit
  --version                print the version
  --help                   this text

commands:
  render REQUEST.json      print the OCI spec (config.json) the request would get; "-" reads
                           stdin. Exit 0, or 1 with the request's error.
)";

struct Args {
  std::string config_file;
  ConfigOverrides overrides;
  bool check_config = false;
  std::string render;  // request file for `render`
  bool has_render = false;
};

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "sandbox-agent: %s\n(see sandbox-agent --help)\n", msg.c_str());
  return 2;
}

// Returns -1 to continue, else an exit code.
int parse_args(int argc, char** argv, Args& a) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i], value;
    bool has_value = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto need = [&](std::string& out) -> bool {
      if (has_value) {
        out = value;
      } else {
        if (i + 1 >= args.size()) return false;
        out = args[++i];
      }
      return !out.empty();
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--version") {
      std::printf("sandbox-agent %s\n", SANDBOX_AGENT_VERSION);
      return 0;
    }
    if (arg == "--check-config") { a.check_config = true; continue; }
    if (arg == "--stop-sandboxes-on-exit") { a.overrides.stop_sandboxes_on_exit = 1; continue; }
    std::string* target = nullptr;
    if (arg == "--config") target = &a.config_file;
    else if (arg == "--root") target = &a.overrides.root;
    else if (arg == "--socket") target = &a.overrides.socket;
    else if (arg == "--spool") target = &a.overrides.spool;
    else if (arg == "--runsc") target = &a.overrides.runsc;
    else if (arg == "--log-level") target = &a.overrides.log_level;
    if (target) {
      if (!need(*target)) return usage_error(arg + " needs a value");
      continue;
    }
    if (arg == "render" && !a.has_render) {
      if (i + 1 >= args.size()) return usage_error("render needs a request file (or -)");
      a.render = args[++i];
      a.has_render = true;
      continue;
    }
    return usage_error("unknown argument: " + args[i]);
  }
  return -1;
}

int config_error(const std::string& file, const Error& e) {
  std::fprintf(stderr, "sandbox-agent: bad configuration %s: %s%s%s\n",
               file.empty() ? "(flags)" : file.c_str(), e.field.c_str(), e.field.empty() ? "" : ": ",
               e.message.c_str());
  return 2;
}

int render(const Config& config, const std::string& file) {
  std::string text;
  if (file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else if (!paths::read_file(file, text, config.limits.max_request_bytes + 1)) {
    std::fprintf(stderr, "sandbox-agent: cannot read %s: %s\n", file.c_str(), paths::errno_text().c_str());
    return 1;
  }
  auto request = parse_launch_request(text, config.request_policy());
  if (!request) {
    std::fprintf(stderr, "%s\n", request.error().describe().c_str());
    return 1;
  }
  if (request->id.empty()) request->id = "render-preview";
  // The Docker profile depends on what the runtime can do: ask it, as the agent would.
  auto runtime = request->docker.enabled ? probe_runtime_now(config) : RuntimeInfo{};
  SpecContext ctx{config.sandbox_init, paths::join(paths::join(config.root, "sockets"), request->id),
                  paths::join(paths::join(config.root, "logs"), request->id), config.docker.dockerd_path,
                  runtime.dockerd_flags, {}, {}, config.docker.containerd_path};
  std::fputs(render_spec(*request, ctx).c_str(), stdout);
  return 0;
}

void print_config(const Config& c) {
  std::printf("configuration is valid\n");
  std::printf("  root            %s\n  socket          %s (mode %04o)\n  spool           %s\n",
              c.root.c_str(), c.socket.path.c_str(), c.socket.mode, c.spool.c_str());
  std::printf("  runsc           %s (at most %u at once, %u ms deadline, launch: %s)\n", c.runsc.path.c_str(),
              c.runsc_concurrency(), c.runsc.timeout_ms,
              c.runsc.one_call_launch() ? "run --detach" : "create, then start");
  auto runtime = probe_runtime_now(c);
  std::printf("  %s\n", runtime.summary().c_str());
  for (const auto& w : runtime.warnings) std::printf("  WARNING: %s\n", w.c_str());
  std::printf("  sandbox-init    %s%s\n", c.sandbox_init.c_str(),
              ::access(c.sandbox_init.c_str(), X_OK) == 0 ? "" : "  (WARNING: not found or not executable)");
  std::printf("  allowed host prefixes:");
  for (const auto& p : c.allowed_host_prefixes) std::printf(" %s", p.c_str());
  std::printf("\n");
  std::printf("  metrics         %s\n", c.metrics.listen.empty() ? "off (metrics.listen)" : c.metrics.listen.c_str());
}

// systemd socket activation: LISTEN_PID/LISTEN_FDS name our inherited listening socket (fd 3).
int inherited_socket() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (!pid || !fds || std::atoi(pid) != ::getpid() || std::atoi(fds) < 1) return -1;
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = sandbox_agent::spawn_helper_main(argc, argv); rc >= 0) return rc;  // the agent's own child
  Args args;
  if (int rc = parse_args(argc, argv, args); rc >= 0) return rc;
  auto loaded = load_config(args.config_file, args.overrides);
  if (!loaded) return config_error(args.config_file, loaded.error());
  Config config = std::move(loaded.value());
  if (args.check_config) {
    print_config(config);
    return 0;
  }
  if (args.has_render) return render(config, args.render);
  // Every launch would fail without it (runsc: "cannot read client sync file"): say so now.
  if (::access(config.sandbox_init.c_str(), X_OK) != 0)
    return config_error(args.config_file, make_error(ErrorCode::invalid_request,
                                                     config.sandbox_init + " is missing or not executable (" +
                                                         paths::errno_text() + "); build or install sandbox-init, or set it",
                                                     "/sandbox_init"));
  if (!log::setup(config.log_level)) return usage_error("unknown log level " + config.log_level);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up is an error code, not a signal

  asio::io_context io(1);  // one thread, one ring
  AgentOptions options;
  options.inherited_socket = inherited_socket();
  options.spawn_helper = "/proc/self/exe";  // this very binary, even if replaced on disk since
  Agent agent(io, config, options);
  SdNotify notify(io.get_executor());
  int exit_code = 0;

  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  bool stopping = false;
  std::function<void(std::error_code, int)> on_signal = [&](std::error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      // Only the log level is reloaded; everything else needs a restart (docs/operations.md).
      auto again = load_config(args.config_file, args.overrides);
      if (!again) {
        spdlog::warn("SIGHUP: configuration not reloaded: {}", again.error().describe());
      } else {
        // Said before the change, at a level that is shown either side of it.
        spdlog::warn("SIGHUP: log level is now {}", again->log_level);
        log::set_level(again->log_level);
      }
      signals.async_wait(on_signal);
      return;
    }
    if (stopping) {
      // Every record is already durable (intent first), so nothing is lost by skipping the
      // orderly end; tearing the io_context down mid-shutdown is what Asio 1.22 cannot do.
      spdlog::warn("second {}: exiting now", ::strsignal(sig));
      spdlog::shutdown();
      std::_Exit(1);
    }
    stopping = true;
    spdlog::info("{}: shutting down ({})", ::strsignal(sig),
                 config.stop_sandboxes_on_exit ? "stopping every sandbox" : "sandboxes keep running");
    notify.stopping();
    agent.shutdown([&] {
      spdlog::info("stopped");
      io.stop();
    });
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);

  spdlog::info("sandbox-agent {} starting: root {}", SANDBOX_AGENT_VERSION, config.root);
  agent.start([&](const Status& s) {
    if (!s) {
      spdlog::critical("cannot start: {}", s.error().message);
      exit_code = 1;
      // Whatever start-up set going (recovery's sandboxes) ends the orderly way: tearing the
      // io_context down under coroutines in flight is what Asio 1.22 cannot do.
      stopping = true;
      agent.shutdown([&] { io.stop(); });
      return;
    }
    spdlog::info("ready");
    notify.ready([&agent] {
      auto st = agent.stats();
      return "in flight " + std::to_string(st.in_flight) + ", ready " + std::to_string(st.ready) +
             ", failed " + std::to_string(st.failed) + ", clients " + std::to_string(agent.connections());
    });
  });
  io.run();
  return exit_code;
}
