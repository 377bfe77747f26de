// Embedding sandbox-agent in an edge program (docs/embedding.md).
//
// Runs the agent on this program's own io_context — no socket, no spool — launches one
// Docker sandbox through the API, prints every state change, stops the sandbox once it is
// ready, and exits 0 once it is stopped (1 if it failed, 2 on a usage or start error).
//
//   embed_example ROOT ROOTFS [RUNSC]
//
// ROOT is the agent's root (created if needed); ROOTFS a directory under ROOT/images or
// /srv/images (the default allowed_host_prefixes); RUNSC defaults to /usr/bin/runsc.
//
// Build: link the `sandbox_agent` CMake target, which carries the include directories and the
// Asio io_uring definitions this file must be compiled with (see docs/embedding.md).
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>

#include "sandbox_agent/agent.hpp"

namespace sa = sandbox_agent;

int main(int argc, char** argv) {
  // This program also serves as the agent's spawn helper (AgentOptions::spawn_helper below):
  // started that way, it does only that.
  if (int rc = sa::spawn_helper_main(argc, argv); rc >= 0) return rc;
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: embed_example ROOT ROOTFS [RUNSC]\n");
    return 2;
  }

  // The configuration: defaults, then what this program wants. The same validation as the
  // daemon's --config file; errors name the field.
  sa::ConfigOverrides overrides;
  overrides.root = argv[1];
  if (argc == 4) overrides.runsc = argv[3];
  auto config = sa::load_config("", overrides);
  if (!config) {
    std::fprintf(stderr, "embed_example: bad configuration: %s\n", config.error().describe().c_str());
    return 2;
  }

  // A peer that hangs up (a probe's dockerd, a socket client) is an error code, not a signal.
  std::signal(SIGPIPE, SIG_IGN);

  // One io_context, run by this thread only: every Agent call and every callback below
  // happens on it (call the Agent from other threads through asio::post).
  asio::io_context io(1);
  sa::Agent agent(io, std::move(config.value()), sa::AgentOptions{.socket = false, .spool = false, .inherited_socket = -1,
                                                                           .spawn_helper = "/proc/self/exe"});

  int exit_code = 1;
  bool finishing = false;
  const std::string id = "embed-example";
  asio::steady_timer deadline(io, std::chrono::seconds(60));
  auto finish = [&](int code) {
    if (finishing) return;
    finishing = true;
    exit_code = code;
    deadline.cancel();
    // Posted, not called from inside the event handler: the agent records a transition right
    // after publishing it, and shutdown() waits only for the records already queued.
    // Sandboxes still running are left for the next start to adopt (unless
    // stop_sandboxes_on_exit); ours is stopped by now.
    asio::post(io, [&] { agent.shutdown([&] { io.stop(); }); });
  };

  // Every state change of every sandbox, in order, with the sandbox's status.
  agent.subscribe([&](const sa::StateEvent& e, const sa::SandboxStatus& s) {
    std::printf("event %s %s%s%s\n", e.id.c_str(), std::string(sa::to_string(e.state)).c_str(),
                e.reason.empty() ? "" : " ", e.reason.c_str());
    std::fflush(stdout);
    if (e.id != id) return;
    if (e.state == sa::SandboxState::ready) {
      std::printf("ready: docker -H unix://%s (%lld ms)\n", s.docker_socket.c_str(),
                  static_cast<long long>(s.timings.ready_ms.value_or(-1)));
      if (auto r = agent.stop(id, 5000); !r)
        std::fprintf(stderr, "embed_example: stop: %s\n", r.error().describe().c_str());
    } else if (e.state == sa::SandboxState::stopped) {
      finish(0);
    } else if (e.state == sa::SandboxState::failed) {
      std::fprintf(stderr, "embed_example: %s failed (%s): %s\n", id.c_str(), s.reason.c_str(), s.log_tail.c_str());
      finish(1);
    }
  });

  // Creates the layout, recovers sandboxes from ROOT/state, then calls back.
  agent.start([&](const sa::Status& started) {
    if (!started) {
      std::fprintf(stderr, "embed_example: cannot start: %s\n", started.error().describe().c_str());
      exit_code = 2;
      io.stop();
      return;
    }
    sa::LaunchRequest request;
    request.id = id;
    request.rootfs = argv[2];
    request.args = {"/bin/sleep", "infinity"};
    request.docker.enabled = true;
    request.labels = {{"origin", "embed_example"}};
    // Validated and checked against allowed_host_prefixes like a socket or spool request.
    agent.launch(std::move(request), [&](sa::Result<std::string> launched) {
      if (!launched) {
        std::fprintf(stderr, "embed_example: launch: %s\n", launched.error().describe().c_str());
        finish(1);
        return;
      }
      std::printf("accepted %s\n", launched->c_str());
      std::fflush(stdout);
    });
  });

  deadline.async_wait([&](std::error_code ec) {
    if (ec) return;
    std::fprintf(stderr, "embed_example: no result within 60 s\n");
    finish(1);
  });
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code ec, int) {
    if (!ec) finish(1);
  });

  io.run();
  return exit_code;
}
