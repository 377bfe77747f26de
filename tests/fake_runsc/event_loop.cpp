#include "event_loop.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <ctime>

namespace fake_runsc {
namespace {

int64_t clock_ns(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

int64_t monotonic_us() { return clock_ns(CLOCK_MONOTONIC) / 1000; }
int64_t unix_now_us() { return clock_ns(CLOCK_REALTIME) / 1000; }
int64_t unix_now_ns() { return clock_ns(CLOCK_REALTIME); }

EventLoop::EventLoop() : epfd_(epoll_create1(EPOLL_CLOEXEC)) {
  if (epfd_ < 0) std::abort();
}

EventLoop::~EventLoop() { ::close(epfd_); }

EventLoop::Token EventLoop::watch(int fd, uint32_t events, IoHandler* handler) {
  const Token token = next_token_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) return 0;
  handlers_.emplace(token, handler);
  return token;
}

void EventLoop::rewatch(Token token, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::unwatch(Token token, int fd) {
  if (handlers_.erase(token) != 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::after_ms(int64_t delay_ms, std::function<void()> fn) {
  timers_.push_back(Timer{monotonic_us() + delay_ms * 1000, next_seq_++, std::move(fn)});
  std::push_heap(timers_.begin(), timers_.end(), later);
}

void EventLoop::run_once(int64_t max_wait_us) {
  int64_t wait_us = max_wait_us;
  if (!timers_.empty()) wait_us = std::min(wait_us, timers_.front().due_us - monotonic_us());
  wait_us = std::max<int64_t>(wait_us, 0);
  const int timeout_ms = static_cast<int>(std::min<int64_t>((wait_us + 999) / 1000, INT_MAX));

  epoll_event events[256];
  const int n = epoll_wait(epfd_, events, 256, timeout_ms);
  for (int i = 0; i < n; ++i) {
    const auto it = handlers_.find(events[i].data.u64);
    if (it != handlers_.end()) it->second->on_io(events[i].events);
  }
  run_due_timers();
}

void EventLoop::run_due_timers() {
  const int64_t now = monotonic_us();
  while (!timers_.empty() && timers_.front().due_us <= now) {
    std::pop_heap(timers_.begin(), timers_.end(), later);
    Timer t = std::move(timers_.back());
    timers_.pop_back();
    t.fn();  // may add timers: the heap is consistent again here
  }
}

}  // namespace fake_runsc
