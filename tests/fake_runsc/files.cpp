#include "files.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace fake_runsc {
namespace {

std::string errno_text() { return std::strerror(errno); }

// Fills `addr` for `path`. A path too long for sun_path is reached through an O_PATH
// descriptor of its directory, returned in *dir_fd (to close after bind/connect).
bool unix_address(const std::string& path, sockaddr_un& addr, socklen_t& len, int* dir_fd) {
  *dir_fd = -1;
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  std::string target = path;
  if (path.size() >= sizeof addr.sun_path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos) return false;
    const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    *dir_fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*dir_fd < 0) return false;
    target = "/proc/self/fd/" + std::to_string(*dir_fd) + path.substr(slash);
    if (target.size() >= sizeof addr.sun_path) {
      ::close(*dir_fd);
      *dir_fd = -1;
      errno = ENAMETOOLONG;
      return false;
    }
  }
  std::memcpy(addr.sun_path, target.data(), target.size());
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + target.size() + 1);
  return true;
}

}  // namespace

std::string join_path(std::string_view dir, std::string_view name) {
  std::string p(dir);
  if (p.empty() || p.back() != '/') p += '/';
  return p.append(name);
}

std::string absolute_path(std::string_view cwd, std::string_view p) {
  if (p.starts_with('/')) return std::string(p);
  return join_path(cwd, p);
}

bool make_dirs(const std::string& path, unsigned mode) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    const std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) return false;
  }
  return true;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool write_file(const std::string& path, std::string_view data, std::string* err) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (err) *err = "open " + path + ": " + errno_text();
    return false;
  }
  const bool ok = write_all(fd, data);
  if (!ok && err) *err = "write " + path + ": " + errno_text();
  ::close(fd);
  return ok;
}

bool write_marker(const std::string& dir, std::string_view name, std::string_view data) {
  if (dir.empty()) return false;
  std::string tmp_name = ".";
  tmp_name.append(name).append(".tmp");
  const std::string tmp = join_path(dir, tmp_name);
  if (!write_file(tmp, data, nullptr)) return false;
  return ::rename(tmp.c_str(), join_path(dir, name).c_str()) == 0;
}

void append_line(const std::string& path, std::string_view line) {
  if (path.empty()) return;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  std::string buf(line);
  buf += '\n';
  write_all(fd, buf);
  ::close(fd);
}

int unix_listen(const std::string& path, int backlog, std::string* err) {
  // Bound under a temporary name and renamed once listening, so that whoever sees the
  // file can connect to it.
  const auto slash = path.rfind('/');
  std::string tmp_name = ".";
  tmp_name.append(slash == std::string::npos ? path : path.substr(slash + 1)).append(".tmp");
  const std::string tmp =
      slash == std::string::npos ? tmp_name : join_path(path.substr(0, slash + 1), tmp_name);
  sockaddr_un addr;
  socklen_t len = 0;
  int dir_fd = -1;
  if (!unix_address(tmp, addr, len, &dir_fd)) {
    if (err) *err = "socket path " + path + ": " + errno_text();
    return -1;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    ::unlink(tmp.c_str());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0 && ::listen(fd, backlog) == 0 &&
        ::rename(tmp.c_str(), path.c_str()) == 0) {
      if (dir_fd >= 0) ::close(dir_fd);
      return fd;
    }
  }
  if (err) *err = "listen on " + path + ": " + errno_text();
  const int saved = errno;
  ::unlink(tmp.c_str());
  if (fd >= 0) ::close(fd);
  if (dir_fd >= 0) ::close(dir_fd);
  errno = saved;
  return -1;
}

int unix_bind(const std::string& path, std::string* err) {
  sockaddr_un addr;
  socklen_t len = 0;
  int dir_fd = -1;
  if (!unix_address(path, addr, len, &dir_fd)) {
    if (err) *err = "socket path " + path + ": " + errno_text();
    return -1;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const bool ok = fd >= 0 && (::unlink(path.c_str()), ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0);
  const int saved = errno;
  if (dir_fd >= 0) ::close(dir_fd);
  if (ok) return fd;
  if (err) *err = "bind " + path + ": " + std::strerror(saved);
  if (fd >= 0) ::close(fd);
  errno = saved;
  return -1;
}

int unix_connect(const std::string& path) {
  sockaddr_un addr;
  socklen_t len = 0;
  int dir_fd = -1;
  if (!unix_address(path, addr, len, &dir_fd)) return -1;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int rc = -1;
  if (fd >= 0) {
    do rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), len);
    while (rc != 0 && errno == EINTR);
  }
  const int saved = errno;
  if (dir_fd >= 0) ::close(dir_fd);
  if (rc != 0 && fd >= 0) ::close(fd);
  errno = saved;
  return rc == 0 ? fd : -1;
}

}  // namespace fake_runsc
