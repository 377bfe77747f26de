// Text that runsc prints: `state` JSON, `list` JSON and table, RFC 3339 times.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fake_runsc {

// The fields of an OCI state as runsc prints them.
struct StateView {
  std::string_view id;
  std::string_view status;
  int pid;
  std::string_view bundle;
  int64_t created_unix_ns;
};

// Go's encoding/json string quoting (including its escaping of <, > and &).
std::string json_quote(std::string_view s);
// `runsc state`: json.MarshalIndent with two spaces, no trailing newline.
std::string state_json_pretty(const StateView& s);
// `runsc list --format=json`: one compact array and a newline ("[]" when empty).
std::string list_json(const std::vector<StateView>& states);
// `runsc list`: a tabwriter table (minwidth 12, padding 3).
std::string list_table(const std::vector<StateView>& states);
// Go's time.RFC3339Nano in UTC, e.g. 2026-11-29T08:56:56.097543271Z.
std::string rfc3339_nano(int64_t unix_ns);

}  // namespace fake_runsc
