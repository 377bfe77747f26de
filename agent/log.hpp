// Logging: spdlog, one line per event, readable on a terminal and in journald.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace sandbox_agent::log {

// Sets up the default logger on stderr: timestamps on a terminal or plain stderr, none
// under journald (it adds its own). Returns false for an unknown level name.
bool setup(std::string_view level);

// Changes the level of the running logger (SIGHUP); false for an unknown name.
bool set_level(std::string_view level);

}  // namespace sandbox_agent::log
