// sandboxctl's connection to the agent: blocking, one line out, lines (and the descriptors
// some replies carry) in.
#pragma once

#include <simdjson.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace sandboxctl {

class Client {
 public:
  bool connect(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (fd_ < 0) return false;
    if (path.size() >= sizeof sa.sun_path) {  // else the caller's strerror says "Success"
      errno = ENAMETOOLONG;
      return false;
    }
    std::memcpy(sa.sun_path, path.data(), path.size());
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  }
  // The line with `fds` attached (SCM_RIGHTS) to its first bytes: exec's stdio, cp's file.
  bool send_with_fds(const std::string& line, const std::vector<int>& fds) {
    iovec iov{const_cast<char*>(line.data()), line.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
    ssize_t n;
    do n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) return false;
    return static_cast<std::size_t>(n) == line.size() || send(line.substr(static_cast<std::size_t>(n)));
  }
  bool send(const std::string& line) {
    std::string_view data = line;
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // After a send failed with `err`: whether the agent hung up having left a reply line
  // (too_large closes the connection while the rest of an over-long line is still coming),
  // waiting for it at most `ms`. The line is then read as any other.
  bool reply_left(int err, int ms = 1000) {
    if (err != EPIPE && err != ECONNRESET) return false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!has_line()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0 || !fill()) return false;
    }
    return true;
  }
  // One reply line (without the newline); false when the agent hung up.
  bool read_line(std::string& line) {
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return true;
      }
      if (!fill()) return false;
    }
  }
  // One recvmsg into the buffer; false when the agent hung up. A reply may carry a
  // descriptor (logs): it is kept for the caller.
  bool fill() {
    char chunk[65536];
    iovec iov{chunk, sizeof chunk};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do n = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        fds_.push_back(received);
      }
    }
    buf_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }
  bool has_line() const { return buf_.find('\n') != std::string::npos; }
  int fd() const { return fd_; }
  // A descriptor a reply carried (SCM_RIGHTS), or -1; the caller owns it.
  int take_fd() {
    if (fds_.empty()) return -1;
    int fd = fds_.front();
    fds_.erase(fds_.begin());
    return fd;
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
    for (int f : fds_) ::close(f);
  }

 private:
  int fd_ = -1;
  std::string buf_;
  std::vector<int> fds_;  // descriptors replies carried
};

// After a failed send: 0 when the agent left a reply to read instead (see reply_left), else
// 2 and why on stderr.
inline int send_failed(Client& c, const std::string& socket) {
  int err = errno;
  if (c.reply_left(err)) return 0;
  std::fprintf(stderr, "sandboxctl: cannot send to %s: %s\n", socket.c_str(), std::strerror(err));
  return 2;
}

inline int usage(const std::string& msg) {
  std::fprintf(stderr, "sandboxctl: %s\n(see sandboxctl --help)\n", msg.c_str());
  return 2;
}

// A string member of a reply, or "".
inline std::string str(simdjson::dom::element e, const char* key) {
  std::string_view s;
  if (e[key].get_string().get(s)) return {};
  return std::string(s);
}

// Whether a line is a reply that says "ok": true.
inline bool ok(simdjson::dom::element reply) {
  bool b = false;
  return !reply["ok"].get_bool().get(b) && b;
}

// A member object of a reply, or an empty object where the agent (another version, say) left it
// out: fields read from it are then blank instead of a crash.
inline simdjson::dom::element member(simdjson::dom::element e, const char* key) {
  simdjson::dom::element m;
  if (!e[key].get(m) && m.is_object()) return m;
  static simdjson::dom::parser empty_parser;
  static simdjson::dom::element empty = empty_parser.parse(std::string_view("{}")).value();
  return empty;
}

// One reply line, parsed; 2 (and why, on stderr) when the agent hung up or sent garbage.
inline int read_reply(Client& c, simdjson::dom::parser& parser, simdjson::dom::element& reply, std::string& raw) {
  if (!c.read_line(raw)) {
    std::fprintf(stderr, "sandboxctl: the agent closed the connection\n");
    return 2;
  }
  if (parser.parse(raw).get(reply)) {
    std::fprintf(stderr, "sandboxctl: unreadable reply: %s\n", raw.c_str());
    return 2;
  }
  return 0;
}

// Prints the error the agent sent ("code /field: message"); returns 1 (2 for a line that is no error).
inline int print_error(simdjson::dom::element reply) {
  simdjson::dom::element err;
  if (reply["error"].get(err)) {  // neither a reply nor an error: say so, never guess
    std::fprintf(stderr, "sandboxctl: unexpected line from the agent: %s\n", simdjson::to_string(reply).c_str());
    return 2;
  }
  std::string field = str(err, "field");
  std::fprintf(stderr, "%s%s%s: %s\n", str(err, "code").c_str(), field.empty() ? "" : " ", field.c_str(),
               str(err, "message").c_str());
  return 1;
}

}  // namespace sandboxctl
