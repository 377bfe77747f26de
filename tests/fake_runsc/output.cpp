#include "output.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>

namespace fake_runsc {
namespace {

void append_state_compact(std::string& out, const StateView& s) {
  out += R"({"ociVersion":"1.0.2-dev","id":)";
  out += json_quote(s.id);
  out += R"(,"status":)";
  out += json_quote(s.status);
  out += R"(,"pid":)";
  out += std::to_string(s.pid);
  out += R"(,"bundle":)";
  out += json_quote(s.bundle);
  out += '}';
}

}  // namespace

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20 || c == '<' || c == '>' || c == '&') {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out += '"';
}

std::string state_json_pretty(const StateView& s) {
  std::string out = "{\n  \"ociVersion\": \"1.0.2-dev\",\n  \"id\": ";
  out += json_quote(s.id);
  out += ",\n  \"status\": ";
  out += json_quote(s.status);
  out += ",\n  \"pid\": ";
  out += std::to_string(s.pid);
  out += ",\n  \"bundle\": ";
  out += json_quote(s.bundle);
  out += "\n}";
  return out;
}

std::string list_json(const std::vector<StateView>& states) {
  std::string out = "[";
  for (size_t i = 0; i < states.size(); ++i) {
    if (i) out += ',';
    append_state_compact(out, states[i]);
  }
  return out += "]\n";
}

std::string list_table(const std::vector<StateView>& states) {
  using Row = std::array<std::string, 6>;
  std::vector<Row> rows;
  rows.reserve(states.size() + 1);
  rows.push_back({"ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"});
  for (const auto& s : states)
    rows.push_back({std::string(s.id), std::to_string(s.pid), std::string(s.status),
                    std::string(s.bundle), rfc3339_nano(s.created_unix_ns), ""});
  // Like Go's tabwriter: every tab-terminated cell is padded to its column's widest cell
  // plus 3, at least 12; the last cell of a line is not aligned.
  std::array<size_t, 5> width{};
  for (const auto& r : rows)
    for (size_t c = 0; c < width.size(); ++c) width[c] = std::max(width[c], r[c].size() + 3);
  std::string out;
  for (const auto& r : rows) {
    for (size_t c = 0; c < width.size(); ++c) {
      out += r[c];
      out.append(std::max<size_t>(width[c], 12) - r[c].size(), ' ');
    }
    out += r[5];
    out += '\n';
  }
  return out;
}

std::string rfc3339_nano(int64_t unix_ns) {
  const time_t secs = static_cast<time_t>(unix_ns / 1'000'000'000);
  const int64_t frac = unix_ns % 1'000'000'000;
  tm t;
  gmtime_r(&secs, &t);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  std::string out(buf, n);
  if (frac != 0) {
    std::snprintf(buf, sizeof buf, ".%09lld", static_cast<long long>(frac));
    std::string digits(buf);
    while (digits.back() == '0') digits.pop_back();
    out += digits;
  }
  return out += 'Z';
}

}  // namespace fake_runsc
