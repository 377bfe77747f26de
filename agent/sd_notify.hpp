// systemd's notify protocol (sd_notify(3)) without libsystemd: READY=1 once serving,
// STATUS= with the counts, WATCHDOG=1 from the reactor (a stuck reactor stops them, so
// systemd restarts us), STOPPING=1 on shutdown. Does nothing without NOTIFY_SOCKET.
#pragma once

#include <functional>
#include <string>

#include "reactor.hpp"

namespace sandbox_agent {

class SdNotify {
 public:
  explicit SdNotify(asio::any_io_executor ex);
  ~SdNotify();
  // Sends READY=1 and starts the periodic STATUS= / WATCHDOG=1 messages.
  void ready(std::function<std::string()> status);
  void stopping();
  bool enabled() const { return fd_ >= 0; }

 private:
  bool send(const std::string& message);
  void tick();
  asio::any_io_executor ex_;
  asio::steady_timer timer_;
  std::function<std::string()> status_;
  Millis period_{0};
  bool watchdog_ = false;
  int fd_ = -1;
  std::string address_;
};

}  // namespace sandbox_agent
