#include "runtime_probe.hpp"

#include <asio/posix/stream_descriptor.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <memory>

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
  Captured c;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    c.error = "pipe: " + paths::errno_text();
    co_return c;
  }
  auto child = spawn(SpawnSpec{argv, fds[1], fds[1]});
  ::close(fds[1]);
  if (!child) {
    ::close(fds[0]);
    c.error = child.error().message;
    co_return c;
  }
  auto ex = co_await asio::this_coro::executor;
  auto proc = std::make_shared<Child>(std::move(child.value()));
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer deadline(ex, timeout);
  deadline.async_wait([proc, timed_out](std::error_code ec) {
    if (!ec) {
      *timed_out = true;
      proc->kill(SIGKILL);
    }
  });
  asio::posix::stream_descriptor out(ex, fds[0]);
  char buf[8192];
  for (;;) {
    auto [ec, n] = co_await out.async_read_some(asio::buffer(buf), use_nothrow);
    if (ec) break;
    if (c.output.size() + n <= kMaxOutput) c.output.append(buf, n);
  }
  auto status = co_await proc->wait();
  deadline.cancel();
  c.ok = status.ok() && !*timed_out;
  if (*timed_out) c.error = argv[0] + " did not answer within " + std::to_string(timeout.count()) + " ms";
  else if (!status.ok()) c.error = argv[0] + ": " + status.describe();
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
