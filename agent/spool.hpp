// The spool intake: batch systems drop request files (maildir style: write in tmp/, rename
// into new/); the agent claims each (new/ → cur/), launches it through the same supervisor
// path as the socket, keeps status/NAME.json current, and moves the file to done/ when the
// sandbox ends — or to rejected/ with NAME.error.json when it is not a valid request.
#pragma once

#include <string>
#include <unordered_map>
#include <unordered_set>

#include "durable_writer.hpp"
#include "events.hpp"
#include "reactor.hpp"
#include "semaphore.hpp"
#include "sandbox_agent/config.hpp"
#include "supervisor.hpp"
#include "watchers.hpp"

namespace sandbox_agent {

class SpoolIntake {
 public:
  SpoolIntake(asio::any_io_executor ex, const Config& config, Supervisor& supervisor,
              EventBus& events, DirWatcher& dirs, DurableWriter& writer);
  ~SpoolIntake();

  Status open();  // creates the directories and locks the spool (one agent per spool)
  // Resumes claimed files (cur/), claims what is waiting in new/, then follows new/.
  void start();
  void close();

  static bool is_request_name(std::string_view name);
  std::size_t in_progress() const { return in_progress_.size(); }  // claimed, not yet done

 private:
  void on_new_entry(std::string_view name, std::uint32_t mask);
  void rescan_new();
  awaitable<void> claim(std::string name);
  awaitable<void> process(std::string name);  // a file already in cur/
  // Moves from_dir/name to rejected/ (never over anything) with its NAME.error.json.
  // Retried while the disk refuses; completes once moved (or the file is gone, or closing).
  awaitable<void> reject(std::string from_dir, std::string name, Error error);
  void on_event(const StateEvent& e, const Sandbox& sb);
  void write_status(const std::string& name, const Sandbox& sb, bool terminal);
  void retry_status(const std::string& name, const std::string& id);
  void done_with(const std::string& name);  // no longer in progress: look at new/NAME again if asked
  void finish(const std::string& name);
  std::string dir(std::string_view sub) const;

  asio::any_io_executor ex_;
  const Config& config_;
  Supervisor& supervisor_;
  EventBus& events_;
  DirWatcher& dirs_;
  DurableWriter& writer_;
  std::unordered_set<std::string> in_progress_;  // names being claimed or processed
  std::unordered_set<std::string> recheck_;      // names seen in new/ while in progress
  std::uint64_t event_token_ = 0;
  int watch_wd_ = -1;
  std::unordered_map<std::string, std::string> unwritten_status_;  // name -> sandbox id
  bool retrying_status_ = false;
  int lock_fd_ = -1;  // the spool directory, flock'ed: one agent per spool
  AsyncSemaphore reading_;  // claimed files being opened and read at once
};

}  // namespace sandbox_agent
