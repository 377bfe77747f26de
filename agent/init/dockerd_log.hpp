// Copies dockerd's stdout+stderr (a pipe) into LOG_DIR/dockerd.log, capped: past 8 MiB the file
// becomes dockerd.log.1 and a new one starts, so the tail is always there and the disk bounded.
#pragma once

#include <cstdint>
#include <string>
#include <sys/types.h>

#include "event_loop.hpp"
#include "fd.hpp"

namespace sinit {

inline constexpr off_t kDockerdLogCap = 8 * 1024 * 1024;

// An append-only file that rotates to PATH.1 once it exceeds `cap`. With an empty path it
// writes to stderr and never rotates.
class CappedLogFile {
 public:
  void open(const std::string& path, off_t cap);
  void write(const char* data, size_t len);

 private:
  void reopen();
  std::string path_;
  off_t cap_ = 0;
  off_t size_ = 0;
  Fd fd_;
};

class DockerdLogPump : public EventHandler {
 public:
  DockerdLogPump(EventLoop& loop, const std::string& log_dir);
  // Takes the read end of dockerd's output pipe (non-blocking) and starts copying.
  void attach(Fd pipe_read_end);
  // Copies whatever is already in the pipe (dockerd has exited, or init is about to).
  void drain();
  void on_events(uint32_t events) override;

 private:
  bool read_once();  // false on EOF or error (then the pipe is closed)
  EventLoop& loop_;
  CappedLogFile file_;
  Fd pipe_;
};

}  // namespace sinit
