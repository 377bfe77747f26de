// Kernel notifications on the reactor: one inotify instance for every watched directory
// (sandbox socket directories, the spool), and pidfds for processes that are not our
// children (sandbox processes), shared when several sandboxes report the same pid.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <asio/posix/stream_descriptor.hpp>

#include "reactor.hpp"
#include "sandbox_agent/error.hpp"

namespace sandbox_agent {

class DirWatcher {
 public:
  // name: the entry the event is about; mask: inotify bits. After a queue overflow every
  // callback is called once with an empty name and IN_Q_OVERFLOW: rescan.
  using Callback = std::function<void(std::string_view name, std::uint32_t mask)>;

  explicit DirWatcher(asio::any_io_executor ex);
  ~DirWatcher();
  Status open();
  Result<int> watch(const std::string& dir, std::uint32_t mask, Callback cb);
  void unwatch(int wd);
  void close();
  std::size_t size() const { return callbacks_.size(); }

 private:
  awaitable<void> read_loop();
  void dispatch(const char* events, std::size_t size);
  asio::any_io_executor ex_;
  std::unique_ptr<asio::posix::stream_descriptor> fd_;
  std::unordered_map<int, Callback> callbacks_;
};

class PidWatcher {
 public:
  using Callback = std::function<void()>;
  explicit PidWatcher(asio::any_io_executor ex);
  ~PidWatcher();
  // Calls cb (once, from the reactor) when `pid` exits — at once if it is already gone.
  // 0 when it cannot watch (no descriptor to spare: EMFILE, ENFILE, ENOMEM): try again later.
  std::uint64_t watch(pid_t pid, Callback cb);
  void cancel(std::uint64_t token);
  std::size_t processes() const { return procs_.size(); }

 private:
  struct Proc;
  void fire(pid_t pid);
  asio::any_io_executor ex_;
  std::unordered_map<pid_t, std::shared_ptr<Proc>> procs_;
  std::unordered_map<Proc*, std::shared_ptr<Proc>> retired_;  // cancelled, handler not yet run
  std::unordered_map<std::uint64_t, pid_t> tokens_;
  std::uint64_t next_token_ = 1;
};

}  // namespace sandbox_agent
