#include "sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "log.hpp"

namespace sandbox_agent {

SdNotify::SdNotify(asio::any_io_executor ex) : ex_(ex), timer_(ex) {
  const char* addr = std::getenv("NOTIFY_SOCKET");
  if (!addr || !*addr || (addr[0] != '/' && addr[0] != '@')) return;
  address_ = addr;
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  // The watchdog applies to us only if systemd says it watches this pid.
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  if (usec && (!pid || std::atoi(pid) == ::getpid())) {
    long long us = std::atoll(usec);
    if (us > 0) {
      watchdog_ = true;
      period_ = Millis(std::max<long long>(us / 2000, 1));  // twice per interval
    }
  }
  ::unsetenv("NOTIFY_SOCKET");  // not for runsc or anything else we start
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
}

SdNotify::~SdNotify() {
  if (fd_ >= 0) ::close(fd_);
}

bool SdNotify::send(const std::string& message) {
  if (fd_ < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (address_.size() >= sizeof sa.sun_path) return false;
  std::memcpy(sa.sun_path, address_.data(), address_.size());
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
  return ::sendto(fd_, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), len) >= 0;
}

void SdNotify::ready(std::function<std::string()> status) {
  if (fd_ < 0) return;
  status_ = std::move(status);
  send("READY=1\nSTATUS=" + status_());
  if (!watchdog_) period_ = Millis(5000);  // STATUS= refreshes only
  tick();
}

void SdNotify::tick() {
  timer_.expires_after(period_);
  timer_.async_wait([this](std::error_code ec) {
    if (ec) return;
    std::string msg = "STATUS=" + (status_ ? status_() : std::string());
    if (watchdog_) msg += "\nWATCHDOG=1";
    send(msg);
    tick();
  });
}

void SdNotify::stopping() {
  send("STOPPING=1\nSTATUS=shutting down");
  timer_.cancel();
}

}  // namespace sandbox_agent
