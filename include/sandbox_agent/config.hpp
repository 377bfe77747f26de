// The agent's configuration: defaults, overridden by the JSON file, overridden by flags.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox_agent/error.hpp"
#include "sandbox_agent/request.hpp"

namespace sandbox_agent {

struct SocketConfig {
  std::string path;  // default ROOT/agent.sock
  unsigned mode = 0660;
  std::vector<std::uint32_t> allowed_uids{0};
  std::vector<std::uint32_t> allowed_gids;
};

// The runsc scripts/install-deps builds from gVisor's Go module; the default where present.
inline constexpr std::string_view kProjectRunsc = "/usr/local/lib/sandbox-agent/runsc";
inline constexpr std::string_view kDebianRunsc = "/usr/bin/runsc";

struct RunscConfig {
  std::string path;  // default: kProjectRunsc where installed, else kDebianRunsc
  // "auto": systrap where the binary offers it, else ptrace (never KVM); or a platform name.
  std::string platform = "auto";
  // Given to every runsc call. The agent adds what the binary needs and supports (platform,
  // --host-uds, --net-raw for Docker sandboxes: see RuntimeInfo); a flag named here wins.
  std::vector<std::string> flags{"--network=none"};
  unsigned max_concurrent = 0;  // 0: two per core
  unsigned timeout_ms = 60000;
  // How a sandbox is brought up: "run" (one `runsc run --detach`: one process instead of two,
  // the start-up of a runsc less on the launch path) or "create_start" (`runsc create` then
  // `runsc start`, the way before: for runsc wrappers without `run`, and benchmarks' baseline).
  std::string launch = "run";
  bool one_call_launch() const { return launch == "run"; }
  // Which sandboxes runsc puts in a host cgroup of their own: "limited" (only those whose
  // request sets `resources`: the others get `--ignore-cgroups` and stay in the agent's
  // cgroup; ~30 ms less per cold start on cgroup v1) or "always" (every one, as before).
  std::string host_cgroups = "limited";
  // runsc calls forked and reaped by a helper process the daemon starts once (sandbox-agent
  // --spawn-helper) instead of by the reactor's own clone: less CPU on the agent's one thread.
  bool spawn_helper = true;
};

struct ProbeConfig {
  unsigned initial_ms = 5;
  double factor = 2.0;
  unsigned max_ms = 250;
  double jitter = 0.2;
  unsigned attempt_timeout_ms = 1000;
};

struct DockerConfig {
  unsigned ready_timeout_ms = 30000;
  // Inside the sandbox's image: an absolute path, or a name looked up in the sandbox's PATH
  // (Debian installs /usr/sbin/dockerd, Docker's own packages /usr/bin/dockerd).
  std::string dockerd_path = "dockerd";
  // containerd inside the image, started by sandbox-init beside dockerd instead of by dockerd
  // once dockerd is up (docs/benchmarks.md, cold start: ~100 ms sooner). The same forms as
  // dockerd_path; "" leaves it to dockerd. Not in a user namespace (cgroup "userns").
  std::string containerd_path = "containerd";
};

struct LimitsConfig {
  unsigned max_sandboxes = 10000;        // records held (any state but removed)
  unsigned max_connections = 1024;       // socket clients at once
  std::uint64_t max_request_bytes = 1 << 20;  // a request, a socket line, a spool file
  unsigned max_pending_launches = 10000;  // launches not yet through runsc start
  unsigned max_watchers = 256;           // `watch` subscribers
  std::uint64_t max_output_bytes = 4 << 20;  // per-connection queued replies
  unsigned first_line_timeout_ms = 10000;  // a client silent this long after connecting is dropped
  unsigned max_execs = 64;               // exec and cp processes at once, all sandboxes together
  std::uint64_t max_copy_bytes = 1ull << 30;  // one cp, either way
};

// `network: bridge` sandboxes: a network namespace each, wired by the standard CNI plugins.
struct NetworkConfig {
  std::string subnet = "10.231.0.0/16";  // the built-in CNI config's host-local range
  std::string cni_conf;                  // a .conflist replacing the built-in one
  std::string cni_path = "/usr/lib/cni";  // Debian's containernetworking-plugins
  // What any request's egress may allow; a request narrows it, never widens it.
  EgressRules egress_ceiling = default_egress_ceiling();
  // The sandbox's /etc/resolv.conf: nameservers written by the agent; empty: the host's
  // /etc/resolv.conf without its loopback nameservers (unreachable from a sandbox).
  std::vector<std::string> dns;
  std::string resolv_conf;  // a file given to sandboxes as it is (wins over `dns`)
  unsigned plugin_timeout_ms = 10000;
  unsigned max_concurrent = 8;  // CNI plugin chains at once
};

struct LogsConfig {
  // What one sandbox's logs (logs/ID: its stdout/stderr, dockerd's and sandbox-init's logs,
  // anything it writes under /.sandbox-agent/logs) may take on the host; a size-limited tmpfs
  // while it lives (memory, at most this much each). 0: no quota (the logs go straight to disk).
  std::uint64_t max_bytes_per_sandbox = 16 << 20;
};

// A warm pool: `size` sandboxes of `request` kept launched and ready; a launch with `pool`
// takes one.
struct PoolConfig {
  std::string name;
  unsigned size = 0;
  LaunchRequest request;       // the template, policy applied
  std::string template_json;   // as given (minified): members record its hash
  std::uint64_t template_hash = 0;
};

// The Prometheus endpoint (GET /metrics): "" is off; "unix:/ABS/PATH" or "127.0.0.1:PORT"
// (loopback only: it has no authentication).
struct MetricsConfig {
  std::string listen;
};

struct Config {
  std::string root;  // everything lives under it unless overridden
  SocketConfig socket;
  std::string spool;  // default ROOT/spool
  RunscConfig runsc;
  std::vector<std::string> allowed_host_prefixes;  // default ROOT/images and /srv/images
  bool allow_host_cgroup_bind = false;
  ProbeConfig probe;
  DockerConfig docker;
  LimitsConfig limits;
  NetworkConfig network;
  LogsConfig logs;
  std::vector<PoolConfig> pools;
  MetricsConfig metrics;
  bool stop_sandboxes_on_exit = false;
  bool clean_orphans = true;  // remove runsc sandboxes under ROOT/runsc that have no record
  std::string log_level = "info";
  std::string sandbox_init;  // host path of sandbox-init; default: next to the agent binary

  RequestPolicy request_policy() const;
  const PoolConfig* pool(std::string_view name) const;
  unsigned runsc_concurrency() const;
};

// Settings given on the command line; each set field overrides the file.
struct ConfigOverrides {
  std::string root, socket, spool, runsc, log_level;
  int stop_sandboxes_on_exit = -1;  // -1: not given
};

inline constexpr std::string_view kDefaultRoot = "/var/lib/sandbox-agent";

// Builds the configuration: defaults, then `file` (if non-empty), then overrides, then the
// paths derived from the root. Errors name the field (JSON pointer) and the reason; callers
// add the file name.
Result<Config> load_config(const std::string& file, const ConfigOverrides& overrides);

// Same, from JSON text already read.
Result<Config> parse_config(std::string_view json, const ConfigOverrides& overrides);

}  // namespace sandbox_agent
