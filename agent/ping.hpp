// Docker's readiness check, `GET /_ping` → `200` with body `OK`, over a Unix socket.
#pragma once

#include <string>
#include <string_view>

#include "reactor.hpp"

namespace sandbox_agent {

inline constexpr std::string_view kPingRequest =
    "GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: sandbox-agent\r\nConnection: close\r\n\r\n";

struct PingVerdict {
  enum Kind { incomplete, ok, bad } kind = incomplete;
  std::string why;  // for bad
};

// Judges the bytes received so far. `eof`: the peer closed, nothing more will come.
PingVerdict judge_ping_response(std::string_view received, bool eof);

struct PingResult {
  bool ok = false;
  bool refused = false;  // nothing listening (yet): ENOENT / ECONNREFUSED
  bool timed_out = false;  // the attempt's own timeout cut it short
  std::string error;
};

// One attempt: connect, send, read the reply, all within `timeout`.
awaitable<PingResult> ping_docker(std::string socket_path, Millis timeout);

}  // namespace sandbox_agent
