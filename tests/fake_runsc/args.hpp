// Command-line parsing shared by the CLI (which needs only --root) and the daemon
// (which re-parses the forwarded argv to run the command).
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fake_runsc {

// The global part of a runsc command line: flags before the subcommand.
struct GlobalArgs {
  std::string root;                    // --root DIR / --root=DIR
  bool version = false;                // --version
  std::string command;                 // first non-flag argument
  std::vector<std::string_view> rest;  // arguments after the command
  std::string error;                   // non-empty when the command line is malformed
};

GlobalArgs parse_globals(std::span<const std::string_view> args);

// A subcommand's own arguments, Go-flag style: "-x", "--x", "--x=v", "--x v".
// Flags end at the first positional argument or at "--".
struct CommandArgs {
  struct Flag {
    std::string_view name;
    std::string_view value;
    bool has_value = false;
  };
  std::vector<Flag> flags;
  std::vector<std::string_view> positional;
  std::string error;

  // Last value given for `name`, or nullptr when absent.
  const Flag* find(std::string_view name) const;
  bool has(std::string_view name) const { return find(name) != nullptr; }
};

// value_flags: the flags that take a value in the next argument when written without "=".
CommandArgs parse_command(std::span<const std::string_view> args,
                          std::span<const std::string_view> value_flags);

}  // namespace fake_runsc
