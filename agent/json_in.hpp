// Reading JSON with simdjson's ondemand API, with errors that name the field (a JSON pointer).
// Shared by every parser in the agent: requests, config, protocol lines, state records.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox_agent/error.hpp"

namespace sandbox_agent::json {

using simdjson::ondemand::value;

// Where we are in the document, as a JSON pointer built only when an error needs it: a
// chain of parent links on the parsing code's stack (parents outlive their children), keys
// viewing the parser's buffer. Parsing a valid request allocates nothing for it.
class Ptr {
 public:
  Ptr() = default;
  Ptr(std::string_view fixed) : fixed_(fixed) {}  // a literal pointer, e.g. "/op"
  Ptr child(std::string_view key) const {
    Ptr p;
    p.parent_ = this;
    p.key_ = key;
    return p;
  }
  Ptr child(std::size_t index) const {
    Ptr p;
    p.parent_ = this;
    p.index_ = index;
    return p;
  }
  std::string path() const;

 private:
  const Ptr* parent_ = nullptr;
  std::string_view key_;
  std::size_t index_ = std::string_view::npos;
  std::string_view fixed_;
};

// The error for a simdjson failure at `at`: type errors become invalid_request ("must be …"),
// anything else (a syntax error found while reading lazily) invalid_json.
Error simdjson_error(simdjson::error_code e, const Ptr& at, std::string_view expected);
Error invalid(const Ptr& at, std::string message);

Status read_string(value v, const Ptr& at, std::string& out, std::size_t max_len = 4096);
Status read_bool(value v, const Ptr& at, bool& out);
Status read_uint(value v, const Ptr& at, std::uint64_t& out, std::uint64_t min, std::uint64_t max);
Status read_int(value v, const Ptr& at, std::int64_t& out, std::int64_t min, std::int64_t max);
Status read_double(value v, const Ptr& at, double& out, double min, double max);
Status read_string_array(value v, const Ptr& at, std::vector<std::string>& out,
                         std::size_t max_items, std::size_t max_len = 4096);

template <class T>
Status read_u32(value v, const Ptr& at, T& out, std::uint64_t min = 0,
                std::uint64_t max = 0xffffffffu) {
  std::uint64_t x = 0;
  auto s = read_uint(v, at, x, min, max);
  if (s) out = static_cast<T>(x);
  return s;
}

// Calls f(key, value, child_ptr) -> Status for each member of an object, rejecting a
// non-object, duplicate keys and the first error f returns.
template <class F>
Status for_each_member(value v, const Ptr& at, F&& f) {
  simdjson::ondemand::object obj;
  if (auto e = v.get_object().get(obj)) return simdjson_error(e, at, "must be an object");
  // Keys view the parser's buffer, valid for the whole document. Small objects stay on
  // the stack; big ones (labels) spill into a vector.
  std::string_view small[24];
  std::vector<std::string_view> big;
  std::size_t count = 0;
  for (auto field : obj) {
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return simdjson_error(e, at, "must be an object");
    Ptr here = at.child(key);
    for (std::size_t i = 0; i < count; ++i)
      if ((i < 24 ? small[i] : big[i - 24]) == key) return invalid(here, "duplicate key");
    if (count < 24) small[count] = key;
    else big.push_back(key);
    ++count;
    simdjson::ondemand::value child;
    if (auto e = field.value().get(child)) return simdjson_error(e, here, "a value");
    Status s = f(key, child, here);
    if (!s) return s;
  }
  return Ok{};
}

// invalid_json when `text` is not JSON at all, else invalid_request "must be a JSON object".
Error not_an_object(std::string_view text);

// `error` if `text` is valid JSON, else the invalid_json error that describes it.
Error confirm_json(std::string_view text, Error error);

// Iterates `text` as one JSON document that must be a single object; f is called with the
// object's value. Rejects trailing content. Padding is added here.
template <class F>
Status parse_object_document(simdjson::ondemand::parser& parser, std::string_view text, F&& f) {
  simdjson::padded_string padded(text);
  simdjson::ondemand::document doc;
  if (auto e = parser.iterate(padded).get(doc))
    return make_error(ErrorCode::invalid_json, simdjson::error_message(e));
  simdjson::ondemand::json_type type;
  if (auto e = doc.type().get(type))
    return make_error(ErrorCode::invalid_json, std::string("not JSON: ") + simdjson::error_message(e));
  if (type != simdjson::ondemand::json_type::object) return not_an_object(text);
  simdjson::ondemand::value root;
  if (auto e = doc.get_value().get(root))
    return make_error(ErrorCode::invalid_json, std::string("not JSON: ") + simdjson::error_message(e));
  Status s = f(root);
  // ondemand meets syntax errors lazily, often as a type error ("must be a string" for a
  // truncated `{"rootfs":`): an error in a text that is not JSON at all is invalid_json.
  if (!s) return s.error().code == ErrorCode::invalid_request ? confirm_json(text, s.error()) : s;
  const char* where = nullptr;
  if (!doc.current_location().get(where))
    return make_error(ErrorCode::invalid_json, "unexpected content after the JSON object");
  return Ok{};
}

// Thread-local parser, reused: allocation-free parsing after warm-up.
simdjson::ondemand::parser& thread_parser();

}  // namespace sandbox_agent::json
