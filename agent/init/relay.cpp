#include "relay.hpp"

#include <cerrno>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.hpp"
#include "relay_pair.hpp"
#include "unix_socket.hpp"

namespace sinit {

namespace {
constexpr auto kProbeInterval = std::chrono::milliseconds(5);
constexpr auto kAcceptPause = std::chrono::milliseconds(100);  // after EMFILE and the like
constexpr int kBacklog = 4096;  // the kernel caps it at somaxconn
}  // namespace

Relay::Relay(EventLoop& loop, std::string inner_path, std::string relay_path)
    : loop_(loop), inner_path_(std::move(inner_path)), relay_path_(std::move(relay_path)) {}

Relay::~Relay() { shutdown(); }

void Relay::remove_stale_socket() {
  if (::unlink(relay_path_.c_str()) == 0)
    log_msg("relay: removed stale socket %s", relay_path_.c_str());
  else if (errno != ENOENT)
    log_msg("relay: cannot remove stale %s: %s", relay_path_.c_str(), errno_str(errno).c_str());
}

void Relay::start_waiting() {
  waiting_since_ms_ = monotonic_ms();
  log_msg("relay: waiting for dockerd's socket %s", inner_path_.c_str());
  probe_inner();
}

void Relay::stop_waiting() {
  if (probe_timer_ == 0) return;
  loop_.cancel_timer(probe_timer_);
  probe_timer_ = 0;
  log_msg("relay: dockerd is gone; stopped waiting for %s", inner_path_.c_str());
}

void Relay::probe_inner() {
  probe_timer_ = 0;
  Fd probe;
  int err = connect_unix(inner_path_, &probe);
  // EINPROGRESS and EAGAIN (backlog full) also mean that something listens there.
  if (err == 0 || err == EINPROGRESS || err == EAGAIN) {
    log_msg("relay: %s accepts connections (%lld ms after dockerd started)", inner_path_.c_str(),
            monotonic_ms() - waiting_since_ms_);
    start_listening();
    return;
  }
  if (err != ENOENT && err != ECONNREFUSED && err != last_probe_errno_)
    log_msg("relay: probing %s: %s (will keep trying)", inner_path_.c_str(),
            errno_str(err).c_str());
  last_probe_errno_ = err;
  probe_timer_ = loop_.add_timer(kProbeInterval, [this] { probe_inner(); });
}

void Relay::start_listening() {
  const char* step = "";
  int err = listen_unix(relay_path_, kBacklog, &listener_, &step);
  if (err != 0) {
    log_msg("relay: cannot listen on %s (%s: %s); no relay", relay_path_.c_str(), step,
            errno_str(err).c_str());
    return;
  }
  listener_registered_ = loop_.add(listener_.get(), EPOLLIN, this);
  log_msg("relay: listening on %s, forwarding to %s", relay_path_.c_str(), inner_path_.c_str());
}

void Relay::on_events(uint32_t) { accept_all(); }

void Relay::accept_all() {
  while (listener_.valid()) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      auto pair = std::make_shared<RelayPair>(loop_, *this, Fd(fd));
      pairs_.emplace(pair.get(), pair);
      pair->start();
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN) return;
    int err = errno;
    log_msg("relay: accept: %s", errno_str(err).c_str());
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      // Level-triggered epoll would report the pending connection again at once: pause.
      loop_.remove(listener_.get());
      listener_registered_ = false;
      resume_timer_ = loop_.add_timer(kAcceptPause, [this] {
        resume_timer_ = 0;
        if (listener_.valid()) listener_registered_ = loop_.add(listener_.get(), EPOLLIN, this);
      });
    }
    return;
  }
}

void Relay::on_pair_closed(RelayPair* pair) {
  auto it = pairs_.find(pair);
  if (it == pairs_.end()) return;
  loop_.release_later(std::move(it->second));
  pairs_.erase(it);
}

void Relay::note_connect_failure(int err) {
  // A client retrying in a loop while dockerd is down must not flood init.log.
  long long now = monotonic_ms();
  if (now - last_failure_log_ms_ < 1000) {
    ++suppressed_failures_;
    return;
  }
  if (suppressed_failures_ > 0)
    log_msg("relay: cannot connect to %s: %s; closing the client connection (and %d more "
            "since the last such line)",
            inner_path_.c_str(), errno_str(err).c_str(), suppressed_failures_);
  else
    log_msg("relay: cannot connect to %s: %s; closing the client connection",
            inner_path_.c_str(), errno_str(err).c_str());
  last_failure_log_ms_ = now;
  suppressed_failures_ = 0;
}

void Relay::shutdown() {
  loop_.cancel_timer(probe_timer_);
  loop_.cancel_timer(resume_timer_);
  probe_timer_ = resume_timer_ = 0;
  pairs_.clear();
  if (listener_.valid()) {
    if (listener_registered_) loop_.remove(listener_.get());
    listener_.reset();
    if (::unlink(relay_path_.c_str()) == 0)
      log_msg("relay: removed %s", relay_path_.c_str());
    else
      log_msg("relay: cannot remove %s: %s", relay_path_.c_str(), errno_str(errno).c_str());
  }
}

}  // namespace sinit
