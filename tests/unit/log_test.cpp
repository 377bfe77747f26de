// Log lines: untrusted text cannot start a line of its own (agent/log.hpp).
#include <doctest/doctest.h>

#include <string>

#include "log.hpp"

using sandbox_agent::log::escape_into;

namespace {
std::string escaped(std::string_view s) {
  std::string out;
  escape_into(s, out);
  return out;
}
}  // namespace

TEST_CASE("log: control characters are escaped, so a name cannot forge a line") {
  CHECK(escaped("job.json\n2026-12-01T00:00:00Z info forged") == "job.json\\n2026-12-01T00:00:00Z info forged");
  CHECK(escaped("a\rb\tc") == "a\\rb\\tc");
  CHECK(escaped(std::string("nul\0end", 7)) == "nul\\x00end");
  CHECK(escaped("\x1b[31mred\x7f") == "\\x1b[31mred\\x7f");
  CHECK(escaped("back\\slash") == "back\\\\slash");  // unambiguous: \n in a name stays \\n
}

TEST_CASE("log: printable text and UTF-8 pass unchanged") {
  CHECK(escaped("sandbox job-42 ready after 812 ms") == "sandbox job-42 ready after 812 ms");
  CHECK(escaped("caf\xc3\xa9 \xe2\x9c\x93") == "caf\xc3\xa9 \xe2\x9c\x93");
}
