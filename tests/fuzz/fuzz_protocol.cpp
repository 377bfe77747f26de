// libFuzzer target: bytes arriving on the socket, framed into lines, each line parsed and
// answered (the error replies are formatted too).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "protocol.hpp"

using namespace sandbox_agent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const RequestPolicy policy{{"/tmp"}, false, 4096};
  std::string_view input(reinterpret_cast<const char*>(data), size);
  protocol::LineFramer framer(4096 + 1024);
  // The first byte chooses how the stream is cut into reads.
  std::size_t step = size ? 1 + static_cast<unsigned char>(input[0]) % 64 : 1;
  for (std::size_t off = 0; off < size; off += step) {
    framer.feed(input.substr(off, step));
    std::string_view line;
    for (;;) {
      auto next = framer.next(line);
      if (next == protocol::LineFramer::Next::need_more) break;
      if (next == protocol::LineFramer::Next::too_long) return 0;  // the connection closes
      auto parsed = protocol::parse_line(line, policy);
      if (auto* e = std::get_if<protocol::ParseError>(&parsed)) {
        auto reply = protocol::reply_error(e->error, e->tag);
        if (reply.empty() || reply.back() != '\n') __builtin_trap();
      }
    }
  }
  return 0;
}
