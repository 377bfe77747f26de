#include "relay_pair.hpp"

#include <cerrno>
#include <cstring>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "relay.hpp"
#include "unix_socket.hpp"

namespace sinit {

namespace {
// dockerd's listen backlog is full (connect gives EAGAIN on Unix sockets): retry for a while,
// the client is already waiting in our own backlog anyway.
constexpr auto kBacklogRetryDelay = std::chrono::milliseconds(10);
constexpr long long kBacklogRetryLimitMs = 10000;
}  // namespace

RelayPair::RelayPair(EventLoop& loop, Relay& relay, Fd client) : loop_(loop), relay_(relay) {
  for (int i = 0; i < 2; ++i) {
    sides_[i].pair = this;
    sides_[i].index = i;
  }
  sides_[kClient].fd = std::move(client);
  started_ms_ = monotonic_ms();
}

RelayPair::~RelayPair() {
  if (!closed_) release_fds();  // init is exiting: close quietly
}

void RelayPair::start() {
  connect_inner();
  if (!closed_) update();
}

void RelayPair::connect_inner() {
  retry_timer_ = 0;
  int err = connect_unix(relay_.inner_path(), &sides_[kInner].fd);
  if (err == 0) return;
  if (err == EINPROGRESS) {
    connecting_ = true;
    return;
  }
  if (err == EAGAIN && monotonic_ms() - started_ms_ < kBacklogRetryLimitMs) {
    retry_timer_ = loop_.add_timer(kBacklogRetryDelay, [this] {
      connect_inner();
      if (!closed_) update();
    });
    return;
  }
  relay_.note_connect_failure(err);
  close();
}

bool RelayPair::connected(int side) const {
  return side == kClient || (sides_[kInner].fd.valid() && !connecting_);
}

bool RelayPair::can_read(int side) const {
  // Reading the client while the inner connection is still being set up is fine: it only fills
  // the buffer, which is flushed once connected.
  if (side == kInner && !connected(kInner)) return false;
  return !sides_[side].read_eof && !buffers_[side].full();
}

bool RelayPair::has_output(int side) const {
  return connected(side) && !buffers_[1 - side].empty();
}

void RelayPair::on_events(int side, uint32_t events) {
  if (closed_) return;  // stale event from the same epoll batch
  if (side == kInner && connecting_) {
    int err = socket_error(sides_[kInner].fd.get());
    if (err != 0) {
      relay_.note_connect_failure(err);
      close();
      return;
    }
    connecting_ = false;
    events |= EPOLLOUT;  // flush whatever the client already sent
  }
  const uint32_t readable = EPOLLIN | EPOLLHUP | EPOLLERR;
  const uint32_t writable = EPOLLOUT | EPOLLHUP | EPOLLERR;
  if ((events & readable) && can_read(side) && !read_from(side)) return;
  if ((events & writable) && has_output(side) && !write_to(side)) return;
  update();
}

bool RelayPair::read_from(int side) {
  Buffer& buf = buffers_[side];
  if (buf.end == kBufferSize && buf.begin > 0) {  // compact to make room at the end
    std::memmove(buf.data, buf.data + buf.begin, buf.used());
    buf.end -= buf.begin;
    buf.begin = 0;
  }
  ssize_t n = ::recv(sides_[side].fd.get(), buf.data + buf.end, kBufferSize - buf.end, 0);
  if (n > 0) {
    buf.end += static_cast<size_t>(n);
    // Forward right away rather than waiting for the next EPOLLOUT round trip.
    return has_output(1 - side) ? write_to(1 - side) : true;
  }
  if (n == 0) {
    sides_[side].read_eof = true;
    maybe_shut_write(1 - side);
    return true;
  }
  if (errno == EAGAIN || errno == EINTR) return true;
  close();
  return false;
}

bool RelayPair::write_to(int side) {
  Buffer& buf = buffers_[1 - side];
  ssize_t n = ::send(sides_[side].fd.get(), buf.data + buf.begin, buf.used(), MSG_NOSIGNAL);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return true;
    close();  // EPIPE, ECONNRESET: the peer is gone
    return false;
  }
  buf.begin += static_cast<size_t>(n);
  if (buf.empty()) {
    buf.begin = buf.end = 0;
    maybe_shut_write(side);
  }
  return true;
}

void RelayPair::maybe_shut_write(int side) {
  Side& s = sides_[side];
  if (s.write_shut || !sides_[1 - side].read_eof || !buffers_[1 - side].empty()) return;
  if (!connected(side)) return;  // done once the inner connection is up
  ::shutdown(s.fd.get(), SHUT_WR);  // ENOTCONN if the peer is gone: the next I/O says so
  s.write_shut = true;
}

void RelayPair::update() {
  if (closed_) return;
  bool done = true;
  for (int s = 0; s < 2; ++s)
    done = done && sides_[s].read_eof && buffers_[s].empty() && sides_[1 - s].write_shut;
  if (done) {
    close();
    return;
  }
  if (connected(kInner)) maybe_shut_write(kInner);  // client EOF seen before connect finished
  for (int s = 0; s < 2; ++s) {
    uint32_t mask = 0;
    if (s == kInner && connecting_) {
      mask = EPOLLOUT;
    } else {
      if (can_read(s)) mask |= EPOLLIN;
      if (has_output(s)) mask |= EPOLLOUT;
    }
    if (!set_interest(sides_[s], mask)) {
      close();
      return;
    }
  }
}

bool RelayPair::set_interest(Side& side, uint32_t mask) {
  if (!side.fd.valid() || mask == side.mask) return true;
  // Interest 0 means "not registered": epoll reports EPOLLHUP even for an empty mask, which
  // would spin the loop for a side we have nothing to do with until the other side moves.
  bool ok = true;
  if (mask == 0)
    loop_.remove(side.fd.get());
  else if (side.mask == 0)
    ok = loop_.add(side.fd.get(), mask, &side);
  else
    ok = loop_.modify(side.fd.get(), mask, &side);
  side.mask = ok ? mask : 0;
  return ok;
}

void RelayPair::release_fds() {
  loop_.cancel_timer(retry_timer_);
  retry_timer_ = 0;
  for (Side& s : sides_) {
    if (s.mask != 0) loop_.remove(s.fd.get());
    s.mask = 0;
    s.fd.reset();
  }
}

void RelayPair::close() {
  if (closed_) return;
  closed_ = true;
  release_fds();
  relay_.on_pair_closed(this);  // keeps us alive until the current batch of events is done
}

}  // namespace sinit
