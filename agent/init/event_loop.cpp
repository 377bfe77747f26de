#include "event_loop.hpp"

#include <cerrno>
#include <sys/epoll.h>

#include "log.hpp"

namespace sinit {

bool EventLoop::init() {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) {
    log_msg("epoll_create1: %s", errno_str(errno).c_str());
    return false;
  }
  return true;
}

bool EventLoop::add(int fd, uint32_t events, EventHandler* handler) {
  struct epoll_event ev {};
  ev.events = events;
  ev.data.ptr = handler;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    log_msg("epoll_ctl(ADD, fd %d): %s", fd, errno_str(errno).c_str());
    return false;
  }
  return true;
}

bool EventLoop::modify(int fd, uint32_t events, EventHandler* handler) {
  struct epoll_event ev {};
  ev.events = events;
  ev.data.ptr = handler;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    log_msg("epoll_ctl(MOD, fd %d): %s", fd, errno_str(errno).c_str());
    return false;
  }
  return true;
}

void EventLoop::remove(int fd) {
  struct epoll_event ev {};  // non-null for old kernels
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, &ev);
}

EventLoop::TimerId EventLoop::add_timer(std::chrono::milliseconds delay,
                                        std::function<void()> fn) {
  TimerId id = next_timer_id_++;
  Clock::time_point deadline = Clock::now() + delay;
  timers_.emplace(std::make_pair(deadline, id), std::move(fn));
  timer_deadlines_.emplace(id, deadline);
  return id;
}

void EventLoop::cancel_timer(TimerId id) {
  auto it = timer_deadlines_.find(id);
  if (it == timer_deadlines_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  timer_deadlines_.erase(it);
}

int EventLoop::next_timeout_ms() const {
  if (timers_.empty()) return -1;
  auto wait = timers_.begin()->first.first - Clock::now();
  if (wait <= Clock::duration::zero()) return 0;
  // Round up, or a timer due in 0.4 ms would spin epoll_wait(0) until it is due.
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
  return ms > 60000 ? 60000 : static_cast<int>(ms);
}

void EventLoop::fire_due_timers() {
  const Clock::time_point now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto node = timers_.extract(timers_.begin());
    timer_deadlines_.erase(node.key().second);
    node.mapped()();  // may add or cancel timers: the node is already out of the map
  }
}

void EventLoop::run() {
  constexpr int kMaxEvents = 64;
  struct epoll_event events[kMaxEvents];
  while (!stopped_) {
    int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, next_timeout_ms());
    if (n < 0) {
      if (errno == EINTR) continue;  // a signal: its byte is waiting in the signal pipe
      log_msg("epoll_wait: %s", errno_str(errno).c_str());
      n = 0;  // keep going: timers still need to fire
    }
    for (int i = 0; i < n && !stopped_; ++i)
      static_cast<EventHandler*>(events[i].data.ptr)->on_events(events[i].events);
    graveyard_.clear();
    if (!stopped_) fire_due_timers();
    graveyard_.clear();
  }
}

}  // namespace sinit
