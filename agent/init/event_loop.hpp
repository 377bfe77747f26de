// The single-threaded event loop: epoll for fds (no io_uring, which gVisor may not offer) plus
// one-shot timers, so nothing in init ever sleeps while a signal or a connection waits.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fd.hpp"

namespace sinit {

class EventHandler {
 public:
  virtual ~EventHandler() = default;
  // `events` is the EPOLL* mask reported for the fd this handler was registered with.
  virtual void on_events(uint32_t events) = 0;
};

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  using TimerId = uint64_t;

  bool init();  // false (and logged) if epoll is unavailable

  // Level-triggered registration; the handler must outlive the registration.
  bool add(int fd, uint32_t events, EventHandler* handler);
  bool modify(int fd, uint32_t events, EventHandler* handler);
  void remove(int fd);

  TimerId add_timer(std::chrono::milliseconds delay, std::function<void()> fn);
  void cancel_timer(TimerId id);  // no-op for 0, fired or unknown ids

  // Keeps `obj` alive until the current batch of events has been dispatched: events already
  // fetched for a connection that was just closed must not reach freed memory.
  void release_later(std::shared_ptr<void> obj) { graveyard_.push_back(std::move(obj)); }

  void run();  // until stop()
  void stop() { stopped_ = true; }

 private:
  int next_timeout_ms() const;
  void fire_due_timers();

  Fd epoll_;
  bool stopped_ = false;
  TimerId next_timer_id_ = 1;
  std::map<std::pair<Clock::time_point, TimerId>, std::function<void()>> timers_;
  std::unordered_map<TimerId, Clock::time_point> timer_deadlines_;
  std::vector<std::shared_ptr<void>> graveyard_;
};

}  // namespace sinit
