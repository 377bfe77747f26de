// Spawning children (agent/process.hpp): what the child gets (stdio, fd 3, environment,
// signal dispositions, session) and what it does not (the agent's other descriptors).
#include <doctest/doctest.h>

#include <csignal>
#include <fcntl.h>
#include <string>
#include <unistd.h>

#include "process.hpp"
#include "unique_fd.hpp"

using namespace sandbox_agent;

namespace {

template <typename T>
T run_on_reactor(awaitable<T> a) {
  asio::io_context io;
  std::optional<T> out;
  asio::co_spawn(io, [&]() -> awaitable<void> { out = co_await std::move(a); }, asio::detached);
  io.run();
  REQUIRE(out.has_value());
  return std::move(*out);
}

CapturedRun python(const std::string& code) {
  CaptureSpec spec;
  spec.argv = {"/usr/bin/python3", "-c", code};
  return run_on_reactor(run_captured(std::move(spec)));
}

std::string read_all(int fd) {
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

}  // namespace

TEST_CASE("process: a child's output and exit code are captured") {
  CaptureSpec spec;
  spec.argv = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3"};
  auto run = run_on_reactor(run_captured(std::move(spec)));
  CHECK(run.spawn_error.empty());
  CHECK(run.status.code == 3);
  CHECK(run.status.signal == 0);
  CHECK(run.output == "out\nerr\n");
}

TEST_CASE("process: a program that cannot be executed is an error naming it and the reason") {
  auto r = spawn(SpawnSpec{{"/nonexistent/runsc", "state"}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "cannot run /nonexistent/runsc: No such file or directory");
  auto dir = spawn(SpawnSpec{{"/tmp"}});
  REQUIRE_FALSE(dir.ok());
  CHECK(dir.error().message == "cannot run /tmp: Permission denied");
}

TEST_CASE("process: the child gets a clean slate: no inherited descriptors, default signals, own session, given env") {
  // The agent ignores SIGPIPE, blocks nothing, and holds descriptors that are not close-on-exec.
  auto old_pipe = std::signal(SIGPIPE, SIG_IGN);
  int leaked[2];
  REQUIRE(::pipe(leaked) == 0);
  auto fds = python(
      "import os\n"
      "fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
      "leaked = [os.path.exists('/proc/self/fd/%d' % fd) for fd in (" + std::to_string(leaked[0]) + ", " +
      std::to_string(leaked[1]) + ")]\n"
      "print(fds, leaked, os.getsid(0) == os.getpid())\n");
  CaptureSpec sig;
  sig.argv = {"/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"};
  auto signals = run_on_reactor(run_captured(std::move(sig)));
  CaptureSpec env;
  env.argv = {"/usr/bin/env"};
  env.env = {"ONLY=this"};
  auto environment = run_on_reactor(run_captured(std::move(env)));
  std::signal(SIGPIPE, old_pipe);
  ::close(leaked[0]);
  ::close(leaked[1]);
  // fds 0-2 and the one listdir opened; a session of its own.
  CHECK(fds.output == "[0, 1, 2, 3] [False, False] True\n");
  CHECK(signals.output == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
  CHECK(environment.output == "ONLY=this\n");
}

TEST_CASE("process: fd 3 is passed when asked for, and stdio sources below 4 are not clobbered") {
  int out[2], extra[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(extra, O_CLOEXEC) == 0);
  UniqueFd out_r{out[0]}, extra_r{extra[0]}, extra_w{extra[1]};
  // The write end sits at fd 0 while spawning: stdin (/dev/null) is set up first, and would
  // overwrite it if the child did not move low sources out of the way.
  int saved_stdin = ::dup(0);
  REQUIRE(::dup2(out[1], 0) == 0);
  ::close(out[1]);
  SpawnSpec spec{{"/bin/sh", "-c", "echo to-stdout; echo to-fd3 >&3; read x || echo stdin-empty"}};
  spec.stdout_fd = 0;
  spec.fd3 = extra_w.get();
  auto child = spawn(spec);
  ::dup2(saved_stdin, 0);
  ::close(saved_stdin);
  extra_w.reset();
  REQUIRE(child.ok());
  auto status = run_on_reactor(child->wait());
  CHECK(status.ok());
  CHECK(read_all(out_r.get()) == "to-stdout\nstdin-empty\n");
  CHECK(read_all(extra_r.get()) == "to-fd3\n");
}

TEST_CASE("process: a child killed by a signal reports the signal") {
  auto child = spawn(SpawnSpec{{"/bin/sleep", "30"}});
  REQUIRE(child.ok());
  CHECK(child->running());
  child->kill(SIGTERM);
  auto status = run_on_reactor(child->wait());
  CHECK(status.signal == SIGTERM);
  CHECK_FALSE(child->running());
}
