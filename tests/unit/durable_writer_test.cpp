// DurableWriter (agent/durable_writer.cpp): what a write leaves on disk, in what order, and
// that a file rewritten many times reuses its two inodes instead of freeing one per write.
#include <doctest/doctest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <stdlib.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "durable_writer.hpp"
#include "paths.hpp"

using namespace sandbox_agent;

namespace {
std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string numbered(char prefix, int i) {  // "v3" (appended: g++ 12 warns, wrongly, on "v" + ...)
  std::string s(1, prefix);
  s += std::to_string(i);
  return s;
}

ino_t inode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

struct Writer {
  Writer() {
    char tmpl[] = "/tmp/durable-writer-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    REQUIRE(writer.open());
  }
  ~Writer() { paths::remove_tree(dir); }

  std::string at(const char* name) const {  // (appends: g++ 12 warns, wrongly, on dir + "...")
    std::string p = dir;
    p += '/';
    p += name;
    return p;
  }

  // Writes and runs the reactor until the write is on disk; returns its error.
  int write(const std::string& path, std::string content, DurableWriter::Spare spare = DurableWriter::Spare::keep) {
    int result = -1;
    writer.write(path, std::move(content), [&](int err) { result = err; }, spare);
    io.restart();
    while (result < 0 && io.run_one()) {
    }
    return result;
  }

  asio::io_context io;
  DurableWriter writer{io.get_executor()};
  std::string dir;
};
}  // namespace

TEST_CASE_FIXTURE(Writer, "durable writer: the newest content is in place and the staging file keeps the one before") {
  auto path = at("a.json");
  CHECK(write(path, "one") == 0);
  CHECK(read(path) == "one");
  CHECK(write(path, "two") == 0);
  CHECK(read(path) == "two");
  CHECK(write(path, "three") == 0);
  CHECK(read(path) == "three");
  CHECK(read(paths::staging_path(path)) == "two");
  CHECK(writer.pending() == 0);
}

TEST_CASE_FIXTURE(Writer, "durable writer: a file rewritten many times keeps the same two inodes") {
  // With rename-over-target every write frees the old inode and allocates a new one; ext4
  // without a journal then scans every inode freed in the last minutes at each allocation.
  auto path = at("rec.json");
  CHECK(write(path, "v0") == 0);
  CHECK(write(path, "v1") == 0);
  const std::vector<ino_t> pair{inode(path), inode(paths::staging_path(path))};
  for (int i = 2; i < 10; ++i) {
    CHECK(write(path, numbered('v', i)) == 0);
    const std::vector<ino_t> now{inode(path), inode(paths::staging_path(path))};
    const bool same_pair = (now[0] == pair[0] && now[1] == pair[1]) || (now[0] == pair[1] && now[1] == pair[0]);
    CHECK(same_pair);
  }
  CHECK(read(path) == "v9");
}

TEST_CASE_FIXTURE(Writer, "durable writer: writes queued behind a running one are merged, the newest wins, every caller hears") {
  auto path = at("q.json");
  std::vector<int> done;
  for (int i = 0; i < 4; ++i) writer.write(path, numbered('c', i), [&, i](int err) { done.push_back(err ? -1 : i); });
  io.restart();
  while (done.size() < 4 && io.run_one()) {
  }
  CHECK(done == std::vector<int>{0, 1, 2, 3});
  CHECK(read(path) == "c3");
}

TEST_CASE_FIXTURE(Writer, "durable writer: a write into a missing directory fails with its errno and leaves nothing") {
  CHECK(write(at("missing/x.json"), "x") == ENOENT);
  CHECK(writer.pending() == 0);
}

TEST_CASE_FIXTURE(Writer, "durable writer: remove_file_and_staging removes both files") {
  auto path = at("gone.json");
  CHECK(write(path, "1") == 0);
  CHECK(write(path, "2") == 0);
  REQUIRE(inode(paths::staging_path(path)) != 0);
  paths::remove_file_and_staging(path);
  CHECK(inode(path) == 0);
  CHECK(inode(paths::staging_path(path)) == 0);
}

TEST_CASE_FIXTURE(Writer, "durable writer: a write that drops the spare leaves no staging file, and a later write still works") {
  auto path = at("final.json");
  CHECK(write(path, "1") == 0);
  CHECK(write(path, "2") == 0);
  CHECK(write(path, "done", DurableWriter::Spare::drop) == 0);
  CHECK(read(path) == "done");
  CHECK(inode(paths::staging_path(path)) == 0);
  CHECK(write(path, "again") == 0);
  CHECK(read(path) == "again");
}

TEST_CASE_FIXTURE(Writer, "durable writer: by default the target is renamed over, so a reader holding the old file keeps it whole") {
  auto path = at("status.json");
  CHECK(write(path, "first") == 0);
  std::ifstream reader(path);  // a batch system's reader, still open across the next writes
  for (const char* next : {"second", "third"}) {  // with a kept spare, "third" reuses its inode
    int result = -1;
    writer.write(path, next, [&](int err) { result = err; });  // the default
    io.restart();
    while (result < 0 && io.run_one()) {
    }
    CHECK(result == 0);
  }
  std::stringstream old;
  old << reader.rdbuf();
  CHECK(old.str() == "first");
  CHECK(read(path) == "third");
  CHECK(inode(paths::staging_path(path)) == 0);
}

namespace {
bool in_memory(const std::string& dir) {
  struct statfs fs {};
  return ::statfs(dir.c_str(), &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
}
}  // namespace

TEST_CASE_FIXTURE(Writer, "durable writer: nothing is flushed in a tmpfs, but the write still lands whole and in order") {
  char tmpl[] = "/dev/shm/durable-writer-test-XXXXXX";
  REQUIRE(::mkdtemp(tmpl));
  const std::string shm = tmpl;
  REQUIRE(in_memory(shm));
  const std::string path = shm + "/r.json";
  bool heard_inside_write = false;
  bool done = false;
  writer.write(path, "a", [&](int err) { done = err == 0; });
  heard_inside_write = done;  // callers hear on a later turn, as after a flush
  CHECK_FALSE(heard_inside_write);
  io.restart();
  while (!done && io.run_one()) {
  }
  CHECK(done);
  CHECK(write(path, "b") == 0);
  CHECK(write(path, "c") == 0);
  CHECK(read(path) == "c");
  CHECK(writer.flushes() == 0);
  if (!in_memory(dir)) {  // the fixture's directory on a disk: flushed
    CHECK(write(at("disk.json"), "d") == 0);
    CHECK(writer.flushes() >= 2);  // the file and its directory
  }
  paths::remove_tree(shm);
}
