// The CLI <-> daemon protocol over ROOT/fake-runsc.sock, one request per connection.
//   request: u32 payload length, then payload = cwd '\0' (arg '\0')*
//   reply:   i32 exit code, u32 stdout length, u32 stderr length, stdout, stderr;
//            the daemon closes the connection after it. A connection closed before
//            any reply byte means the request was not run (the daemon was exiting).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fake_runsc {

inline constexpr uint32_t kMaxRequest = 1u << 20;

struct Request {
  std::string cwd;
  std::vector<std::string_view> args;  // views into the decoded payload
};

struct Reply {
  int code = 0;
  std::string out;
  std::string err;
  bool hang = false;  // never answer (directives create=hang, start=hang, delete=hang)
  int64_t delay_ms = 0;  // answer this much later (start_delay_ms); not on the wire

  static Reply hang_forever() {
    Reply r;
    r.hang = true;
    return r;
  }
  static Reply fail(int code, std::string message) {
    Reply r;
    r.code = code;
    r.err = std::move(message);
    if (!r.err.empty() && r.err.back() != '\n') r.err += '\n';
    return r;
  }
};

std::string encode_request(std::string_view cwd, const std::vector<std::string_view>& args);
// `payload` is the request after the length prefix; the returned views point into it.
std::optional<Request> decode_request(const std::string& payload);

std::string encode_reply(const Reply& r);
std::optional<Reply> decode_reply(std::string_view bytes);

}  // namespace fake_runsc
