// Non-blocking, close-on-exec Unix stream sockets for the relay.
#pragma once

#include <string>

#include "fd.hpp"

namespace sinit {

// Starts a connect(2) to `path`. Returns 0 (connected), EINPROGRESS (wait for EPOLLOUT and
// check SO_ERROR), or the errno of the failure (EAGAIN: the listener's backlog is full).
int connect_unix(const std::string& path, Fd* out);

// The pending error of a non-blocking connect (getsockopt SO_ERROR).
int socket_error(int fd);

// unlink + bind + listen. Returns 0 or the errno of the step that failed (named in *step).
int listen_unix(const std::string& path, int backlog, Fd* out, const char** step);

}  // namespace sinit
