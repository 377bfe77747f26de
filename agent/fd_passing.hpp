// Descriptors over a Unix stream socket (SCM_RIGHTS), both ways, never blocking: the socket
// intake receives a client's stdio with `exec` and `cp`, and hands out log descriptors.
#pragma once

#include <sys/types.h>

#include <string_view>
#include <vector>

#include "unique_fd.hpp"

namespace sandbox_agent {

// At most this many descriptors ride on one message; more are closed and flagged.
inline constexpr std::size_t kMaxPassedFds = 3;

struct Received {
  ssize_t bytes = 0;           // what recvmsg returned (-1 with errno, 0 at EOF)
  std::vector<UniqueFd> fds;   // received with these bytes (close-on-exec)
  bool truncated = false;      // more than kMaxPassedFds came: all of them were closed
};

// One recvmsg(MSG_DONTWAIT) into `buf`.
Received receive_with_fds(int sock, char* buf, std::size_t len);

// Sends as much of `data` as the socket takes now, with `fd` attached to its first byte;
// -1 with errno like sendmsg.
ssize_t send_with_fd(int sock, std::string_view data, int fd);

}  // namespace sandbox_agent
