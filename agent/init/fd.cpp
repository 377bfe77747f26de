#include "fd.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <sys/resource.h>

namespace sinit {

std::string errno_str(int err) { return std::strerror(err); }

bool write_all(int fd, const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

namespace {
struct rlimit g_original_nofile {};
bool g_nofile_changed = false;
}  // namespace

void raise_fd_limit() {
  struct rlimit rl {};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  g_original_nofile = rl;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) == 0) g_nofile_changed = true;
}

void restore_fd_limit_in_child() {
  if (g_nofile_changed) setrlimit(RLIMIT_NOFILE, &g_original_nofile);
}

long long monotonic_ms() {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace sinit
