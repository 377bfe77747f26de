// paths: the host file-system helpers the supervisor builds a sandbox's directories with.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.hpp"

using namespace sandbox_agent;

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sa-paths-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { paths::remove_tree(path); }
};

bool is_dir_with_mode(const std::string& p, unsigned mode) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == mode;
}
}  // namespace

TEST_CASE("make_dirs creates the leaf, its missing parents, and accepts what exists") {
  TempDir t;
  mode_t old_mask = ::umask(022);
  auto leaf = t.path + "/a/b/c";
  CHECK(paths::make_dirs(leaf, 0700));
  CHECK(is_dir_with_mode(leaf, 0700));
  CHECK(is_dir_with_mode(t.path + "/a/b", 0700));  // the parents it made
  CHECK(paths::make_dirs(leaf, 0700));              // already there: fine
  CHECK(paths::make_dirs(t.path + "/a/b/d", 0750));  // parents there: only the leaf is new
  CHECK(is_dir_with_mode(t.path + "/a/b/d", 0750));
  ::umask(old_mask);
}

TEST_CASE("make_dirs refuses a file in the way, as the leaf or as a parent") {
  TempDir t;
  auto file = t.path + "/f";
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  ::close(fd);
  errno = 0;
  CHECK_FALSE(paths::make_dirs(file, 0700));
  CHECK(errno == ENOTDIR);
  CHECK_FALSE(paths::make_dirs(file + "/below", 0700));
  CHECK(errno == ENOTDIR);
}

TEST_CASE("remove_tree removes a tree and is content when there is none") {
  TempDir t;
  REQUIRE(paths::make_dirs(t.path + "/x/y", 0700));
  CHECK(paths::remove_tree(t.path + "/x"));
  CHECK(::access((t.path + "/x").c_str(), F_OK) != 0);
  CHECK(paths::remove_tree(t.path + "/never"));
}

TEST_CASE("read_pid_file reads runsc's pid file and says -1 for anything else") {
  TempDir t;
  auto write = [&](const std::string& text) {
    int fd = ::open((t.path + "/pid").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(fd);
  };
  write("4242");
  CHECK(paths::read_pid_file(t.path + "/pid") == 4242);
  write("0");
  CHECK(paths::read_pid_file(t.path + "/pid") == -1);
  write("garbage");
  CHECK(paths::read_pid_file(t.path + "/pid") == -1);
  CHECK(paths::read_pid_file(t.path + "/none") == -1);
}

TEST_CASE("find_untrusted_line finds a line anywhere in a file larger than memory it may use") {
  TempDir t;
  const std::string file = t.path + "/log";
  auto write = [&](const std::string& text) {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(paths::write_all(fd, text));
    ::close(fd);
  };
  auto has = [&](std::string_view wanted, std::size_t max_line = 4096) {
    return paths::find_untrusted_line(file, max_line, [&](std::string_view line) { return line == wanted; });
  };
  // 20 MiB of console output, the wanted line straddling the 64 KiB read blocks, then more.
  std::string noise;
  while (noise.size() < (20u << 20)) noise += "console output of a sandbox, line after line\n";
  std::string text = noise.substr(0, 65536 - 5) + "\nrunsc create sb1\n" + noise;
  write(text);
  CHECK(has("runsc create sb1") == 1);
  CHECK(has("runsc create sb2") == 0);
  write(noise + "runsc create sb1");  // the last line, without its newline
  CHECK(has("runsc create sb1") == 1);
  // Of a line longer than max_line, its end is matched: the agent's call line appended to a
  // console line that never ended is still found, memory bounded.
  std::size_t longest = 0;
  auto ends_with = [&](std::string_view tail, std::size_t max_line) {
    longest = 0;
    int found = paths::find_untrusted_line(file, max_line, [&](std::string_view line) {
      longest = std::max(longest, line.size());
      return line.size() >= tail.size() && line.substr(line.size() - tail.size()) == tail;
    });
    CHECK(longest <= max_line);
    return found;
  };
  write(std::string(10000, 'x') + "runsc create sb1\nshort\n");
  CHECK(ends_with("xrunsc create sb1", 4096) == 1);
  CHECK(has("short", 4096) == 1);
  CHECK(has(std::string(10000, 'x') + "runsc create sb1", 20000) == 1);
  // ...also when it spans read blocks, and as the last line without a newline.
  write(noise + std::string(200000, 'y') + " runsc create sb1");
  CHECK(ends_with("y runsc create sb1", 4096) == 1);
  CHECK(ends_with("y runsc create sb2", 4096) == 0);
  // exactly max_line is a whole line; one byte more loses its first byte
  write("abcd\nefghi\n");
  CHECK(has("abcd", 4) == 1);
  CHECK(has("efghi", 4) == 0);
  CHECK(has("fghi", 4) == 1);
  // What a sandbox could plant instead of a file is refused, and a missing file says so.
  REQUIRE(::unlink(file.c_str()) == 0);
  CHECK(has("x") == -1);
  CHECK(errno == ENOENT);
  REQUIRE(::symlink("/etc/passwd", file.c_str()) == 0);
  CHECK(paths::find_untrusted_line(file, 4096, [](std::string_view) { return true; }) == -1);
  REQUIRE(::unlink(file.c_str()) == 0);
  REQUIRE(::mkfifo(file.c_str(), 0600) == 0);
  CHECK(paths::find_untrusted_line(file, 4096, [](std::string_view) { return true; }) == -1);
  CHECK(errno == EINVAL);
}
