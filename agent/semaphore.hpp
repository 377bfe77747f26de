// A FIFO counting semaphore for coroutines on one thread: bounds runsc invocations.
#pragma once

#include <algorithm>
#include <deque>

#include "reactor.hpp"

namespace sandbox_agent {

class AsyncSemaphore {
 public:
  // Lets whoever waits give up its place from outside (a stop for a launch still queued).
  class Abandon {
   public:
    void now() {
      abandoned_ = true;
      if (turn_) turn_->cancel();
    }
    bool abandoned() const { return abandoned_; }

   private:
    friend class AsyncSemaphore;
    bool abandoned_ = false;
    asio::steady_timer* turn_ = nullptr;  // the wait in progress, if any
  };

  AsyncSemaphore(asio::any_io_executor ex, unsigned count) : ex_(std::move(ex)), free_(count) {}

  // True once the slot is ours; false if `abandon` gave the place up first.
  awaitable<bool> acquire(Abandon* abandon = nullptr) {
    if (abandon && abandon->abandoned_) co_return false;
    if (free_ > 0 && waiters_.empty()) {
      --free_;
      co_return true;
    }
    Waiter me{asio::steady_timer(ex_, Clock::time_point::max())};
    waiters_.push_back(&me);
    struct Leave {  // if the waiting coroutine is destroyed (or gives up), leave the queue
      std::deque<Waiter*>& q;
      Waiter* w;
      Abandon* abandon;
      ~Leave() {
        if (abandon) abandon->turn_ = nullptr;
        // Granted: release() has taken it off the queue already. Searching anyway made each
        // acquire O(waiters): quadratic with thousands of launches queued for runsc.
        if (w->granted) return;
        if (auto it = std::find(q.begin(), q.end(), w); it != q.end()) q.erase(it);
      }
    } leave{waiters_, &me, abandon};
    if (abandon) abandon->turn_ = &me.turn;
    co_await me.turn.async_wait(use_nothrow);  // release() cancels it: the slot is ours
    co_return me.granted;
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
