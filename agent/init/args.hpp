// Command line of sandbox-init (rendered by the agent into the OCI spec's process.args).
#pragma once

#include <string>
#include <vector>

namespace sinit {

inline constexpr const char* kVersionLine = "sandbox-init 0.1.0";

// How dockerd copes with the missing devices cgroup (see cgroup.hpp).
enum class CgroupMode { Auto, Sandbox, Userns, HostBind, None };
const char* cgroup_mode_name(CgroupMode mode);

struct Options {
  std::string status_dir;  // empty: no markers
  std::string log_dir;     // empty: log to stderr

  bool dockerd = false;  // true when --dockerd was given
  std::string dockerd_path;
  CgroupMode cgroup = CgroupMode::Auto;
  std::string dockerd_socket;  // dockerd's own socket inside the sandbox
  std::string relay_socket;    // where the relay listens (host-bound directory); empty: no relay
  std::vector<std::string> dockerd_args;
  // containerd, started by init before dockerd so that the two boot side by side (dockerd
  // would start it only once it is up itself); empty: dockerd starts its own.
  std::string containerd_path;

  std::vector<std::string> command;  // the main child; empty: wait for SIGTERM/SIGINT
};

struct ParseResult {
  enum class Action { Run, PrintVersion, PrintUsage, UsageError } action = Action::Run;
  Options options;
  std::string error;  // for UsageError
};

// Pure parsing, no output: main() decides what to print and the exit status (2 on error).
ParseResult parse_args(int argc, const char* const* argv);

const char* usage_text();

}  // namespace sinit
