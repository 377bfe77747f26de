// The relay: dockerd cannot create its socket in the host-bound directory (chown/chmod of a
// socket there fail with EPERM in gVisor), so dockerd listens inside the sandbox and the relay
// listens in the host-bound directory and forwards each connection.
//
// The relay socket is bound only once dockerd's inner socket accepts a connect(): the host agent
// takes the relay socket's appearance as the moment to start probing dockerd.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "event_loop.hpp"
#include "fd.hpp"

namespace sinit {

class RelayPair;

class Relay : public EventHandler {
 public:
  Relay(EventLoop& loop, std::string inner_path, std::string relay_path);
  ~Relay() override;

  // Removes a relay socket left by an earlier run, so nothing connects to it before we listen.
  void remove_stale_socket();
  // Polls the inner socket every 5 ms (as a loop timer, so signals are never held up) and
  // starts listening on the relay socket as soon as a connect() to it succeeds.
  void start_waiting();
  // dockerd is gone before it ever listened: stop polling.
  void stop_waiting();
  // Init is exiting: close every connection and remove the relay socket.
  void shutdown();

  const std::string& inner_path() const { return inner_path_; }
  bool listening() const { return listener_.valid(); }  // dockerd's socket has accepted
  void on_pair_closed(RelayPair* pair);
  void note_connect_failure(int err);  // rate-limited log line
  void on_events(uint32_t events) override;  // the listening socket is readable

 private:
  void probe_inner();
  void start_listening();
  void accept_all();

  EventLoop& loop_;
  std::string inner_path_, relay_path_;
  Fd listener_;
  bool listener_registered_ = false;
  EventLoop::TimerId probe_timer_ = 0;
  EventLoop::TimerId resume_timer_ = 0;
  long long waiting_since_ms_ = 0;
  int last_probe_errno_ = 0;
  std::unordered_map<RelayPair*, std::shared_ptr<RelayPair>> pairs_;
  long long last_failure_log_ms_ = -1000000;
  int suppressed_failures_ = 0;
};

}  // namespace sinit
