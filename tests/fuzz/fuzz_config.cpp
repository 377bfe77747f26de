// libFuzzer target: the configuration file.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sandbox_agent/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sandbox_agent::ConfigOverrides overrides;
  overrides.root = "/tmp/sandbox-agent-fuzz";
  auto c = sandbox_agent::parse_config(std::string_view(reinterpret_cast<const char*>(data), size), overrides);
  if (c && c->socket.path.empty()) __builtin_trap();
  return 0;
}
