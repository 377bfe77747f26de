// Descriptors over a Unix socket (SCM_RIGHTS), both ways, never blocking: the socket intake
// receives a client's stdio with `exec` and `cp` and hands out log descriptors; the agent
// passes runsc's stdio to its spawn helper.
#pragma once

#include <sys/types.h>

#include <string_view>
#include <vector>

#include "unique_fd.hpp"

namespace sandbox_agent {

// At most this many descriptors ride on one client message; more are closed and flagged.
inline constexpr std::size_t kMaxPassedFds = 3;
// The most any caller may ask for (the spawn helper: a child's fds 0-3).
inline constexpr std::size_t kMaxFdsPerMessage = 4;

struct Received {
  ssize_t bytes = 0;           // what recvmsg returned (-1 with errno, 0 at EOF)
  std::vector<UniqueFd> fds;   // received with these bytes (close-on-exec)
  bool truncated = false;      // more than `max_fds` came: all of them were closed
  bool data_truncated = false; // a datagram longer than `len` (SOCK_SEQPACKET): its rest is lost
};

// One recvmsg(MSG_DONTWAIT) into `buf`, accepting up to `max_fds` (≤ kMaxFdsPerMessage).
Received receive_with_fds(int sock, char* buf, std::size_t len, std::size_t max_fds = kMaxPassedFds);

// Sends as much of `data` as the socket takes now, with `fds` (up to kMaxFdsPerMessage, none
// for an empty span) attached to its first byte; -1 with errno like sendmsg.
ssize_t send_with_fds(int sock, std::string_view data, const int* fds, std::size_t count);
inline ssize_t send_with_fd(int sock, std::string_view data, int fd) { return send_with_fds(sock, data, &fd, 1); }

}  // namespace sandbox_agent
