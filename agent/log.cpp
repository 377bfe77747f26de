#include "log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <memory>

namespace sandbox_agent::log {

void escape_into(std::string_view text, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  for (unsigned char ch : text) {
    if (ch >= 0x20 && ch != 0x7f && ch != '\\') {
      out += static_cast<char>(ch);
    } else if (ch == '\\') {
      out += "\\\\";
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\r') {
      out += "\\r";
    } else if (ch == '\t') {
      out += "\\t";
    } else {
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    }
  }
}

namespace {

// %E: the message with every control character escaped. Messages carry what clients,
// spool file names and sandboxes wrote (ids, names, runsc's and dockerd's output): none
// may start a line of its own that looks like the agent's.
class EscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string_view text(msg.payload.data(), msg.payload.size());
    scratch_.clear();
    escape_into(text, scratch_);
    dest.append(scratch_.data(), scratch_.data() + scratch_.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<EscapedMessage>(); }

 private:
  std::string scratch_;
};

std::unique_ptr<spdlog::formatter> formatter(const std::string& pattern, spdlog::pattern_time_type time) {
  auto f = std::make_unique<spdlog::pattern_formatter>(time);
  f->add_flag<EscapedMessage>('E').set_pattern(pattern);
  return f;
}

}  // namespace

bool setup(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") return false;
  auto logger = spdlog::stderr_color_st("sandbox-agent");
  if (std::getenv("JOURNAL_STREAM"))
    logger->set_formatter(formatter("%l %E", spdlog::pattern_time_type::local));  // journald stamps time itself
  else
    logger->set_formatter(formatter("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ %E", spdlog::pattern_time_type::utc));
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return true;
}

}  // namespace sandbox_agent::log

namespace sandbox_agent::log {

bool set_level(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") return false;
  spdlog::set_level(lvl);
  return true;
}

}  // namespace sandbox_agent::log
