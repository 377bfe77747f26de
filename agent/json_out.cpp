#include "json_out.hpp"

#include <simdjson.h>

namespace sandbox_agent::json {

std::string minify(const std::string& json) {
  std::string out(json.size(), '\0');
  std::size_t len = 0;
  if (simdjson::minify(json.data(), json.size(), out.data(), len) != simdjson::SUCCESS) return json;
  out.resize(len);
  return out;
}

std::string utf8_sanitize(std::string_view text) {
  if (simdjson::validate_utf8(text.data(), text.size())) return std::string(text);
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len > 0 && i + len <= text.size() && simdjson::validate_utf8(text.data() + i, len)) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += '?';
      ++i;
    }
  }
  return out;
}

}  // namespace sandbox_agent::json
