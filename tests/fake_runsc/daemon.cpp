// fake-runsc-daemon ROOT: serves every fake sandbox of ROOT until idle. Started by the
// CLI (spawn.cpp) with its listening socket as fd 3.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <utility>

#include "event_loop.hpp"
#include "files.hpp"
#include "layout.hpp"
#include "runtime.hpp"
#include "spec.hpp"
#include "wire.hpp"

namespace fake_runsc {
namespace {

class Daemon;

// One CLI invocation: reads its request, runs it, writes the reply, closes. A request
// that "hangs" keeps the connection open (without answer) until the CLI goes away.
class ClientConn final : public IoHandler {
 public:
  ClientConn(Daemon& daemon, int fd);
  ~ClientConn();
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;
  void on_io(uint32_t events) override;
  uint64_t serial() const { return serial_; }
  void answer(std::string bytes) {
    out_ = std::move(bytes);
    flush();
  }

 private:
  void read_request();
  void flush();

  Daemon& daemon_;
  int fd_;
  EventLoop::Token token_ = 0;
  uint64_t serial_;
  bool hanging_ = false;  // no answer yet, and none read for: hangs, or answers later
  std::string in_;
  std::string out_;
};

class Daemon final : public IoHandler {
 public:
  Daemon(std::string root, int listen_fd)
      : root_(std::move(root)),
        listen_fd_(listen_fd),
        runtime_(root_, &loop_, getpid(), &load_plan) {
    struct stat st {};
    if (::stat(join_path(root_, kSocketName).c_str(), &st) == 0) socket_ino_ = st.st_ino;
    if (::stat(root_.c_str(), &st) == 0) root_id_ = {st.st_dev, st.st_ino};
    listen_token_ = loop_.watch(listen_fd_, EPOLLIN, this);
  }

  void run() {
    const int64_t idle_limit_us = int64_t{kIdleExitSeconds} * 1'000'000;
    int64_t idle_since = 0;
    int64_t root_checked = 0;
    for (;;) {
      const bool idle = runtime_.empty() && clients_.empty();
      const int64_t now = monotonic_us();
      // A root removed under a daemon (a test's temporary directory, its runtime killed and
      // swept while a CLI was still starting this daemon) leaves nothing that could reach
      // it again, its socket included, and its sandboxes keep it from ever being idle.
      if (now - root_checked >= 1'000'000) {
        if (root_removed()) return;
        root_checked = now;
      }
      if (!idle) {
        idle_since = 0;
      } else if (idle_since == 0) {
        idle_since = now;
      } else if (now - idle_since >= idle_limit_us) {
        if (retire()) return;
        idle_since = now;  // could not take the lock: try again later
      }
      loop_.run_once(idle ? std::min<int64_t>(idle_since + idle_limit_us - now, 1'000'000) : 1'000'000);
    }
  }

  void on_io(uint32_t) override {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      auto conn = std::make_unique<ClientConn>(*this, fd);
      clients_.emplace(conn.get(), std::move(conn));
    }
  }

  EventLoop& loop() { return loop_; }
  Runtime& runtime() { return runtime_; }
  void drop(ClientConn* c) { clients_.erase(c); }
  uint64_t next_serial() { return ++serials_; }
  // The connection `serial` was, if it is still open (the CLI may have been killed).
  ClientConn* find(ClientConn* c, uint64_t serial) {
    auto it = clients_.find(c);
    return it != clients_.end() && c->serial() == serial ? c : nullptr;
  }

 private:
  bool root_removed() const {
    struct stat st {};
    if (::stat(root_.c_str(), &st) != 0) return errno == ENOENT || errno == ENOTDIR;
    return root_id_ != std::pair<dev_t, ino_t>{} && std::pair{st.st_dev, st.st_ino} != root_id_;
  }

  // Idle exit, under the lock so that no CLI spawns a daemon meanwhile. A CLI already
  // queued on the socket sees it closed without a reply and retries (starting a new
  // daemon); nothing of its request has run.
  bool retire() {
    const int lock =
        ::open(join_path(root_, kLockName).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
      if (lock >= 0) ::close(lock);
      return false;
    }
    const std::string sock = join_path(root_, kSocketName);
    struct stat st {};
    if (::stat(sock.c_str(), &st) == 0 && st.st_ino == socket_ino_) ::unlink(sock.c_str());
    ::unlink(join_path(root_, kPidName).c_str());
    loop_.unwatch(listen_token_, listen_fd_);
    ::close(listen_fd_);
    ::close(lock);
    return true;
  }

  std::string root_;
  int listen_fd_;
  ino_t socket_ino_ = 0;
  std::pair<dev_t, ino_t> root_id_{};
  EventLoop loop_;
  EventLoop::Token listen_token_ = 0;
  Runtime runtime_;
  std::unordered_map<ClientConn*, std::unique_ptr<ClientConn>> clients_;
  uint64_t serials_ = 0;
};

ClientConn::ClientConn(Daemon& daemon, int fd) : daemon_(daemon), fd_(fd), serial_(daemon.next_serial()) {
  token_ = daemon_.loop().watch(fd_, EPOLLIN | EPOLLRDHUP, this);
}

ClientConn::~ClientConn() {
  daemon_.loop().unwatch(token_, fd_);
  ::close(fd_);
}

void ClientConn::on_io(uint32_t events) {
  if (!out_.empty() && (events & EPOLLOUT)) return flush();
  char buf[8192];
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      if (hanging_) continue;
      in_.append(buf, static_cast<size_t>(n));
      if (in_.size() > kMaxRequest + 4) return daemon_.drop(this);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    return daemon_.drop(this);  // the CLI is gone (e.g. killed while a command hangs)
  }
  if (!hanging_) read_request();
}

void ClientConn::read_request() {
  if (in_.size() < 4) return;
  uint32_t len = 0;
  std::memcpy(&len, in_.data(), 4);
  if (len > kMaxRequest) return daemon_.drop(this);
  if (in_.size() < 4 + size_t{len}) return;
  const std::string payload = in_.substr(4, len);
  in_.clear();
  const auto request = decode_request(payload);
  if (!request) return daemon_.drop(this);
  const Reply reply = daemon_.runtime().execute(*request);
  if (reply.hang) {
    hanging_ = true;
    return;
  }
  if (reply.delay_ms > 0) {
    hanging_ = true;
    daemon_.loop().after_ms(reply.delay_ms, [&daemon = daemon_, self = this, serial = serial_,
                                             bytes = encode_reply(reply)]() mutable {
      if (auto* c = daemon.find(self, serial)) c->answer(std::move(bytes));
    });
    return;
  }
  out_ = encode_reply(reply);
  flush();
}

void ClientConn::flush() {
  while (!out_.empty()) {
    const ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      daemon_.loop().rewatch(token_, fd_, EPOLLOUT | EPOLLRDHUP);
      return;
    }
    if (n < 0) break;
    out_.erase(0, static_cast<size_t>(n));
  }
  daemon_.drop(this);
}

void raise_fd_limit() {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  rlimit want{1u << 20, 1u << 20};
  if (want.rlim_max > lim.rlim_max && setrlimit(RLIMIT_NOFILE, &want) == 0) return;
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
}

}  // namespace
}  // namespace fake_runsc

int main(int argc, char** argv) {
  using namespace fake_runsc;
  if (argc != 2 || argv[1][0] != '/') return 2;
  const std::string root = argv[1];
  if (::chdir("/") != 0) return 1;
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);
  raise_fd_limit();
  write_file(join_path(root, kPidName), std::to_string(getpid()) + "\n", nullptr);
  Daemon daemon(root, kListenFd);
  daemon.run();
  return 0;
}
