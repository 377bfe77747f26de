#include "fd_passing.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sandbox_agent {

Received receive_with_fds(int sock, char* buf, std::size_t len, std::size_t max_fds) {
  Received r;
  iovec iov{buf, len};
  // Room for one more than we accept, so "too many" is told apart from "exactly enough".
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxFdsPerMessage + 1))];
  max_fds = std::min(max_fds, kMaxFdsPerMessage);
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * (max_fds + 1));
  r.bytes = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (r.bytes < 0) return r;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      r.fds.emplace_back(fd);
    }
  }
  // Past the control buffer the kernel closed the rest (MSG_CTRUNC): flag, and close ours.
  if ((msg.msg_flags & MSG_CTRUNC) || r.fds.size() > max_fds) {
    r.truncated = true;
    r.fds.clear();
  }
  r.data_truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  return r;
}

ssize_t send_with_fds(int sock, std::string_view data, const int* fds, std::size_t count) {
  if (count > kMaxFdsPerMessage) {
    errno = EINVAL;
    return -1;
  }
  iovec iov{const_cast<char*>(data.data()), data.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (count) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * count);
    std::memcpy(CMSG_DATA(cm), fds, sizeof(int) * count);
  }
  return ::sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
}

}  // namespace sandbox_agent
