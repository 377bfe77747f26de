// The agent's side of its spawn helper (agent/spawn_helper_main.cpp): a process started once
// that forks, execs and reaps runsc calls for the agent, so the reactor spends a sendmsg per
// call instead of a clone, and a datagram when it ends instead of a pidfd wait and a waitid.
// Children it started are Child objects like any other (wait, kill, killed when dropped).
//
// If the helper dies under the agent, the agent cannot know how its runsc calls in flight
// end; it exits at once, as if it had crashed, and recovery at the next start accounts for
// those calls exactly as after any crash (docs/durability.md).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "process.hpp"
#include "reactor.hpp"

namespace sandbox_agent {

struct SpawnLink;

// A child the helper started, as its Child holds it.
struct RemoteChild {
  RemoteChild(asio::any_io_executor ex, std::weak_ptr<SpawnLink> link, std::uint64_t seq)
      : link(std::move(link)), seq(seq), woken(std::move(ex)) {}
  ~RemoteChild();
  std::weak_ptr<SpawnLink> link;
  std::uint64_t seq;
  bool ended = false;
  ExitStatus status;
  Wake woken;
};

awaitable<ExitStatus> wait_remote(RemoteChild& child);
void kill_remote(RemoteChild& child, int sig);

class SpawnHelper {
 public:
  explicit SpawnHelper(asio::any_io_executor ex);
  ~SpawnHelper();
  SpawnHelper(const SpawnHelper&) = delete;
  SpawnHelper& operator=(const SpawnHelper&) = delete;

  // Runs `program --spawn-helper` with the agent's end of a socket pair at fd 3 and waits (at
  // most `timeout`) for it to say it is up.
  awaitable<Status> start(std::string program, Millis timeout = Millis(5000));
  bool up() const;
  pid_t pid() const;

  // Hands the child to the helper and returns at once. An error when the helper cannot take
  // it now (not up, its queue full, argv too large): the caller spawns the child itself.
  Result<Child> spawn(const SpawnSpec& spec);

  // What happens when the helper dies under the agent (default: log and exit, see above).
  // Tests replace it.
  void on_lost(std::function<void(const std::string&)> f);

 private:
  awaitable<void> read_loop(std::weak_ptr<SpawnLink> link);
  asio::any_io_executor ex_;
  std::shared_ptr<SpawnLink> link_;
  Child process_;
  std::function<void(const std::string&)> on_lost_;
};

}  // namespace sandbox_agent
