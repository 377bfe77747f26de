#include "log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
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

// %P: the syslog priority as journald reads it at the start of a line (sd-daemon(3):
// "<3>" error ... "<7>" debug), so `journalctl -p warning` finds the agent's warnings.
class JournalPriority final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const char* p = "<6>";
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug: p = "<7>"; break;
      case spdlog::level::warn: p = "<4>"; break;
      case spdlog::level::err: p = "<3>"; break;
      case spdlog::level::critical: p = "<2>"; break;
      default: break;
    }
    dest.append(p, p + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JournalPriority>(); }
};

std::unique_ptr<spdlog::formatter> formatter(const std::string& pattern, spdlog::pattern_time_type time) {
  auto f = std::make_unique<spdlog::pattern_formatter>(time);
  f->add_flag<EscapedMessage>('E').add_flag<JournalPriority>('P').set_pattern(pattern);
  return f;
}

// Whether stderr is the journal stream systemd gave us: JOURNAL_STREAM is "DEV:INODE" of it
// (systemd.exec(5)); a child that inherited the variable but writes elsewhere gets times.
bool stderr_is_journal() {
  const char* v = std::getenv("JOURNAL_STREAM");
  if (!v) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(v, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  return ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

}  // namespace

bool setup(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") return false;
  auto logger = spdlog::stderr_color_st("sandbox-agent");
  if (stderr_is_journal())  // journald stamps the time itself, and takes the priority from <N>
    logger->set_formatter(formatter("%P%l %E", spdlog::pattern_time_type::local));
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
