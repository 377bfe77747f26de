// The event bus (agent/events.hpp): every-sandbox subscribers and one-sandbox subscribers
// (held launch replies), subscribing and unsubscribing from inside a handler.
#include <doctest/doctest.h>

#include <asio/io_context.hpp>

#include <string>
#include <vector>

#include "events.hpp"

using namespace sandbox_agent;

namespace {
StateEvent event(const std::string& id, SandboxState state) { return {id, state, {}, 0, {}}; }

struct Bus {  // a bus and a sandbox to publish with (handlers here only read the event)
  asio::io_context io;
  Sandbox sb{io.get_executor()};
  EventBus bus;
};
}  // namespace

TEST_CASE_FIXTURE(Bus, "events: a one-sandbox subscriber hears only its sandbox; an every-sandbox one hears all") {
  std::vector<std::string> all, only_a, only_b;
  bus.subscribe([&](const StateEvent& e, const Sandbox&) { all.push_back(e.id); });
  bus.subscribe("a", [&](const StateEvent& e, const Sandbox&) { only_a.push_back(e.id); });
  bus.subscribe("b", [&](const StateEvent& e, const Sandbox&) { only_b.push_back(e.id); });
  for (auto id : {"a", "b", "c", "a"}) bus.publish(event(id, SandboxState::creating), sb);
  CHECK(all == std::vector<std::string>{"a", "b", "c", "a"});
  CHECK(only_a == std::vector<std::string>{"a", "a"});
  CHECK(only_b == std::vector<std::string>{"b"});
  CHECK(bus.size() == 3);
}

TEST_CASE_FIXTURE(Bus, "events: a held reply unsubscribes itself from its handler; the others of its sandbox still hear it") {
  int first = 0, second = 0;
  std::uint64_t token = 0;
  token = bus.subscribe("a", [&](const StateEvent&, const Sandbox&) {
    ++first;
    bus.unsubscribe(token);
  });
  bus.subscribe("a", [&](const StateEvent&, const Sandbox&) { ++second; });
  bus.publish(event("a", SandboxState::ready), sb);
  bus.publish(event("a", SandboxState::stopped), sb);
  CHECK(first == 1);
  CHECK(second == 2);
  CHECK(bus.size() == 1);
}

TEST_CASE_FIXTURE(Bus, "events: subscribing from a handler, and the last unsubscribe of a sandbox forgets it") {
  std::vector<std::string> heard;
  std::uint64_t late = 0;
  bus.subscribe([&](const StateEvent& e, const Sandbox&) {
    if (e.id == "a" && !late)  // a new sandbox's subscriber, added while publishing
      late = bus.subscribe("z", [&](const StateEvent& ev, const Sandbox&) { heard.push_back("z:" + ev.id); });
  });
  bus.publish(event("a", SandboxState::accepted), sb);
  bus.publish(event("z", SandboxState::accepted), sb);
  CHECK(heard == std::vector<std::string>{"z:z"});
  CHECK(bus.size() == 2);
  bus.unsubscribe(late);
  bus.unsubscribe(late);  // twice: harmless
  bus.publish(event("z", SandboxState::ready), sb);
  CHECK(heard.size() == 1);
  CHECK(bus.size() == 1);
}

TEST_CASE_FIXTURE(Bus, "events: a one-sandbox handler may subscribe more for its own sandbox while it is called") {
  int calls = 0, added = 0;
  bus.subscribe("a", [&](const StateEvent&, const Sandbox&) {
    ++calls;
    for (int i = 0; i < 64; ++i)  // enough to make the list reallocate under the walk
      bus.subscribe("a", [&](const StateEvent&, const Sandbox&) { ++added; });
    for (int i = 0; i < 64; ++i)  // and the map rehash
      bus.subscribe("other-" + std::to_string(calls) + "-" + std::to_string(i), [](const StateEvent&, const Sandbox&) {});
  });
  bus.publish(event("a", SandboxState::accepted), sb);
  CHECK(calls == 1);
  CHECK(added == 64);  // the new ones are walked in the same publish, as with every-sandbox subscribers
  CHECK(bus.size() == 1 + 64 + 64);
}
