#include "args.hpp"

#include <algorithm>
#include <array>

namespace fake_runsc {
namespace {

// Every runsc subcommand: an argument equal to one of these ends a bare global flag.
constexpr std::array<std::string_view, 30> kCommands = {
    "boot",      "checkpoint", "create", "debug",     "delete", "do",    "events", "exec",
    "flags",     "gofer",      "help",   "install",   "kill",   "list",  "pause",  "port-forward",
    "ps",        "restore",    "resume", "run",       "spec",   "start", "state",  "statefile",
    "symbolize", "syscalls",   "tar",    "uninstall", "usage",  "wait"};

// Global flags of runsc that never take a value.
constexpr std::array<std::string_view, 12> kBoolGlobals = {
    "debug",          "strace",  "rootless", "log-packets",  "alsologtostderr", "overlay",
    "systemd-cgroup", "net-raw", "gso",      "software-gso", "ignore-cgroups",  "version"};

template <size_t N>
bool contains(const std::array<std::string_view, N>& set, std::string_view s) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

bool is_flag(std::string_view a) { return a.size() > 1 && a[0] == '-'; }

// "--name=value" -> name, value; leading "-" or "--" stripped.
void split_flag(std::string_view arg, std::string_view& name, std::string_view& value,
                bool& has_value) {
  arg.remove_prefix(arg.starts_with("--") ? 2 : 1);
  const auto eq = arg.find('=');
  has_value = eq != std::string_view::npos;
  name = arg.substr(0, eq);
  value = has_value ? arg.substr(eq + 1) : std::string_view{};
}

}  // namespace

GlobalArgs parse_globals(std::span<const std::string_view> args) {
  GlobalArgs g;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (!is_flag(a)) break;
    std::string_view name, value;
    bool has_value = false;
    split_flag(a, name, value, has_value);
    if (name == "version") {
      g.version = !has_value || value == "true" || value == "1";
      continue;
    }
    const bool next_is_value = i + 1 < args.size() && !is_flag(args[i + 1]) &&
                               !contains(kCommands, args[i + 1]) && !contains(kBoolGlobals, name);
    if (name == "root") {
      if (!has_value) {
        if (i + 1 >= args.size()) {
          g.error = "flag needs an argument: -root";
          return g;
        }
        value = args[++i];
      }
      g.root = std::string(value);
    } else if (!has_value && next_is_value) {
      ++i;  // an ignored flag's value, e.g. "--log FILE"
    }
  }
  if (i < args.size()) {
    g.command = std::string(args[i]);
    g.rest.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
  }
  return g;
}

const CommandArgs::Flag* CommandArgs::find(std::string_view name) const {
  for (auto it = flags.rbegin(); it != flags.rend(); ++it)
    if (it->name == name) return &*it;
  return nullptr;
}

CommandArgs parse_command(std::span<const std::string_view> args,
                          std::span<const std::string_view> value_flags) {
  CommandArgs c;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (!is_flag(a)) break;
    CommandArgs::Flag f;
    split_flag(a, f.name, f.value, f.has_value);
    const bool takes_value =
        std::find(value_flags.begin(), value_flags.end(), f.name) != value_flags.end();
    if (takes_value && !f.has_value) {
      if (i + 1 >= args.size()) {
        c.error = "flag needs an argument: -" + std::string(f.name);
        return c;
      }
      f.value = args[++i];
      f.has_value = true;
    }
    c.flags.push_back(f);
  }
  c.positional.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  return c;
}

}  // namespace fake_runsc
