#include "paths.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452  // the same number on every architecture (Linux 6.6)
#endif

namespace sandbox_agent::paths {

bool is_normalized_absolute(std::string_view p) {
  if (p.empty() || p[0] != '/') return false;
  if (p == "/") return true;
  if (p.back() == '/') return false;
  std::size_t i = 1;
  while (i <= p.size()) {
    auto end = p.find('/', i);
    if (end == std::string_view::npos) end = p.size();
    auto part = p.substr(i, end - i);
    if (part.empty() || part == "." || part == "..") return false;
    i = end + 1;
  }
  return true;
}

bool is_same_or_under(std::string_view p, std::string_view dir) {
  if (dir == "/") return !p.empty() && p[0] == '/';
  if (!p.starts_with(dir)) return false;
  return p.size() == dir.size() || p[dir.size()] == '/';
}

std::string join(std::string_view a, std::string_view b) {
  std::string r(a);
  if (r.empty() || r.back() != '/') r += '/';
  r += b;
  return r;
}

std::string errno_text() { return std::strerror(errno); }

bool make_dirs(const std::string& path, unsigned mode) {
  if (path.empty()) return false;
  // The leaf first: its parents exist nearly always (a sandbox's directories under ROOT), and
  // one mkdir beats one per component on every launch.
  if (::mkdir(path.c_str(), mode) == 0) return true;
  if (errno != ENOENT && errno != EEXIST) return false;
  std::string cur;
  std::size_t i = 0;
  while (i < path.size()) {
    auto next = path.find('/', i + 1);
    if (next == std::string::npos) next = path.size();
    cur = path.substr(0, next);
    if (!cur.empty() && cur != "/" && ::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return false;
    i = next;
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return false;
  }
  return true;
}

bool remove_tree(const std::string& path) {
  auto rm = [](const char* p, const struct stat*, int, struct FTW*) -> int {
    ::remove(p);
    return 0;
  };
  if (::access(path.c_str(), F_OK) != 0) return errno == ENOENT;
  ::nftw(path.c_str(), rm, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  return ::access(path.c_str(), F_OK) != 0;
}

namespace {
// Opens `path` for reading only if it is a regular file, without blocking on a FIFO or a
// device put in its place; -1 with errno set (EINVAL: not a regular file).
int open_regular(const std::string& path, int extra_flags) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | extra_flags);
  if (fd < 0) return -1;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    errno = EINVAL;
    return -1;
  }
  return fd;
}

// Reads `fd` to its end in blocks of `buf`'s size, handing each to `take`, which returns false
// to stop early. 1 when `take` stopped, 0 at the end, -1 on a read error (errno set). Closes
// `fd` in every case, keeping errno.
template <std::size_t N, class Take>
int read_blocks(int fd, char (&buf)[N], Take take) {
  int result = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf, N);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      result = n < 0 ? -1 : 0;
      break;
    }
    if (!take(std::string_view(buf, static_cast<std::size_t>(n)))) {
      result = 1;
      break;
    }
  }
  int e = errno;
  ::close(fd);
  errno = e;
  return result;
}

bool read_fd(int fd, std::string& out, std::size_t max) {
  out.clear();
  char buf[16384];
  int r = read_blocks(fd, buf, [&](std::string_view block) {
    if (out.size() + block.size() > max) return false;
    out.append(block);
    return true;
  });
  if (r > 0) errno = EFBIG;
  return r == 0;
}
}  // namespace

int read_pid_file(const std::string& path, std::int64_t* written_unix_us) {
  if (written_unix_us) *written_unix_us = 0;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return -1;
  struct stat st {};
  bool stamped = !written_unix_us || ::fstat(fd, &st) == 0;
  // One read: runsc has exited when we look, so the file is whole, and a pid is a few bytes.
  char text[32] = {};
  ssize_t n = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (n <= 0) return -1;
  int pid = std::atoi(text);
  if (pid <= 0) return -1;
  if (written_unix_us && stamped)
    *written_unix_us = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000 + st.st_mtim.tv_nsec / 1000;
  return pid;
}

