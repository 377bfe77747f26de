// Logging: spdlog, one line per event, readable on a terminal and in journald.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

namespace sandbox_agent::log {

// Sets up the default logger on stderr: timestamps on a terminal or plain stderr, none
// under journald (it adds its own). Returns false for an unknown level name.
bool setup(std::string_view level);

// Appends `text` with every control character and backslash escaped (\n, \r, \t, \xNN, \\).
// Every log line's message goes through it, so nothing untrusted can forge a line.
void escape_into(std::string_view text, std::string& out);

// Changes the level of the running logger (SIGHUP); false for an unknown name.
bool set_level(std::string_view level);

}  // namespace sandbox_agent::log
