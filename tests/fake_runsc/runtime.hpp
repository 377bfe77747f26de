// The fake runsc proper: the table of containers of one --root and the commands on it.
// Commands live in runtime.cpp, the life of a running sandbox (timers, markers, fake
// dockerd) in lifecycle.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "container.hpp"
#include "event_loop.hpp"
#include "wire.hpp"

namespace fake_runsc {

class Runtime {
 public:
  using PlanLoader = std::optional<Plan> (*)(const std::string& bundle, std::string& err);

  // `loop` and `load_plan` are null when the CLI answers by itself because no daemon
  // runs: then there is no container, and every command but create can be answered from
  // the empty table (the CLI links no JSON parser).
  Runtime(std::string root, EventLoop* loop, int sandbox_pid, PlanLoader load_plan);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  Reply execute(const Request& req);
  bool empty() const { return table_.empty(); }

 private:
  using Args = std::span<const std::string_view>;
  Reply create(const Request& req, Args args);
  Reply start(Args args);
  Reply run(const Request& req, Args args);
  Reply start_created(Container& c, bool destroy);
  Reply state(Args args);
  Reply kill(Args args);
  Reply exec(Args args);
  Reply remove(Args args);
  Reply list(Args args);
  // Finds `id` as runsc does: by unique prefix (an id that prefixes another is ambiguous).
  Container* find(std::string_view id, std::string_view error_prefix, Reply& error);
  int pid_of(const Container& c) const { return c.status == Status::stopped ? -1 : pid_; }

  // lifecycle.cpp
  void begin_running(Container& c);
  void send_signal(Container& c, int sig);
  void stop(Container& c);
  void forget(Container& c);
  Container* by_serial(uint64_t serial);
  void on_main_exit(uint64_t serial, int code);
  void on_dockerd_listen(uint64_t serial);
  void on_relay_listen(uint64_t serial);
  void on_dockerd_answer(uint64_t serial);
  void on_dockerd_exit(uint64_t serial);
  void init_log(const Container& c, std::string_view message);
  void dockerd_log(const Container& c, std::string_view message);

  std::string root_;
  EventLoop* loop_;
  int pid_;  // the "sandbox pid": the daemon's own
  PlanLoader load_plan_;
  uint64_t next_serial_ = 1;
  std::map<std::string, std::unique_ptr<Container>, std::less<>> table_;
  std::unordered_map<uint64_t, Container*> by_serial_;
};

}  // namespace fake_runsc
