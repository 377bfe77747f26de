// The spawn helper (agent/spawn_helper.hpp): runsc calls forked, exec'd and reaped by a helper
// process. This test binary is its own helper (tests/unit/main.cpp), as the daemon is.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "spawn_helper.hpp"
#include "unique_fd.hpp"

using namespace sandbox_agent;

namespace {

// Runs `body` on a fresh reactor with a started helper; fails the test if it does not start.
template <typename Body>
void with_helper(Body body) {
  asio::io_context io;
  SpawnHelper helper(io.get_executor());
  // A helper that died would otherwise end this whole test binary (the agent's default exits).
  helper.on_lost([&](const std::string& why) {
    FAIL_CHECK("the helper died: " << why);
    io.stop();
  });
  bool done = false;
  asio::co_spawn(io, [&]() -> awaitable<void> {
    auto up = co_await helper.start("/proc/self/exe");
    if (!up.ok()) FAIL("the helper did not start: " << up.error().message);
    co_await body(helper);
    done = true;
    io.stop();  // the helper's reader would wait on
  }, asio::detached);
  io.run();
  CHECK(done);
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

// A `sleep 30` started by the helper, once it has said its pid (it execs sleep in place).
std::pair<Child, pid_t> sleeper_saying_its_pid(SpawnHelper& helper) {
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  UniqueFd out_r{out[0]}, out_w{out[1]};
  auto child = helper.spawn(SpawnSpec{{"/bin/sh", "-c", "echo $$; exec /bin/sleep 30"}, out_w.get()});
  out_w.reset();
  REQUIRE(child.ok());
  char buf[32] = {};
  REQUIRE(::read(out_r.get(), buf, sizeof buf - 1) > 0);
  pid_t pid = std::atoi(buf);
  REQUIRE(pid > 0);
  return {std::move(child.value()), pid};
}

bool gone_within(pid_t pid, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

TEST_CASE("spawn helper: the child gets its stdio, fd 3 and environment, a session of its own, default signals, "
          "nothing else; its exit code comes back") {
  with_helper([](SpawnHelper& helper) -> awaitable<void> {
    int out[2], extra[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(extra, O_CLOEXEC) == 0);
    UniqueFd out_r{out[0]}, out_w{out[1]}, extra_r{extra[0]}, extra_w{extra[1]};
    std::vector<std::string> env{"ONLY=this"};
    SpawnSpec spec{{"/bin/sh", "-c",
                    // Read by the shell itself: a command it forks would read it while the
                    // shell blocks every signal around its vfork (dash does).
                    "while read -r k v; do case $k in SigBlk:|SigIgn:) printf '%s\\t%s\\n' $k $v;; esac;"
                    "done < /proc/$$/status;"
                    "echo \"$ONLY\" $(cut -d' ' -f6 /proc/$$/stat); echo $$; printf fd3 >&3; exit 7"},
                   out_w.get(), out_w.get()};
    spec.fd3 = extra_w.get();
    spec.env = &env;
    auto child = helper.spawn(spec);
    out_w.reset();
    extra_w.reset();
    REQUIRE(child.ok());
    CHECK(child->running());
    auto status = co_await child->wait();
    CHECK(status.code == 7);
    CHECK(status.signal == 0);
    CHECK(status.exec_errno == 0);
    CHECK_FALSE(child->running());
    // Nothing blocked or ignored; the environment given; its own session (the session id,
    // field 6 of stat, is its pid).
    auto text = read_all(out_r.get());
    auto last = text.rfind('\n', text.size() - 2);
    std::string pid = text.substr(last + 1, text.size() - last - 2);
    CHECK(text == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nthis " + pid + "\n" + pid + "\n");
    CHECK(read_all(extra_r.get()) == "fd3");

    // Descriptors: 0-3 as given and none of the agent's or the helper's (4 is ls's own).
    int listing[2];
    REQUIRE(::pipe2(listing, O_CLOEXEC) == 0);
    UniqueFd list_r{listing[0]}, list_w{listing[1]};
    SpawnSpec ls{{"/bin/ls", "/proc/self/fd"}, list_w.get()};
    ls.fd3 = list_w.get();
    auto lister = helper.spawn(ls);
    list_w.reset();
    REQUIRE(lister.ok());
    CHECK((co_await lister->wait()).ok());
    CHECK(read_all(list_r.get()) == "0\n1\n2\n3\n4\n");
  });
}

TEST_CASE("spawn helper: a program that cannot be executed ends with its errno, exit code 127") {
  with_helper([](SpawnHelper& helper) -> awaitable<void> {
    auto child = helper.spawn(SpawnSpec{{"/nonexistent/runsc", "state"}});
    REQUIRE(child.ok());
    auto status = co_await child->wait();
    CHECK(status.exec_errno == ENOENT);
    CHECK(status.code == 127);
    CHECK(status.describe() == "could not be executed: No such file or directory");
  });
}

TEST_CASE("spawn helper: kill reaches the child; a Child dropped before its end is killed") {
  with_helper([](SpawnHelper& helper) -> awaitable<void> {
    auto child = helper.spawn(SpawnSpec{{"/bin/sleep", "30"}});
    REQUIRE(child.ok());
    child->kill(SIGTERM);
    auto status = co_await child->wait();
    CHECK(status.signal == SIGTERM);

    auto [dropped, pid] = sleeper_saying_its_pid(helper);
    { Child gone = std::move(dropped); }
    // The helper kills and reaps it (a zombie would still answer kill(pid, 0)).
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (int i = 0; i < 300 && ::kill(pid, 0) == 0; ++i) {
      t.expires_after(Millis(10));
      co_await t.async_wait(use_nothrow);
    }
    CHECK(::kill(pid, 0) == -1);
  });
}

TEST_CASE("spawn helper: a call it cannot take is refused at once (the caller forks it), and it serves on") {
  with_helper([](SpawnHelper& helper) -> awaitable<void> {
    auto huge = helper.spawn(SpawnSpec{{"/bin/echo", std::string(300 * 1024, 'x')}});
    REQUIRE_FALSE(huge.ok());
    CHECK(huge.error().message == "spawn helper: request too large");
    auto child = helper.spawn(SpawnSpec{{"/bin/true"}});
    REQUIRE(child.ok());
    CHECK((co_await child->wait()).ok());
  });
}

TEST_CASE("spawn helper: with its socket full, calls are refused at once and a kill is sent once there is room") {
  with_helper([](SpawnHelper& helper) -> awaitable<void> {
    auto [sleeper, sleeper_pid] = sleeper_saying_its_pid(helper);
    // A stopped helper reads nothing: calls pile up in the socket until it takes no more.
    REQUIRE(::kill(helper.pid(), SIGSTOP) == 0);
    std::vector<Child> queued;
    std::optional<std::string> refused;
    while (!refused && queued.size() < 100000) {
      auto c = helper.spawn(SpawnSpec{{"/bin/true"}});
      if (c.ok()) queued.push_back(std::move(c.value()));
      else refused = c.error().message;
    }
    REQUIRE(refused);
    CHECK(*refused == "spawn helper: " + std::string(std::strerror(EAGAIN)));
    // The kill finds the socket full too: it must be retried, not dropped.
    sleeper.kill(SIGKILL);
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(Millis(50));
    co_await t.async_wait(use_nothrow);
    CHECK(::kill(sleeper_pid, 0) == 0);  // still alive: nothing reached the helper yet
    REQUIRE(::kill(helper.pid(), SIGCONT) == 0);
    auto status = co_await sleeper.wait();
    CHECK(status.signal == SIGKILL);
    for (auto& c : queued) CHECK((co_await c.wait()).ok());
  });
}

TEST_CASE("spawn helper: it ignores the signals meant for the agent (Ctrl-C, systemd's SIGTERM)") {
  with_helper([](SpawnHelper& helper) -> awaitable<void> {
    REQUIRE(helper.pid() > 0);
    ::kill(helper.pid(), SIGTERM);
    ::kill(helper.pid(), SIGINT);
    ::kill(helper.pid(), SIGHUP);
    auto child = helper.spawn(SpawnSpec{{"/bin/true"}});
    REQUIRE(child.ok());
    auto status = co_await child->wait();
    CHECK(status.ok());
    CHECK(helper.up());
  });
}

TEST_CASE("spawn helper: its death is reported, and the children waited for end instead of hanging") {
  asio::io_context io;
  SpawnHelper helper(io.get_executor());
  std::optional<std::string> lost;
  helper.on_lost([&](const std::string& why) { lost = why; });
  std::optional<ExitStatus> ended;
  pid_t orphan = -1;
  asio::co_spawn(io, [&]() -> awaitable<void> {
    auto up = co_await helper.start("/proc/self/exe");
    REQUIRE(up.ok());
    auto [child, pid] = sleeper_saying_its_pid(helper);
    orphan = pid;
    ::kill(helper.pid(), SIGKILL);
    ended = co_await child.wait();
    io.stop();
  }, asio::detached);
  io.run_for(std::chrono::seconds(10));
  REQUIRE(lost.has_value());
  CHECK(*lost == "it exited");
  CHECK(ended.has_value());
  CHECK_FALSE(helper.up());
  // Its child was not its to kill: it outlives the helper (the agent exits and recovery
  // accounts for such calls). Cleaned up here.
  REQUIRE(orphan > 0);
  CHECK(::kill(orphan, SIGKILL) == 0);
  CHECK(gone_within(orphan, std::chrono::milliseconds(3000)));
}

TEST_CASE("spawn helper: a program that is not a helper fails start, and the caller is told why") {
  asio::io_context io;
  SpawnHelper helper(io.get_executor());
  bool lost = false;
  helper.on_lost([&](const std::string&) { lost = true; });
  std::optional<Status> started;
  asio::co_spawn(io, [&]() -> awaitable<void> { started = co_await helper.start("/bin/true"); }, asio::detached);
  io.run_for(std::chrono::seconds(10));
  REQUIRE(started.has_value());
  REQUIRE_FALSE(started->ok());
  CHECK(started->error().message == "spawn helper /bin/true: it exited");
  CHECK_FALSE(lost);  // not up yet: not a loss, the agent forks runsc itself
  CHECK_FALSE(helper.up());
  CHECK_FALSE(helper.spawn(SpawnSpec{{"/bin/true"}}).ok());
}
