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

TEST_CASE("semaphore: an abandoned waiter leaves the queue at once, and the next one gets the slot") {
  asio::io_context io;
  AsyncSemaphore slots(io.get_executor(), 1);
  AsyncSemaphore::Abandon give_up;
  std::vector<std::string> got;
  auto waiter = [&](std::string name, AsyncSemaphore::Abandon* abandon) -> awaitable<void> {
    bool granted = co_await slots.acquire(abandon);
    got.push_back(name + (granted ? "+" : "-"));
    if (granted) slots.release();
  };
  REQUIRE(slots.available() == 1);
  asio::co_spawn(io, [&]() -> awaitable<void> { co_await slots.acquire(); }, asio::detached);  // holds it
  asio::co_spawn(io, waiter("quitter", &give_up), asio::detached);
  asio::co_spawn(io, waiter("next", nullptr), asio::detached);
  io.poll();
  CHECK(slots.waiting() == 2);
  give_up.now();
  io.poll();
  CHECK(got == std::vector<std::string>{"quitter-"});  // before any release
  CHECK(slots.waiting() == 1);
  slots.release();
  io.run();
  CHECK(got == std::vector<std::string>{"quitter-", "next+"});
  CHECK(slots.available() == 1);
  // Abandoned before it asks: it does not queue at all.
  asio::co_spawn(io, waiter("late", &give_up), asio::detached);
  io.restart();
  io.run();
  CHECK(got.back() == "late-");
  CHECK(slots.available() == 1);
}
