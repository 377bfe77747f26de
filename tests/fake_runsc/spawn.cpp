#include "spawn.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "files.hpp"
#include "layout.hpp"

namespace fake_runsc {
namespace {

std::string daemon_path() {
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return kDaemonExe;
  std::string path(self, static_cast<size_t>(n));
  return join_path(path.substr(0, path.rfind('/') + 1), kDaemonExe);
}

// In the forked child. Reports an exec failure as errno on `report_fd`.
[[noreturn]] void exec_daemon(const std::string& exe, const std::string& root, int listen_fd,
                              int report_fd) {
  ::setsid();
  // Park both descriptors above the ones they move to, then lay them out.
  const int listen_tmp = ::fcntl(listen_fd, F_DUPFD, 10);
  const int report_tmp = ::fcntl(report_fd, F_DUPFD_CLOEXEC, 10);
  ::dup2(listen_tmp, kListenFd);  // without close-on-exec: the daemon inherits it
  ::dup3(report_tmp, kListenFd + 1, O_CLOEXEC);
  ::syscall(SYS_close_range, unsigned{kListenFd} + 2, ~0u, 0u);
  ::close(listen_tmp);
  ::close(report_tmp);
  const int null_fd = ::open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; ++fd) ::dup2(null_fd, fd);
  if (null_fd > 2) ::close(null_fd);
  const char* argv[] = {exe.c_str(), root.c_str(), nullptr};
  ::execv(exe.c_str(), const_cast<char* const*>(argv));
  const int e = errno;
  (void)!::write(kListenFd + 1, &e, sizeof e);
  _exit(127);
}

}  // namespace

bool spawn_daemon(const std::string& root, std::string& err) {
  const int listen_fd = unix_listen(join_path(root, kSocketName), SOMAXCONN, &err);
  if (listen_fd < 0) return false;
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    err = std::string("pipe: ") + std::strerror(errno);
    ::close(listen_fd);
    return false;
  }
  const std::string exe = daemon_path();
  const pid_t pid = ::fork();
  if (pid == 0) exec_daemon(exe, root, listen_fd, report[1]);
  ::close(report[1]);
  ::close(listen_fd);
  if (pid < 0) {
    err = std::string("fork: ") + std::strerror(errno);
    ::close(report[0]);
    return false;
  }
  int exec_errno = 0;  // EOF, nothing read: exec succeeded
  ssize_t n;
  do n = ::read(report[0], &exec_errno, sizeof exec_errno);
  while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n > 0) {
    ::waitpid(pid, nullptr, 0);
    ::unlink(join_path(root, kSocketName).c_str());
    err = "cannot run " + exe + ": " + std::strerror(exec_errno);
    return false;
  }
  return true;
}

}  // namespace fake_runsc
