// What the configured runsc is and can do, asked once at start-up, and the runsc flags and
// Docker profile that follow from it (docs/docker-profile.md has the truth table).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sandbox_agent/config.hpp"

namespace sandbox_agent {

// What runsc printed when asked (`runsc --version`, `runsc flags`, `runsc help platforms`)
// and what the host's dockerd says of itself (`dockerd --version`; empty when absent).
struct RuntimeProbeOutput {
  bool ran = false;         // runsc answered `--version` with exit 0
  std::string error;        // why not, when !ran
  std::string version_text;
  std::string flags_text;
  std::string platforms_text;
  std::string dockerd_version_text;
};

struct RuntimeInfo {
  std::string path;
  bool probed = false;  // false: runsc could not be asked; the defaults of Debian's runsc apply
  std::string probe_error;
  std::string version;      // "release-20260831.0", "0.0~20221219.0", "VERSION_MISSING" (Go build)
  std::string oci_version;  // the OCI runtime spec version it implements, e.g. "1.2.1"
  std::vector<std::string> platforms;  // what `runsc help platforms` lists
  std::vector<std::string> flags;      // every top-level flag it accepts, without dashes
  std::string platform;                // the one the agent uses
  std::string platform_source;         // "auto", "runsc.platform" or "runsc.flags"
  int host_dockerd_major = 0;          // 0: unknown

  // Docker inside: containers run inside a Docker sandbox (`docker run`), overlay2 storage.
  bool nested_containers = false;
  std::string nested_reason;
  // network: bridge: runsc copies a prepared network namespace into its netstack.
  bool isolated_network = false;
  std::string network_reason;

  // Added to every runsc call after runsc.flags (which win where they name the same flag).
  std::vector<std::string> common_flags;
  // Added to `runsc create` of a Docker sandbox only.
  std::vector<std::string> docker_flags;
  // Added to the `runsc run` (or create and start) of a sandbox that gets no host cgroup of its own
  // (runsc.host_cgroups): `--ignore-cgroups` where runsc has it and runsc.flags do not
  // already decide; empty otherwise.
  std::vector<std::string> no_cgroup_flags;
  // The dockerd flags the Docker profile adds on this runtime (before the request's own).
  std::vector<std::string> dockerd_flags;
  std::vector<std::string> warnings;  // things an operator should fix

  bool has_flag(std::string_view name) const;
  // One line: what was found and what it means for users.
  std::string summary() const;
};

// Decides everything above from what runsc printed and the configuration. Pure: unit-tested.
RuntimeInfo describe_runtime(const RuntimeProbeOutput& out, const RunscConfig& config);

// The flag's name when `flag` is "--name", "--name=value" or "-name…"; else empty.
std::string_view flag_name(std::string_view flag);

}  // namespace sandbox_agent
