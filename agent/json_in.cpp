#include "json_in.hpp"

#include <cmath>

namespace sandbox_agent::json {

namespace {
void append_escaped(std::string& out, std::string_view key) {
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
}
}  // namespace

std::string Ptr::path() const {
  std::string out = parent_ ? parent_->path() : std::string(fixed_);
  if (!parent_) return out;
  out += '/';
  if (index_ != std::string_view::npos) out += std::to_string(index_);
  else append_escaped(out, key_);
  return out;
}

Error invalid(const Ptr& at, std::string message) {
  return make_error(ErrorCode::invalid_request, std::move(message), at.path());
}

Error simdjson_error(simdjson::error_code e, const Ptr& at, std::string_view expected) {
  switch (e) {
    case simdjson::INCORRECT_TYPE:
    case simdjson::NUMBER_OUT_OF_RANGE:
    case simdjson::NUMBER_ERROR:
      return invalid(at, std::string(expected));
    default:
      return make_error(ErrorCode::invalid_json, simdjson::error_message(e), at.path());
  }
}

namespace {
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool number_is_grammatical(std::string_view t) {
  std::size_t i = 0;
  auto digits = [&] {
    std::size_t from = i;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
    return i > from;
  };
  if (i < t.size() && t[i] == '-') ++i;
  if (i < t.size() && t[i] == '0') ++i;
  else if (!digits()) return false;
  if (i < t.size() && t[i] == '.' && (++i, !digits())) return false;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == t.size();
}

// Whether every number outside the strings of `text` is written as JSON allows, whatever
// its size: simdjson reports 1e400 and 01 alike as NUMBER_ERROR.
bool numbers_are_grammatical(std::string_view text) {
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      std::size_t end = i;
      while (end < text.size() && std::string_view("0123456789+-.eE").find(text[end]) != std::string_view::npos) ++end;
      if (!number_is_grammatical(text.substr(i, end - i))) return false;
      i = end - 1;
    }
  }
  return true;
}
}  // namespace

Error confirm_json(std::string_view text, Error error) {
  simdjson::dom::parser dom;
  simdjson::padded_string padded(text);
  simdjson::dom::element ignored;
  auto e = dom.parse(padded).get(ignored);
  // Still JSON, and the field-naming error stands: a number no double or 64-bit integer
  // holds (1e400, 2^64), or nesting deeper than the parser goes.
  bool still_json = e == simdjson::NUMBER_OUT_OF_RANGE || e == simdjson::DEPTH_ERROR ||
                    (e == simdjson::NUMBER_ERROR && numbers_are_grammatical(text));
  if (e && !still_json)
    return make_error(ErrorCode::invalid_json, std::string("not valid JSON: ") + simdjson::error_message(e));
  return error;
}

Error not_an_object(std::string_view text) {
  simdjson::dom::parser dom;
  simdjson::padded_string padded(text);
  simdjson::dom::element ignored;
  if (auto e = dom.parse(padded).get(ignored))
    return make_error(ErrorCode::invalid_json, simdjson::error_message(e));
  return make_error(ErrorCode::invalid_request, "must be a JSON object", "");
}

Status read_string(value v, const Ptr& at, std::string& out, std::size_t max_len) {
  std::string_view s;
  if (auto e = v.get_string().get(s)) return simdjson_error(e, at, "must be a string");
  if (s.size() > max_len)
    return invalid(at, "must be at most " + std::to_string(max_len) + " bytes");
  if (s.find('\0') != std::string_view::npos) return invalid(at, "must not contain NUL");
  out.assign(s);
  return Ok{};
}

Status read_bool(value v, const Ptr& at, bool& out) {
  if (auto e = v.get_bool().get(out)) return simdjson_error(e, at, "must be true or false");
  return Ok{};
}

Status read_uint(value v, const Ptr& at, std::uint64_t& out, std::uint64_t min, std::uint64_t max) {
  auto range = "must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
  simdjson::ondemand::json_type type;
  if (auto e = v.type().get(type)) return simdjson_error(e, at, range);
  if (type != simdjson::ondemand::json_type::number) return invalid(at, range);
  if (v.get_uint64().get(out) || out < min || out > max) return invalid(at, range);
  return Ok{};
}

Status read_int(value v, const Ptr& at, std::int64_t& out, std::int64_t min, std::int64_t max) {
  auto range = "must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
  simdjson::ondemand::json_type type;
  if (auto e = v.type().get(type)) return simdjson_error(e, at, range);
  if (type != simdjson::ondemand::json_type::number) return invalid(at, range);
  if (v.get_int64().get(out) || out < min || out > max) return invalid(at, range);
  return Ok{};
}

Status read_double(value v, const Ptr& at, double& out, double min, double max) {
  auto range = "must be a number from " + std::to_string(min) + " to " + std::to_string(max);
  simdjson::ondemand::json_type type;
  if (auto e = v.type().get(type)) return simdjson_error(e, at, range);
  if (type != simdjson::ondemand::json_type::number) return invalid(at, range);
  if (v.get_double().get(out) || !std::isfinite(out) || out < min || out > max)
    return invalid(at, range);
  return Ok{};
}

Status read_string_array(value v, const Ptr& at, std::vector<std::string>& out,
                         std::size_t max_items, std::size_t max_len) {
  simdjson::ondemand::array arr;
  if (auto e = v.get_array().get(arr)) return simdjson_error(e, at, "must be an array of strings");
  out.clear();
  for (auto item : arr) {
    Ptr here = at.child(out.size());
    if (out.size() == max_items)
      return invalid(at, "must have at most " + std::to_string(max_items) + " items");
    simdjson::ondemand::value iv;
    if (auto e = item.get(iv)) return simdjson_error(e, here, "must be a string");
    std::string s;
    if (auto st = read_string(iv, here, s, max_len); !st) return st;
    out.push_back(std::move(s));
  }
  return Ok{};
}

simdjson::ondemand::parser& thread_parser() {
  thread_local simdjson::ondemand::parser parser;
  return parser;
}

}  // namespace sandbox_agent::json
