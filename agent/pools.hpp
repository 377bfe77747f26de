// Warm pools: keeps `size` sandboxes of each configured template launched and ready, so a
// launch naming the pool gets one in milliseconds (the claim is the supervisor's). Refills
// after each claim or loss; a member that fails backs the pool off (0.5 s doubling to 60 s,
// one member at a time), so a broken template never spins. Members are ordinary sandboxes
// with durable records: a restart adopts them, and start() replaces those the configuration
// no longer wants.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "events.hpp"
#include "reactor.hpp"
#include "sandbox_agent/config.hpp"
#include "supervisor.hpp"

namespace sandbox_agent {

class Pools {
 public:
  Pools(asio::any_io_executor ex, const Config& config, Supervisor& supervisor, EventBus& events);
  ~Pools();

  void start();  // after recover()
  void stop();   // shutdown: no more refills

  struct Info {
    std::string name;
    unsigned size = 0, ready = 0, warming = 0, failed_in_a_row = 0;
    std::optional<std::int64_t> retry_at_us;  // backing off until then (Unix µs)
    std::string last_error;
  };
  std::vector<Info> info() const;

 private:
  struct State;
  void on_event(const StateEvent& e, const Sandbox& sb);
  void top_up(State& st);
  void failed(State& st, std::string why);
  awaitable<void> launch_one(State* st);

  asio::any_io_executor ex_;
  const Config& config_;
  Supervisor& supervisor_;
  EventBus& events_;
  std::vector<std::unique_ptr<State>> pools_;
  std::uint64_t token_ = 0;
  bool running_ = false;
};

}  // namespace sandbox_agent
