// One relayed connection: a client of the relay socket and a connection to dockerd's inner
// socket, with bytes copied both ways through bounded buffers.
//
// - Backpressure: a side is not read while the buffer towards the other side is full.
// - Half-close: EOF from one side becomes shutdown(SHUT_WR) on the other once the buffer
//   towards it has drained; the pair closes when both directions are done, or on any error.
#pragma once

#include <cstddef>
#include <cstdint>

#include "event_loop.hpp"
#include "fd.hpp"

namespace sinit {

class Relay;

class RelayPair {
 public:
  RelayPair(EventLoop& loop, Relay& relay, Fd client);
  ~RelayPair();
  RelayPair(const RelayPair&) = delete;
  RelayPair& operator=(const RelayPair&) = delete;

  void start();  // connects to the inner socket; may close the pair at once

 private:
  static constexpr size_t kBufferSize = 64 * 1024;
  enum { kClient = 0, kInner = 1 };

  struct Side : EventHandler {
    RelayPair* pair = nullptr;
    int index = 0;
    Fd fd;
    uint32_t mask = 0;        // what is registered with epoll (0: not registered)
    bool read_eof = false;    // this side sent EOF
    bool write_shut = false;  // we sent EOF (SHUT_WR) to this side
    void on_events(uint32_t events) override { pair->on_events(index, events); }
  };

  // Bytes read from one side, waiting to be written to the other.
  struct Buffer {
    char data[kBufferSize];
    size_t begin = 0, end = 0;
    size_t used() const { return end - begin; }
    bool empty() const { return begin == end; }
    bool full() const { return used() == kBufferSize; }
  };

  void connect_inner();
  void on_events(int side, uint32_t events);
  bool connected(int side) const;
  bool can_read(int side) const;
  bool has_output(int side) const;
  bool read_from(int side);  // false if the pair was closed
  bool write_to(int side);   // false if the pair was closed
  void maybe_shut_write(int side);
  void update();  // closes the pair when done, else sets each side's epoll interest
  bool set_interest(Side& side, uint32_t mask);
  void close();
  void release_fds();

  EventLoop& loop_;
  Relay& relay_;
  Side sides_[2];
  Buffer buffers_[2];  // buffers_[i]: read from side i, to be written to the other side
  bool connecting_ = false;
  bool closed_ = false;
  long long started_ms_ = 0;
  EventLoop::TimerId retry_timer_ = 0;
};

}  // namespace sinit
