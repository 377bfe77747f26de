// Writing JSON with cereal: exact field names through make_nvp, objects written by a type's
// save(), maps as JSON objects, absent optionals skipped. Include only where JSON is written.
#pragma once

// cereal writes through rapidjson's OStreamWrapper, whose Put() is std::ostream::put: a
// sentry per character, half the cost of rendering a spec (measured with callgrind). Every
// stream we hand cereal is a std::ostringstream we own (no tie, no flags), so characters go
// straight into its buffer. This header must be the only way cereal's JSON archive is
// included, so that every translation unit sees the same Put().
#include <rapidjson/ostreamwrapper.h>

#include <ostream>

namespace rapidjson {
template <>
inline void BasicOStreamWrapper<std::ostream>::Put(char c) {
  stream_.rdbuf()->sputc(c);
}
}  // namespace rapidjson

#include <cereal/archives/json.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sandbox_agent::json {

using cereal::make_nvp;

// A string-to-string map written as one JSON object, keys in the given order.
struct StringMap {
  const std::vector<std::pair<std::string, std::string>>& entries;
  template <class Archive>
  void save(Archive& ar) const {
    for (const auto& [k, v] : entries) ar(make_nvp(k.c_str(), v));
  }
};

// Writes `name` only when the optional holds a value.
template <class Archive, class T>
void save_optional(Archive& ar, const char* name, const T& opt) {
  if (opt) ar(make_nvp(name, *opt));
}

// Replaces bytes that are not valid UTF-8 with '?', so text read from logs can be embedded.
std::string utf8_sanitize(std::string_view text);

// cereal always indents; one-line output is that, minified (simdjson, string-aware).
std::string minify(const std::string& json);

// `s` as a JSON string literal, quotes included (for JSON built by hand: CNI's stdin,
// sandboxctl's requests).
std::string quote(std::string_view s);

enum class Layout {
  line,      // one line: NDJSON replies, status files, state records
  compact,   // no indentation, newlines kept (cheapest): config.json for runsc
  indented,  // for people: `sandbox-agent render`
};

// Serialises obj (a type with save()) as the root JSON object.
template <class T>
std::string to_json(const T& obj, Layout layout = Layout::line) {
  std::ostringstream os;
  {
    cereal::JSONOutputArchive ar(os, layout == Layout::indented ? cereal::JSONOutputArchive::Options::Default()
                                                                : cereal::JSONOutputArchive::Options::NoIndent());
    obj.save(ar);
  }
  std::string out = std::move(os).str();
  if (layout == Layout::line) return minify(out);
  return out + '\n';
}

}  // namespace sandbox_agent::json
