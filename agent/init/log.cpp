#include "log.hpp"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <fcntl.h>

#include "fd.hpp"

namespace sinit {

namespace {
int g_log_fd = 2;  // stderr until log_open() finds a log directory

void vlog(bool also_stderr, const char* fmt, va_list ap) {
  char line[2048];
  int prefix = std::snprintf(line, sizeof line, "sandbox-init: %s ", utc_timestamp().c_str());
  if (prefix < 0) return;
  int body = std::vsnprintf(line + prefix, sizeof line - static_cast<size_t>(prefix), fmt, ap);
  if (body < 0) return;
  size_t len = static_cast<size_t>(prefix) + static_cast<size_t>(body);
  if (len > sizeof line - 2) len = sizeof line - 2;  // truncated: keep one line per message
  line[len++] = '\n';
  // One write(2) per line: with O_APPEND the line lands whole even if others append too.
  int saved = errno;
  write_all(g_log_fd, line, len);
  if (also_stderr && g_log_fd != 2) write_all(2, line, len);
  errno = saved;
}
}  // namespace

void log_open(const std::string& log_dir) {
  if (log_dir.empty()) return;
  std::string path = log_dir + "/init.log";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    log_msg("cannot open %s (%s); logging to stderr", path.c_str(), errno_str(errno).c_str());
    return;
  }
  g_log_fd = fd;
}

void log_msg(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(false, fmt, ap);
  va_end(ap);
}

void log_console(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(true, fmt, ap);
  va_end(ap);
}

std::string utc_timestamp() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm {};
  gmtime_r(&ts.tv_sec, &tm);
  char buf[96];  // sized for any int the fields could hold, so no truncation is possible
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ts.tv_nsec / 1000000));
  return buf;
}

}  // namespace sinit
