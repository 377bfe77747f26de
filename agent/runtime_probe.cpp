#include "runtime_probe.hpp"

#include <unistd.h>

#include "paths.hpp"
#include "process.hpp"

namespace sandbox_agent {

namespace {

constexpr std::size_t kMaxOutput = 1 << 20;

struct Captured {
  bool ok = false;  // exited 0 within the deadline
  std::string output;  // stdout and stderr together (runsc prints `flags` on stderr)
  std::string error;
};

// Runs argv to completion, collecting what it prints; killed past `timeout`.
awaitable<Captured> capture(std::vector<std::string> argv, Millis timeout) {
  CaptureSpec spec;
  spec.argv = argv;
  spec.timeout = timeout;
  spec.max_output = kMaxOutput;
  auto run = co_await run_captured(std::move(spec));
  Captured c;
  c.ok = run.ok();
  c.output = std::move(run.output);
  if (!c.ok) c.error = run.spawn_error.empty() ? run.describe(argv[0], timeout) : run.spawn_error;
  co_return c;
}

// The host's dockerd (what images that bind the host's /usr run), or empty.
std::string host_dockerd(const std::string& configured) {
  if (configured.starts_with('/')) return ::access(configured.c_str(), X_OK) == 0 ? configured : "";
  for (const char* dir : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"}) {
    auto p = paths::join(dir, configured);
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

}  // namespace

awaitable<RuntimeInfo> probe_runtime(const Config& config) {
  // Each argv built outside the co_await: g++ 12 miscompiles braced lists of string
  // literals inside a coroutine's co_await expression ("array used as initializer").
  using Argv = std::vector<std::string>;
  RuntimeProbeOutput out;
  const std::string& runsc = config.runsc.path;
  Millis deadline{std::min<unsigned>(config.runsc.timeout_ms, 10000)};
  Argv version_argv{runsc, std::string("--version")};
  auto version = co_await capture(std::move(version_argv), deadline);
  if (version.ok) {
    out.ran = true;
    out.version_text = version.output;
    Argv flags_argv{runsc, std::string("flags")};
    out.flags_text = (co_await capture(std::move(flags_argv), deadline)).output;
    Argv platforms_argv{runsc, std::string("help"), std::string("platforms")};
    out.platforms_text = (co_await capture(std::move(platforms_argv), deadline)).output;
  } else {
    out.error = version.error;
  }
  if (auto dockerd = host_dockerd(config.docker.dockerd_path); !dockerd.empty()) {
    Argv dockerd_argv{dockerd, std::string("--version")};
    out.dockerd_version_text = (co_await capture(std::move(dockerd_argv), deadline)).output;
  }
  co_return describe_runtime(out, config.runsc);
}

RuntimeInfo probe_runtime_now(const Config& config) {
  asio::io_context io(1);
  RuntimeInfo info;
  asio::co_spawn(io, [&]() -> awaitable<void> { info = co_await probe_runtime(config); }, asio::detached);
  io.run();
  return info;
}

}  // namespace sandbox_agent
