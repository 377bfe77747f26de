#include "wire.hpp"

#include <cstring>

namespace fake_runsc {
namespace {

void put_u32(std::string& s, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  s.append(b, 4);
}

uint32_t get_u32(std::string_view s, size_t at) {
  uint32_t v;
  std::memcpy(&v, s.data() + at, 4);
  return v;
}

}  // namespace

std::string encode_request(std::string_view cwd, const std::vector<std::string_view>& args) {
  std::string payload;
  payload.append(cwd).push_back('\0');
  for (auto a : args) payload.append(a).push_back('\0');
  std::string out;
  put_u32(out, static_cast<uint32_t>(payload.size()));
  return out + payload;
}

std::optional<Request> decode_request(const std::string& payload) {
  if (payload.empty() || payload.back() != '\0') return std::nullopt;
  Request r;
  size_t pos = payload.find('\0');
  r.cwd = payload.substr(0, pos);
  for (size_t start = pos + 1; start < payload.size(); start = pos + 1) {
    pos = payload.find('\0', start);
    r.args.emplace_back(payload.data() + start, pos - start);
  }
  return r;
}

std::string encode_reply(const Reply& r) {
  std::string s;
  s.reserve(12 + r.out.size() + r.err.size());
  put_u32(s, static_cast<uint32_t>(r.code));
  put_u32(s, static_cast<uint32_t>(r.out.size()));
  put_u32(s, static_cast<uint32_t>(r.err.size()));
  return s.append(r.out).append(r.err);
}

std::optional<Reply> decode_reply(std::string_view b) {
  if (b.size() < 12) return std::nullopt;
  const uint32_t n_out = get_u32(b, 4), n_err = get_u32(b, 8);
  if (b.size() != 12 + static_cast<size_t>(n_out) + n_err) return std::nullopt;
  Reply r;
  r.code = static_cast<int>(get_u32(b, 0));
  r.out = b.substr(12, n_out);
  r.err = b.substr(12 + n_out, n_err);
  return r;
}

}  // namespace fake_runsc
