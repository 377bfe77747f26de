// The runsc slots (agent/semaphore.hpp): FIFO hand-over, no barging, counts.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "semaphore.hpp"

using namespace sandbox_agent;

TEST_CASE("semaphore: waiters get the slot in the order they asked, and a released slot is not taken by a newcomer") {
  asio::io_context io;
  AsyncSemaphore slots(io.get_executor(), 1);
  std::vector<std::string> order;
  std::function<awaitable<void>(std::string)> worker = [&](std::string name) -> awaitable<void> {
    co_await slots.acquire();
    order.push_back(name);
    asio::steady_timer t(io, Millis(20));
    co_await t.async_wait(use_nothrow);
    slots.release();
    if (name == "a") {
      CHECK(slots.available() == 0);  // handed to b, not freed for whoever asks first
      // A newcomer right after a release queues behind b, c and d.
      asio::co_spawn(io, worker("e"), asio::detached);
    }
  };
  for (auto name : {"a", "b", "c", "d"}) asio::co_spawn(io, worker(name), asio::detached);
  io.poll();  // a holds the slot; b, c, d wait
  CHECK(slots.waiting() == 3);
  CHECK(slots.available() == 0);
  io.run();
  CHECK(order == std::vector<std::string>{"a", "b", "c", "d", "e"});
  CHECK(slots.waiting() == 0);
  CHECK(slots.available() == 1);
}

TEST_CASE("semaphore: thousands of waiters are served, each once") {
  asio::io_context io;
  AsyncSemaphore slots(io.get_executor(), 8);
  int served = 0, held = 0, most = 0;
  auto worker = [&]() -> awaitable<void> {
    co_await slots.acquire();
    ++served;
    most = std::max(most, ++held);
    asio::post(io, [&] {
      --held;
      slots.release();
    });
  };
  for (int i = 0; i < 5000; ++i) asio::co_spawn(io, worker(), asio::detached);
  io.run();
  CHECK(served == 5000);
  CHECK(most == 8);
  CHECK(slots.available() == 8);
}
