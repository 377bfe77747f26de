// metrics.listen: GET /metrics over HTTP/1.1 on a Unix socket or a loopback TCP port, from
// the agent's reactor. One request per connection, answered and closed; a client gets 5 s
// to send its request head (8 KiB at most) and at most 16 are served at once, so a scraper
// that stalls or floods costs the agent nothing it does not bound.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "metrics.hpp"
#include "reactor.hpp"

namespace sandbox_agent {

class MetricsServer {
 public:
  MetricsServer(asio::any_io_executor ex, std::function<std::string()> render);
  ~MetricsServer();

  // A Unix socket is made 0660 root:`group` (who may scrape, as for the agent's socket).
  Status listen(const MetricsEndpoint& endpoint, unsigned group);
  void start();
  void close();
  awaitable<void> wait_closed(Millis bound);  // as SocketServer::wait_closed

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with the coroutines: a frame may outlive the server
};

}  // namespace sandbox_agent
