// A single-threaded epoll loop with one timer heap for every timer of every sandbox.
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

namespace fake_runsc {

int64_t monotonic_us();
int64_t unix_now_us();
int64_t unix_now_ns();

class IoHandler {
 public:
  virtual void on_io(uint32_t events) = 0;

 protected:
  ~IoHandler() = default;
};

class EventLoop {
 public:
  // Identifies one registration; events for a token that was unwatched are dropped, so a
  // handler may destroy itself or others from inside on_io.
  using Token = uint64_t;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  Token watch(int fd, uint32_t events, IoHandler* handler);
  void rewatch(Token token, int fd, uint32_t events);
  void unwatch(Token token, int fd);

  // Runs `fn` once, `delay_ms` from now (timers due at the same time run in order added).
  void after_ms(int64_t delay_ms, std::function<void()> fn);

  // Waits for I/O at most until the next timer or `max_wait_us`, dispatches the events,
  // then runs the timers that are due.
  void run_once(int64_t max_wait_us);

 private:
  struct Timer {
    int64_t due_us;
    uint64_t seq;
    std::function<void()> fn;
  };
  static bool later(const Timer& a, const Timer& b) {
    return a.due_us != b.due_us ? a.due_us > b.due_us : a.seq > b.seq;
  }
  void run_due_timers();

  int epfd_;
  Token next_token_ = 1;
  uint64_t next_seq_ = 0;
  std::unordered_map<Token, IoHandler*> handlers_;
  std::vector<Timer> timers_;  // a min-heap ordered by `later`
};

}  // namespace fake_runsc
