// The socket intake: NDJSON over a stream Unix socket, many clients at once, each checked
// with SO_PEERCRED; requests go to the supervisor, replies and watched events come back.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include <asio/local/stream_protocol.hpp>

#include "events.hpp"
#include "reactor.hpp"
#include "sandbox_agent/config.hpp"
#include "pools.hpp"
#include "supervisor.hpp"

namespace sandbox_agent {

class SocketServer {
 public:
  SocketServer(asio::any_io_executor ex, const Config& config, Supervisor& supervisor, EventBus& events,
               const Pools& pools);
  ~SocketServer();

  // Binds config.socket.path, or adopts an inherited listening socket (systemd) when
  // inherited_fd >= 0.
  Status listen(int inherited_fd = -1);
  void start();
  void close();  // stops accepting and drops every client
  // Completes once every coroutine of the server has returned (after close()), or after
  // `bound`. Asio 1.22's io_uring backend must not be torn down while a cancelled accept or
  // read is still in the ring: it would destroy that operation after the socket service.
  awaitable<void> wait_closed(Millis bound);
  std::size_t connections() const { return connections_.size(); }
  std::uint64_t connections_total() const { return connections_total_; }  // accepted since start
  // What the `metrics` op answers (the agent's whole exposition, rendered on demand).
  void set_metrics(std::function<std::string()> render) { metrics_ = std::move(render); }

 private:
  struct Connection;
  struct Passed;
  struct Running;  // counts a coroutine of the server while it runs
  using ConnectionPtr = std::shared_ptr<Connection>;
  awaitable<void> accept_loop();
  awaitable<void> serve(ConnectionPtr c);
  awaitable<void> write_loop(ConnectionPtr c);
  awaitable<void> handle_line(ConnectionPtr c, std::string_view line, Passed passed);
  // `fd`, when given, is passed with the line (SCM_RIGHTS) and closed once sent or dropped.
  void send(const ConnectionPtr& c, std::string line, int fd = -1);
  void drop(const ConnectionPtr& c, std::string_view why);
  bool peer_allowed(int fd, std::string& who) const;

  asio::any_io_executor ex_;
  const Config& config_;
  Supervisor& supervisor_;
  EventBus& events_;
  const Pools& pools_;
  asio::local::stream_protocol::acceptor acceptor_;
  std::set<ConnectionPtr> connections_;
  std::size_t watchers_ = 0;
  std::uint64_t connections_total_ = 0;
  std::function<std::string()> metrics_;
  std::size_t forbidden_ = 0;  // refused peers in their last moment: they hold no slot
  bool owns_path_ = false;
  struct RunningCount {  // shared with the coroutines: a frame may outlive the server
    std::size_t count = 0;
    Wake* all_returned = nullptr;
  };
  Wake all_returned_;
  std::shared_ptr<RunningCount> running_;
};

}  // namespace sandbox_agent
