// The one reactor: standalone Asio on io_uring. Included only by the modules that do I/O.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>

#if !defined(ASIO_HAS_IO_URING_AS_DEFAULT)
#error "sandbox-agent needs Asio's io_uring backend as the default (ASIO_HAS_IO_URING + ASIO_DISABLE_EPOLL)"
#endif

namespace sandbox_agent {

using asio::awaitable;
using asio::use_awaitable;
// Completion token that returns (error_code, result...) instead of throwing.
inline constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

inline std::int64_t ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<Millis>(b - a).count();
}

// A level-triggered wake-up for one coroutine: notify() makes the current (or next) wait()
// return at once; wait() also returns at `deadline`. Used to wake a sandbox's lifecycle
// when something happens to it (socket appeared, process exited, stop requested).
class Wake {
 public:
  explicit Wake(asio::any_io_executor ex) : timer_(std::move(ex)) {}
  void notify() {
    pending_ = true;
    timer_.cancel();
  }
  awaitable<void> wait_until(Clock::time_point deadline) {
    if (pending_) {
      pending_ = false;
      co_return;
    }
    timer_.expires_at(deadline);
    co_await timer_.async_wait(use_nothrow);
    pending_ = false;
  }
  awaitable<void> wait() { return wait_until(Clock::time_point::max()); }

 private:
  asio::steady_timer timer_;
  bool pending_ = false;
};

}  // namespace sandbox_agent
