#include "log_quota.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include <asio/random_access_file.hpp>

#include "paths.hpp"

namespace sandbox_agent::log_quota {

namespace {

constexpr unsigned kInodes = 256;  // a sandbox making files to exhaust something gets ENOSPC

std::string parent_of(const std::string& dir) {
  auto slash = dir.find_last_of('/');
  return slash == 0 ? "/" : dir.substr(0, slash);
}

// Reads or writes a whole file through the ring.
awaitable<bool> read_whole(asio::any_io_executor ex, int fd, std::size_t size, std::string& out) {
  asio::random_access_file file(ex);
  file.assign(fd);
  out.resize(size);
  std::size_t got = 0;
  while (got < out.size()) {
    auto [ec, n] = co_await file.async_read_some_at(got, asio::buffer(out.data() + got, out.size() - got), use_nothrow);
    got += n;
    if (ec == asio::error::eof || n == 0) break;
    if (ec) co_return false;
  }
  out.resize(got);
  co_return true;
}

awaitable<bool> write_whole(asio::any_io_executor ex, int fd, const std::string& data) {
  asio::random_access_file file(ex);
  file.assign(fd);
  std::size_t done = 0;
  while (done < data.size()) {
    auto [ec, n] = co_await file.async_write_some_at(done, asio::buffer(data.data() + done, data.size() - done), use_nothrow);
    if (ec || n == 0) co_return false;
    done += n;
  }
  co_return true;
}

// A clone of the logs directory's mount, without the mounts on it, kept for every tear-down:
// a clone is dissolved when its last descriptor closes, and that waits for an RCU grace
// period (10 ms and more on a busy machine, with the reactor blocked), once per sandbox when
// each tear-down made its own. A detached clone gets no mounts propagated into it, and the
// device check below makes sure of it anyway.
struct BelowTree {
  std::string parent;
  int fd = -1;
  dev_t dev = 0;
};

// The directory under the tmpfs at parent/name, or -1 (no open_tree: Linux < 5.2).
int open_below(const std::string& parent, const std::string& name) {
  static BelowTree tree;  // the reactor's thread only
  struct stat st {};
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (tree.fd < 0 || tree.parent != parent) {
      if (tree.fd >= 0) ::close(tree.fd);
      tree.parent = parent;
      tree.fd = ::open_tree(AT_FDCWD, parent.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
      if (tree.fd < 0 || ::fstat(tree.fd, &st) != 0) {
        if (tree.fd >= 0) ::close(tree.fd);
        tree.fd = -1;
        return -1;
      }
      tree.dev = st.st_dev;
    }
    int below = ::openat(tree.fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (below >= 0 && ::fstat(below, &st) == 0 && st.st_dev == tree.dev) return below;
    // Not the directory below (a mount reached the clone after all): a fresh clone, once.
    if (below >= 0) ::close(below);
    ::close(tree.fd);
    tree.fd = -1;
  }
  return -1;
}

}  // namespace

Status mount(const std::string& dir, std::uint64_t bytes) {
  std::string options = "size=" + std::to_string(bytes) + ",nr_inodes=" + std::to_string(kInodes) + ",mode=0750";
  if (::mount("sandbox-logs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options.c_str()) != 0)
    return make_error(ErrorCode::internal, "mounting the log quota (tmpfs) on " + dir + ": " + paths::errno_text());
  return Ok{};
}

bool mounted(const std::string& dir) {
  struct stat here {}, up {};
  if (::lstat(dir.c_str(), &here) != 0 || !S_ISDIR(here.st_mode)) return false;
  if (::stat(parent_of(dir).c_str(), &up) != 0) return false;
  return here.st_dev != up.st_dev;
}

awaitable<Status> unmount_keeping(std::string dir, Reach reach) {
  if (!mounted(dir)) co_return Ok{};
  auto ex = co_await asio::this_coro::executor;
  std::string first_error;
  auto note = [&](const std::string& what) {
    if (first_error.empty()) first_error = what + ": " + paths::errno_text();
  };
  auto slash = dir.find_last_of('/');
  auto name_in_parent = dir.substr(slash + 1);
  // The directory below the tmpfs, through a clone of the parent's mount made without the
  // mounts on it (a bind mount that is not recursive): the copies are in place before the
  // tmpfs goes, so whoever looks at `dir` sees either the tmpfs or all the kept logs, and a
  // crash while copying leaves the originals where the next call finds them.
  int below = reach == Reach::below ? open_below(parent_of(dir), name_in_parent) : -1;
  auto keep = [&](int into, const std::string& name, const std::string& content) -> awaitable<void> {
    int f = ::openat(into, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (f < 0) {
      note("keeping " + paths::join(dir, name));
      co_return;
    }
    if (!co_await write_whole(ex, f, content) && first_error.empty())
      first_error = "writing " + paths::join(dir, name) + " failed";
  };

  int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (d < 0) note("opening " + dir);
  std::vector<std::pair<std::string, off_t>> names;
  if (DIR* listing = d >= 0 ? ::fdopendir(::dup(d)) : nullptr) {
    while (auto* e = ::readdir(listing)) {
      std::string name = e->d_name;
      struct stat st {};
      if (name == "." || name == ".." || ::fstatat(d, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISREG(st.st_mode))
        continue;
      names.emplace_back(std::move(name), st.st_size);
    }
    ::closedir(listing);
  }
  // Without the directory below (a kernel before 5.2 or one refusing open_tree), everything
  // is read first and written once the tmpfs is gone.
  std::vector<std::pair<std::string, std::string>> held;
  for (auto& [name, size] : names) {
    int f = ::openat(d, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    std::string content;
    if (f < 0 || !co_await read_whole(ex, f, static_cast<std::size_t>(size), content)) {
      if (f < 0) note("reading " + paths::join(dir, name));
      else if (first_error.empty()) first_error = "reading " + paths::join(dir, name) + " failed";
      continue;
    }
    if (below >= 0) co_await keep(below, name, content);
    else held.emplace_back(std::move(name), std::move(content));
  }
  if (d >= 0) ::close(d);
  if (::umount2(dir.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) note("unmounting " + dir);
  if (below < 0 && !held.empty()) {
    below = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (below < 0) note("opening " + dir);
    else
      for (const auto& [name, content] : held) co_await keep(below, name, content);
  }
  if (below >= 0) ::close(below);
  if (!first_error.empty()) co_return make_error(ErrorCode::internal, first_error);
  co_return Ok{};
}

}  // namespace sandbox_agent::log_quota
