// Descriptors over a Unix socket (agent/fd_passing.hpp): what the intake receives with a line.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "fd_passing.hpp"

using namespace sandbox_agent;

namespace {

struct Pair {
  int a = -1, b = -1;
  Pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    a = fds[0];
    b = fds[1];
  }
  ~Pair() {
    ::close(a);
    ::close(b);
  }
};

void send_fds(int sock, const char* text, const std::vector<int>& fds) {
  iovec iov{const_cast<char*>(text), std::strlen(text)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
  }
  REQUIRE(::sendmsg(sock, &msg, 0) == static_cast<ssize_t>(iov.iov_len));
}

int open_fds() {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) n += ::fcntl(fd, F_GETFD) >= 0;
  return n;
}

}  // namespace

TEST_CASE("fd passing: descriptors come with their bytes, close-on-exec") {
  Pair p;
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  send_fds(p.a, "line\n", {null, null, null});
  char buf[64];
  auto got = receive_with_fds(p.b, buf, sizeof buf);
  CHECK(got.bytes == 5);
  CHECK(std::string(buf, 5) == "line\n");
  REQUIRE(got.fds.size() == 3);
  CHECK_FALSE(got.truncated);
  for (auto& fd : got.fds) CHECK((::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
  ::close(null);
}

TEST_CASE("fd passing: more than three are refused and none of them is kept") {
  Pair p;
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int before = open_fds();
  send_fds(p.a, "x", {null, null, null, null, null, null});
  char buf[64];
  {
    auto got = receive_with_fds(p.b, buf, sizeof buf);
    CHECK(got.bytes == 1);
    CHECK(got.truncated);
    CHECK(got.fds.empty());
  }
  CHECK(open_fds() == before);
  ::close(null);
}

TEST_CASE("fd passing: nothing waiting, and the end of the stream") {
  Pair p;
  char buf[8];
  auto none = receive_with_fds(p.b, buf, sizeof buf);
  CHECK(none.bytes < 0);
  CHECK((errno == EAGAIN || errno == EWOULDBLOCK));
  ::shutdown(p.a, SHUT_WR);
  CHECK(receive_with_fds(p.b, buf, sizeof buf).bytes == 0);
}
