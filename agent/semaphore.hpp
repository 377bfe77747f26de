// A FIFO counting semaphore for coroutines on one thread: bounds runsc invocations.
#pragma once

#include <algorithm>
#include <deque>

#include "reactor.hpp"

namespace sandbox_agent {

class AsyncSemaphore {
 public:
  AsyncSemaphore(asio::any_io_executor ex, unsigned count) : ex_(std::move(ex)), free_(count) {}

  awaitable<void> acquire() {
    if (free_ > 0 && waiters_.empty()) {
      --free_;
      co_return;
    }
    Waiter me{asio::steady_timer(ex_, Clock::time_point::max())};
    waiters_.push_back(&me);
    struct Leave {  // if the waiting coroutine is destroyed, give up its place
      std::deque<Waiter*>& q;
      Waiter* w;
      ~Leave() {
        // Granted: release() has taken it off the queue already. Searching anyway made each
        // acquire O(waiters): quadratic with thousands of launches queued for runsc.
        if (w->granted) return;
        if (auto it = std::find(q.begin(), q.end(), w); it != q.end()) q.erase(it);
      }
    } leave{waiters_, &me};
    co_await me.turn.async_wait(use_nothrow);  // release() cancels it: the slot is ours
  }

  void release() {
    if (waiters_.empty()) {
      ++free_;
      return;
    }
    auto* next = waiters_.front();  // hand the slot over directly: FIFO, no barging
    waiters_.pop_front();
    next->granted = true;
    next->turn.cancel();
  }

  unsigned waiting() const { return static_cast<unsigned>(waiters_.size()); }
  unsigned available() const { return free_; }

 private:
  asio::any_io_executor ex_;
  unsigned free_;
  struct Waiter {
    asio::steady_timer turn;
    bool granted = false;
  };
  std::deque<Waiter*> waiters_;
};

}  // namespace sandbox_agent
