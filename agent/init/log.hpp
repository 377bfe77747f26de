// init's own log: one line per message, "sandbox-init: <UTC timestamp> <text>", appended to
// LOG_DIR/init.log, or written to stderr when there is no log directory.
#pragma once

#include <string>

namespace sinit {

// Opens LOG_DIR/init.log for appending; an empty dir (or a failure) means stderr.
void log_open(const std::string& log_dir);

// printf-style; never fails loudly (a logger that can crash init would be worse than no log).
void log_msg(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Like log_msg, and also on stderr when the log goes to a file: for messages the user who
// started the command should see (e.g. "cannot execute ARGS").
void log_console(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// The timestamp format used in log lines, e.g. "2026-11-29T08:55:01.123Z".
std::string utc_timestamp();

}  // namespace sinit
