// Small system helpers shared by every part of sandbox-init.
#pragma once

#include <cstddef>
#include <string>
#include <unistd.h>

namespace sinit {

// Owns one file descriptor and closes it when it goes out of scope, so no error path leaks one.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// strerror(err) as a std::string (thread-safety is moot: init is single-threaded).
std::string errno_str(int err);

// write(2) until everything is written; retries EINTR. Returns false on any other error.
bool write_all(int fd, const void* data, size_t len);

// Raises init's own RLIMIT_NOFILE soft limit to the hard limit (the relay holds two fds per
// connection) and remembers the old value, which children get back before exec.
void raise_fd_limit();
void restore_fd_limit_in_child();

// Milliseconds on the monotonic clock, for durations in log lines.
long long monotonic_ms();

}  // namespace sinit
