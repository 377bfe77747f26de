// The Docker API socket of one fake sandbox: the relay socket sandbox-init would create
// in the host-mounted status dir, answering GET /_ping like dockerd.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "event_loop.hpp"
#include "spec.hpp"

namespace fake_runsc {

class HttpConn;

class FakeDockerd final : public IoHandler {
 public:
  FakeDockerd(EventLoop& loop, PingMode mode, std::string socket_path);
  ~FakeDockerd();  // closes the listener and every connection; leaves the socket file
  FakeDockerd(const FakeDockerd&) = delete;
  FakeDockerd& operator=(const FakeDockerd&) = delete;

  // Binds and listens. Connections wait in the backlog until start_answering().
  bool listen(std::string& err);
  // Binds under the final name without listening (connects are refused until listen()),
  // as a relay that binds and then listens looks in between.
  bool bind_only(std::string& err);
  void start_answering();
  bool listening() const { return fd_ >= 0; }
  void remove_socket_file();

  void on_io(uint32_t events) override;

 private:
  friend class HttpConn;
  void drop(HttpConn* conn);

  EventLoop& loop_;
  PingMode mode_;
  std::string path_;
  int fd_ = -1;
  EventLoop::Token token_ = 0;
  std::unordered_map<HttpConn*, std::unique_ptr<HttpConn>> conns_;
};

}  // namespace fake_runsc
