#include "unix_socket.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>

namespace sinit {

namespace {
bool make_addr(const std::string& path, struct sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr->sun_path) return false;
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}
}  // namespace

int connect_unix(const std::string& path, Fd* out) {
  struct sockaddr_un addr;
  if (!make_addr(path, &addr)) return ENAMETOOLONG;
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno;
  int r;
  do r = ::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr);
  while (r != 0 && errno == EINTR);
  int err = r == 0 ? 0 : errno;
  if (err == 0 || err == EINPROGRESS) *out = std::move(fd);
  return err;
}

int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

int listen_unix(const std::string& path, int backlog, Fd* out, const char** step) {
  struct sockaddr_un addr;
  *step = "path";
  if (!make_addr(path, &addr)) return ENAMETOOLONG;
  *step = "unlink";
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno;
  *step = "socket";
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno;
  // No chmod/chown afterwards: inside gVisor both fail with EPERM on a host-bound directory;
  // the host agent sets the permissions it wants.
  *step = "bind";
  if (::bind(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) return errno;
  *step = "listen";
  if (::listen(fd.get(), backlog) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return err;
  }
  *out = std::move(fd);
  return 0;
}

}  // namespace sinit
