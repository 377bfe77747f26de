#include "dockerd_log.hpp"

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/stat.h>

#include "log.hpp"

namespace sinit {

void CappedLogFile::open(const std::string& path, off_t cap) {
  path_ = path;
  cap_ = cap;
  reopen();
}

void CappedLogFile::reopen() {
  fd_.reset();
  size_ = 0;
  if (path_.empty()) return;
  fd_.reset(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd_.valid()) {
    log_msg("cannot open %s (%s); dockerd output goes to stderr", path_.c_str(),
            errno_str(errno).c_str());
    return;
  }
  struct stat st {};
  if (::fstat(fd_.get(), &st) == 0) size_ = st.st_size;
}

void CappedLogFile::write(const char* data, size_t len) {
  int fd = fd_.valid() ? fd_.get() : 2;
  if (!write_all(fd, data, len)) return;  // full disk: drop rather than block dockerd
  if (!fd_.valid()) return;
  size_ += static_cast<off_t>(len);
  if (size_ <= cap_) return;
  std::string old = path_ + ".1";
  if (::rename(path_.c_str(), old.c_str()) != 0)
    log_msg("cannot rotate %s: %s", path_.c_str(), errno_str(errno).c_str());
  reopen();
}

DockerdLogPump::DockerdLogPump(EventLoop& loop, const std::string& log_dir) : loop_(loop) {
  file_.open(log_dir.empty() ? std::string() : log_dir + "/dockerd.log", kDockerdLogCap);
}

void DockerdLogPump::attach(Fd pipe_read_end) {
  pipe_ = std::move(pipe_read_end);
  if (!loop_.add(pipe_.get(), EPOLLIN, this)) pipe_.reset();
}

bool DockerdLogPump::read_once() {
  char buf[65536];
  ssize_t n = ::read(pipe_.get(), buf, sizeof buf);
  if (n > 0) {
    file_.write(buf, static_cast<size_t>(n));
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
  // EOF (dockerd and everything it started have closed the pipe) or a real error.
  loop_.remove(pipe_.get());
  pipe_.reset();
  return false;
}

void DockerdLogPump::on_events(uint32_t) {
  if (pipe_.valid()) read_once();
}

void DockerdLogPump::drain() {
  while (pipe_.valid() && read_once()) {
  }
}

}  // namespace sinit