bool read_file(const std::string& path, std::string& out, std::size_t max) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return false;
  return read_fd(fd, out, max);
}

namespace {
bool read_if_regular(const std::string& path, std::string& out, std::size_t max, int extra_flags) {
  int fd = open_regular(path, extra_flags);
  return fd >= 0 && read_fd(fd, out, max);
}
}  // namespace

bool read_regular_file(const std::string& path, std::string& out, std::size_t max) {
  return read_if_regular(path, out, max, 0);
}

bool read_untrusted_file(const std::string& path, std::string& out, std::size_t max) {
  return read_if_regular(path, out, max, O_NOFOLLOW);
}

int find_untrusted_line(const std::string& path, std::size_t max_line,
                        const std::function<bool(std::string_view)>& match) {
  int fd = open_regular(path, O_NOFOLLOW);
  if (fd < 0) return -1;
  std::string line;      // the current line so far; of a longer one, its last max_line bytes
  bool pending = false;  // a line began in an earlier block
  auto last_bytes = [&](std::string_view part) { return part.substr(part.size() - std::min(part.size(), max_line)); };
  char buf[65536];
  int r = read_blocks(fd, buf, [&](std::string_view block) {
    while (!block.empty()) {
      auto nl = block.find('\n');
      std::string_view part = block.substr(0, nl);
      bool found;
      if (!pending && nl != std::string_view::npos) {
        found = match(last_bytes(part));  // a whole line inside the block: no copy
      } else {
        line.append(last_bytes(part));
        if (line.size() > max_line) line.erase(0, line.size() - max_line);
        pending = nl == std::string_view::npos;
        if (pending) return true;
        found = match(line);
        line.clear();
      }
      if (found) return false;
      block.remove_prefix(nl + 1);
    }
    return true;
  });
  if (r != 0) return r;
  return pending && match(line) ? 1 : 0;
}


bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string staging_path(const std::string& path) {
  auto slash = path.rfind('/');
  const std::size_t cut = slash == std::string::npos ? 0 : slash + 1;
  std::string out;
  out.reserve(path.size() + 5);
  out.append(path, 0, cut).append(".").append(path, cut, std::string::npos).append(".tmp");
  return out;
}

void remove_file_and_staging(const std::string& path) {
  ::unlink(path.c_str());
  ::unlink(staging_path(path).c_str());
}

bool write_file_atomic(const std::string& path, std::string_view data, unsigned mode) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  std::string tmp = staging_path(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  bool ok = write_all(fd, data) && ::fsync(fd) == 0;
  int e = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) e = errno;
    ::unlink(tmp.c_str());
    errno = e;
    return false;
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

std::string tail_file(const std::string& path, std::size_t max) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return {};
  struct stat st {};
  std::string out;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    off_t size = st.st_size;
    off_t start = size > static_cast<off_t>(max) ? size - static_cast<off_t>(max) : 0;
    out.resize(static_cast<std::size_t>(size - start));
    ssize_t n = ::pread(fd, out.data(), out.size(), start);
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    if (start > 0) {  // drop the partial first line
      auto nl = out.find('\n');
      if (nl != std::string::npos && nl + 1 < out.size()) out.erase(0, nl + 1);
    }
  }
  ::close(fd);
  return out;
}

std::string self_exe_dir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<std::size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

int chmod_at_nofollow(int dfd, const char* name, unsigned mode) {
  if (::syscall(SYS_fchmodat2, dfd, name, mode, AT_SYMLINK_NOFOLLOW) == 0) return 0;
  if (errno != ENOSYS) return -1;
  return ::fchmodat(dfd, name, mode, AT_SYMLINK_NOFOLLOW);
}

}  // namespace sandbox_agent::paths
