// sandboxctl exec and cp: the commands that hand the agent descriptors of this process.
#pragma once

#include <string>
#include <vector>

namespace sandboxctl {

// `exec [-i] [-t] [-e NAME=VALUE]... [-w DIR] [-u UID[:GID]] [--timeout MS] ID -- CMD...`
// (args[0] is "exec"). Exits with the process's exit code; 126 when it could not be run,
// 127 when there is no such command; 1 when the agent refused; 2 usage and connection errors.
int exec_command(const std::string& socket, const std::vector<std::string>& args);

// `cp SRC DST`, one side ID:/PATH, the other a local path or - (stdin / stdout).
int cp_command(const std::string& socket, const std::vector<std::string>& args, bool json);

}  // namespace sandboxctl
