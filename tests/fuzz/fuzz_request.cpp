// libFuzzer target: a launch request, as either intake reads it.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sandbox_agent/request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const sandbox_agent::RequestPolicy policy{{"/tmp", "/nonexistent/prefix"}, true, 1 << 20};
  auto r = sandbox_agent::parse_launch_request(
      std::string_view(reinterpret_cast<const char*>(data), size), policy);
  if (!r) {
    // Errors name a known code and, when they name a field, a JSON pointer.
    const auto& e = r.error();
    if (!e.field.empty() && e.field[0] != '/') __builtin_trap();
    (void)e.describe();
  }
  return 0;
}
