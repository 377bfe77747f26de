// The log quota (agent/log_quota.cpp): what a sandbox's logs tmpfs leaves on the disk when it
// goes, and what a watcher sees while it goes.
// Mounting needs CAP_SYS_ADMIN (CI runs as root); without it the cases say so and pass.
#include <doctest/doctest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

#include <dirent.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log_quota.hpp"
#include "paths.hpp"

using namespace sandbox_agent;

namespace {

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
  REQUIRE(out.good());
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Names and contents of the regular files in `dir`.
std::map<std::string, std::string> files_in(const std::string& dir) {
  std::map<std::string, std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d)) {
      std::string name = e->d_name;
      struct stat st {};
      auto path = paths::join(dir, name);
      if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) out[name] = read(path);
    }
    ::closedir(d);
  }
  return out;
}

// ROOT/logs/ID in a temporary root; the tmpfs (when mounted) goes with it, whatever happens.
struct LogsDir {
  LogsDir() {
    char tmpl[] = "/tmp/log-quota-test-XXXXXX";
    root = ::mkdtemp(tmpl);
    dir = paths::join(root, "sbx");
    REQUIRE(::mkdir(dir.c_str(), 0750) == 0);
  }
  ~LogsDir() {
    while (log_quota::mounted(dir)) ::umount2(dir.c_str(), MNT_DETACH);
    paths::remove_tree(root);
  }
  bool mount() {
    if (log_quota::mount(dir, 1 << 20)) return true;
    MESSAGE("cannot mount a tmpfs here (needs CAP_SYS_ADMIN): not checked");
    return false;
  }
  std::string at(const char* name) const { return paths::join(dir, name); }
  Status keep(log_quota::Reach reach = log_quota::Reach::below) {
    asio::io_context io;
    std::optional<Status> result;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { result = co_await log_quota::unmount_keeping(dir, reach); },
        asio::detached);
    io.run();
    REQUIRE(result);
    return *result;
  }

  std::string root, dir;
};

}  // namespace

TEST_CASE("log quota: the regular files a tmpfs held are on the disk once it is gone, the rest is dropped") {
  for (auto reach : {log_quota::Reach::below, log_quota::Reach::after_unmount}) {
    CAPTURE(reach == log_quota::Reach::below ? "below" : "after the unmount (no open_tree)");
    LogsDir logs;
    if (!logs.mount()) return;
    REQUIRE(log_quota::mounted(logs.dir));
    write(logs.at("runsc.log"), "create --bundle x\n");
    write(logs.at("init.log"), std::string(300000, 'i'));
    REQUIRE(::symlink("/etc/passwd", logs.at("escape").c_str()) == 0);
    REQUIRE(::mkdir(logs.at("junk").c_str(), 0700) == 0);
    REQUIRE(logs.keep(reach));
    CHECK_FALSE(log_quota::mounted(logs.dir));
    CHECK(files_in(logs.dir) == std::map<std::string, std::string>{{"init.log", std::string(300000, 'i')},
                                                                    {"runsc.log", "create --bundle x\n"}});
    CHECK_FALSE(exists(logs.at("escape")));
    CHECK_FALSE(exists(logs.at("junk")));
    CHECK(logs.keep());  // again: nothing to do
    CHECK(files_in(logs.dir).size() == 2);
  }
}

TEST_CASE("log quota: whoever looks while the tmpfs goes sees all the logs or the tmpfs, never some") {
  LogsDir logs;
  if (!logs.mount()) return;
  // Big enough that each copy's write takes more than one turn of the ring.
  for (const char* name : {"runsc.log", "dockerd.log", "init.log"}) write(logs.at(name), std::string(200000, name[0]));
  auto expected = files_in(logs.dir);

  asio::io_context io;
  bool done = false;
  std::optional<std::map<std::string, std::string>> first_sight;  // the first look without the tmpfs
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        CHECK(co_await log_quota::unmount_keeping(logs.dir));
        done = true;
      },
      asio::detached);
  // A watcher taking a turn between every step of the reactor.
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        while (!done && !first_sight) {
          if (!log_quota::mounted(logs.dir)) first_sight = files_in(logs.dir);
          co_await asio::post(io, asio::use_awaitable);
        }
      },
      asio::detached);
  io.run();
  REQUIRE(done);
  if (!first_sight) first_sight = files_in(logs.dir);
  CHECK(*first_sight == expected);
}

TEST_CASE("log quota: what was below the tmpfs stays, but a file of the same name is the sandbox's") {
  // Also what a crash while copying leaves: a half copy below, the tmpfs still there.
  for (auto reach : {log_quota::Reach::below, log_quota::Reach::after_unmount}) {
    CAPTURE(reach == log_quota::Reach::below ? "below" : "after the unmount (no open_tree)");
    LogsDir logs;
    write(logs.at("cni.log"), "an earlier sandbox's\n");
    write(logs.at("runsc.log"), "old\n");
    if (!logs.mount()) return;
    CHECK(files_in(logs.dir).empty());  // hidden by the tmpfs
    write(logs.at("runsc.log"), "new\n");
    REQUIRE(logs.keep(reach));
    CHECK(files_in(logs.dir) ==
          std::map<std::string, std::string>{{"cni.log", "an earlier sandbox's\n"}, {"runsc.log", "new\n"}});
  }
}

