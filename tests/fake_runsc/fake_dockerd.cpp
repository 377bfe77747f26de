#include "fake_dockerd.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "files.hpp"

namespace fake_runsc {
namespace {

constexpr size_t kMaxHeader = 16 * 1024;

constexpr std::string_view kHeaders =
    "Api-Version: 1.41\r\nDocker-Experimental: false\r\nOstype: linux\r\n"
    "Server: Docker/20.10.24+dfsg1 (linux)\r\nConnection: close\r\n";

std::string http_response(std::string_view status, std::string_view body, bool with_body) {
  std::string r = "HTTP/1.1 ";
  r.append(status).append("\r\n").append(kHeaders);
  r.append("Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  r.append(std::to_string(body.size())).append("\r\n\r\n");
  if (with_body) r.append(body);
  return r;
}

// "/_ping", "/v1.41/_ping" and "/_ping?x" all name the ping endpoint.
bool is_ping(std::string_view target) {
  target = target.substr(0, target.find('?'));
  if (target.starts_with("/v")) {
    const auto slash = target.find('/', 1);
    if (slash != std::string_view::npos) target.remove_prefix(slash);
  }
  return target == "/_ping";
}

std::string answer(PingMode mode, std::string_view head) {
  const std::string_view line = head.substr(0, head.find("\r\n"));
  const auto sp1 = line.find(' ');
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = sp1 == std::string_view::npos
                                      ? std::string_view{}
                                      : line.substr(sp1 + 1, line.find(' ', sp1 + 1) - sp1 - 1);
  const bool with_body = method != "HEAD";
  if ((method != "GET" && method != "HEAD") || !is_ping(target))
    return http_response("404 Not Found", "{\"message\":\"page not found\"}\n", with_body);
  switch (mode) {
    case PingMode::error:
      return http_response("500 Internal Server Error", "error", with_body);
    case PingMode::garbage:
      return "garbage\r\n";
    default:
      return http_response("200 OK", "OK", with_body);
  }
}

}  // namespace

// One accepted connection: reads a request head, answers, closes.
class HttpConn final : public IoHandler {
 public:
  HttpConn(FakeDockerd& owner, int fd) : owner_(owner), fd_(fd) {
    token_ = owner_.loop_.watch(fd_, EPOLLIN | EPOLLRDHUP, this);
  }
  ~HttpConn() {
    owner_.loop_.unwatch(token_, fd_);
    ::close(fd_);
  }
  HttpConn(const HttpConn&) = delete;
  HttpConn& operator=(const HttpConn&) = delete;

  void on_io(uint32_t events) override {
    if (!out_.empty() && (events & EPOLLOUT)) return flush();
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        if (answered_ || owner_.mode_ == PingMode::hang) continue;  // discard
        in_.append(buf, static_cast<size_t>(n));
        if (in_.size() > kMaxHeader) return owner_.drop(this);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      return owner_.drop(this);  // EOF or error: the client went away
    }
    if (answered_ || owner_.mode_ == PingMode::hang) return;
    const auto end = in_.find("\r\n\r\n");
    if (end == std::string::npos) return;  // the rest of the request is still coming
    answered_ = true;
    out_ = answer(owner_.mode_, std::string_view(in_).substr(0, end));
    in_.clear();
    in_.shrink_to_fit();
    flush();
  }

 private:
  void flush() {
    while (!out_.empty()) {
      const ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        owner_.loop_.rewatch(token_, fd_, EPOLLOUT);
        return;
      }
      if (n < 0) break;
      out_.erase(0, static_cast<size_t>(n));
    }
    owner_.drop(this);  // "Connection: close"
  }

  FakeDockerd& owner_;
  int fd_;
  EventLoop::Token token_ = 0;
  bool answered_ = false;
  std::string in_;
  std::string out_;
};

FakeDockerd::FakeDockerd(EventLoop& loop, PingMode mode, std::string socket_path)
    : loop_(loop), mode_(mode), path_(std::move(socket_path)) {}

FakeDockerd::~FakeDockerd() {
  conns_.clear();
  if (fd_ >= 0) {
    loop_.unwatch(token_, fd_);
    ::close(fd_);
  }
}

bool FakeDockerd::listen(std::string& err) {
  if (fd_ >= 0) {  // bound by bind_only()
    if (::listen(fd_, SOMAXCONN) == 0) return true;
    err = "listen on " + path_ + ": " + std::strerror(errno);
    return false;
  }
  fd_ = unix_listen(path_, SOMAXCONN, &err);
  return fd_ >= 0;
}

bool FakeDockerd::bind_only(std::string& err) {
  fd_ = unix_bind(path_, &err);
  return fd_ >= 0;
}

void FakeDockerd::start_answering() {
  if (fd_ >= 0 && token_ == 0) token_ = loop_.watch(fd_, EPOLLIN, this);
}

void FakeDockerd::remove_socket_file() { ::unlink(path_.c_str()); }

void FakeDockerd::on_io(uint32_t) {
  for (;;) {
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // EAGAIN, or out of descriptors: try again on the next event
    }
    auto conn = std::make_unique<HttpConn>(*this, fd);
    HttpConn* key = conn.get();
    conns_.emplace(key, std::move(conn));
  }
}

void FakeDockerd::drop(HttpConn* conn) { conns_.erase(conn); }

}  // namespace fake_runsc
