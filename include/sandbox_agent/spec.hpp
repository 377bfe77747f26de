// Rendering a launch request into the OCI runtime spec (config.json) that runsc gets.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sandbox_agent/request.hpp"

namespace sandbox_agent {

// Where the in-sandbox helpers live, seen from inside the sandbox.
inline constexpr std::string_view kInitPath = "/.sandbox-agent/init";
inline constexpr std::string_view kSocketsMount = "/.sandbox-agent/sockets";
inline constexpr std::string_view kLogsMount = "/.sandbox-agent/logs";
inline constexpr std::string_view kDockerdInnerSocket = "/run/docker.sock";
inline constexpr std::string_view kDockerSocketName = "docker.sock";

// Annotation carrying the request id, so `runsc list` entries can be traced to records.
inline constexpr std::string_view kIdAnnotation = "dev.sandbox-agent.id";

// Host-side facts the spec needs besides the request.
struct SpecContext {
  std::string sandbox_init;  // host path of the sandbox-init binary
  std::string sockets_dir;   // host ROOT/sockets/ID
  std::string logs_dir;      // host ROOT/logs/ID
  std::string dockerd_path;  // dockerd inside the image
  // The Docker profile's dockerd flags on this runtime (RuntimeInfo::dockerd_flags); empty:
  // the flags that work on every supported runsc.
  std::vector<std::string> dockerd_flags;
  // Bridge sandboxes: the pinned network namespace runsc joins (and copies into its netstack),
  // and the host file given to the sandbox as /etc/resolv.conf.
  std::string netns_path;
  std::string resolv_conf;
  std::string containerd_path;  // containerd inside the image; empty: dockerd starts its own
};

// The spec as JSON: indented for people, or compact (what the agent writes for runsc).
// `request` must have passed parsing, validation and policy.
std::string render_spec(const LaunchRequest& request, const SpecContext& context, bool indented = true);

}  // namespace sandbox_agent
