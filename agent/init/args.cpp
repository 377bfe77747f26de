#include "args.hpp"

#include <string_view>

namespace sinit {

const char* cgroup_mode_name(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::Auto: return "auto";
    case CgroupMode::Sandbox: return "sandbox";
    case CgroupMode::Userns: return "userns";
    case CgroupMode::HostBind: return "host-bind";
    case CgroupMode::None: return "none";
  }
  return "?";
}

const char* usage_text() {
  return "usage: sandbox-init --version\n"
         "       sandbox-init [--status-dir DIR] [--log-dir DIR]\n"
         "                    [--dockerd PATH --cgroup auto|sandbox|userns|host-bind|none\n"
         "                     --dockerd-socket PATH --relay-socket PATH [--containerd PATH]\n"
         "                     [--dockerd-arg ARG]...]\n"
         "                    [--] [ARGS...]\n"
         "       sandbox-init cp-in|cp-out --max-bytes=N [--mode=OCTAL] -- /PATH\n";
}

namespace {

bool parse_cgroup(std::string_view v, CgroupMode* out) {
  for (CgroupMode m : {CgroupMode::Auto, CgroupMode::Sandbox, CgroupMode::Userns,
                       CgroupMode::HostBind, CgroupMode::None}) {
    if (v == cgroup_mode_name(m)) {
      *out = m;
      return true;
    }
  }
  return false;
}

ParseResult error(std::string msg) {
  ParseResult r;
  r.action = ParseResult::Action::UsageError;
  r.error = std::move(msg);
  return r;
}

}  // namespace

ParseResult parse_args(int argc, const char* const* argv) {
  ParseResult result;
  Options& o = result.options;
  bool saw_cgroup = false, saw_dockerd_socket = false, saw_relay = false;
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    // The first word that is not an option starts ARGS (like `env`, `tini`).
    if (arg.size() < 2 || arg[0] != '-') break;
    if (arg == "--version") {
      result.action = ParseResult::Action::PrintVersion;
      return result;
    }
    if (arg == "--help" || arg == "-h") {
      result.action = ParseResult::Action::PrintUsage;
      return result;
    }

    // Every other option takes a value: "--opt value" or "--opt=value".
    std::string_view name = arg;
    std::string value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != std::string_view::npos && arg.starts_with("--")) {
      name = arg.substr(0, eq);
      value = std::string(arg.substr(eq + 1));
      has_value = true;
    }
    static constexpr std::string_view kValued[] = {"--status-dir",     "--log-dir",
                                                   "--dockerd",        "--cgroup",
                                                   "--dockerd-socket", "--relay-socket",
                                                   "--dockerd-arg",    "--containerd"};
    bool known = false;
    for (std::string_view k : kValued) known = known || name == k;
    if (!known) return error("unknown option '" + std::string(arg) + "'");
    if (!has_value) {
      if (i + 1 >= argc) return error("option '" + std::string(name) + "' needs a value");
      value = argv[++i];
    }

    if (name == "--status-dir") {
      o.status_dir = value;
    } else if (name == "--log-dir") {
      o.log_dir = value;
    } else if (name == "--dockerd") {
      o.dockerd = true;
      o.dockerd_path = value;
    } else if (name == "--cgroup") {
      if (!parse_cgroup(value, &o.cgroup))
        return error("--cgroup must be auto, sandbox, userns, host-bind or none, not '" + value +
                     "'");
      saw_cgroup = true;
    } else if (name == "--dockerd-socket") {
      o.dockerd_socket = value;
      saw_dockerd_socket = true;
    } else if (name == "--relay-socket") {
      o.relay_socket = value;
      saw_relay = true;
    } else if (name == "--dockerd-arg") {
      o.dockerd_args.push_back(value);
    } else if (name == "--containerd") {
      if (value.empty()) return error("--containerd needs a non-empty path");
      o.containerd_path = value;
    }
  }
  for (; i < argc; ++i) o.command.emplace_back(argv[i]);

  if (o.dockerd) {
    if (o.dockerd_path.empty()) return error("--dockerd needs a non-empty path");
    if (!saw_dockerd_socket || o.dockerd_socket.empty())
      return error("--dockerd needs --dockerd-socket PATH");
    if (saw_relay && o.relay_socket.empty()) return error("--relay-socket needs a non-empty path");
  } else if (saw_cgroup || saw_dockerd_socket || saw_relay || !o.dockerd_args.empty() ||
             !o.containerd_path.empty()) {
    return error("--cgroup, --dockerd-socket, --relay-socket, --containerd and --dockerd-arg need --dockerd");
  }
  return result;
}

}  // namespace sinit
