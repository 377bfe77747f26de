// The launch request: the same JSON on both intakes (socket and spool), parsed and checked here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sandbox_agent/cidr.hpp"
#include "sandbox_agent/error.hpp"

namespace sandbox_agent {

enum class CgroupStrategy { auto_detect, sandbox, userns, host_bind, none };
enum class NetworkMode { none, host, bridge };

std::string_view to_string(CgroupStrategy s);
std::string_view to_string(NetworkMode n);

struct Mount {
  std::string source;       // host path, resolved (realpath) by the policy check
  std::string destination;  // absolute, normalised path inside the sandbox
  bool readonly = false;
};

struct Resources {
  std::optional<double> cpus;
  std::optional<std::uint64_t> memory_mb;
  std::optional<std::int64_t> pids;
  bool any() const { return cpus || memory_mb || pids; }
};

struct DockerOptions {
  bool enabled = false;
  CgroupStrategy cgroup = CgroupStrategy::auto_detect;
  std::vector<std::string> dockerd_args;
  std::optional<std::uint32_t> ready_timeout_ms;
};

// A host port published to the sandbox (bridge only), through CNI's portmap plugin.
struct PortMapping {
  std::uint16_t host_port = 0;
  std::uint16_t sandbox_port = 0;
  std::string protocol = "tcp";  // tcp | udp
  std::string host_ip;           // empty: every host address
  bool operator==(const PortMapping&) const = default;
};

// The longest `ttl_ms` (a request's, or `extend`'s): a year and a day.
inline constexpr std::uint64_t kMaxTtlMs = 366ull * 24 * 3600 * 1000;

struct Owner {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
};

struct LaunchRequest {
  std::string id;  // empty: the agent generates one
  std::string rootfs;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd = "/";
  Owner user;
  std::string hostname;  // empty: the id
  std::vector<Mount> mounts;
  Resources resources;
  NetworkMode network = NetworkMode::none;
  std::vector<PortMapping> ports;      // bridge only
  std::optional<EgressRules> egress;   // bridge only; absent: what the ceiling allows
  DockerOptions docker;
  std::vector<std::pair<std::string, std::string>> labels;  // in the order given
  std::optional<Owner> socket_owner;
  std::optional<std::uint64_t> ttl_ms;  // stopped (ttl_expired) this long after it became ready
  // Take a ready sandbox from this pool (config `pools`). Such a request carries only id,
  // labels, socket_owner, ttl_ms and pool: the pool's template is the rest.
  std::string pool;
};

// A pool's name: 1-32 of A-Z a-z 0-9 _ . - (not starting with . _ -).
bool is_valid_pool_name(std::string_view name);

// What the configuration allows; applied to every request from every intake.
struct RequestPolicy {
  std::vector<std::string> allowed_host_prefixes;  // canonical directories
  bool allow_host_cgroup_bind = false;
  std::size_t max_request_bytes = 1 << 20;
  EgressRules egress_ceiling = default_egress_ceiling();
};

// Parses and validates one request (JSON text). Errors name the field as a JSON pointer.
// Includes the policy checks (rootfs and mount sources resolved under the allowed prefixes).
Result<LaunchRequest> parse_launch_request(std::string_view json, const RequestPolicy& policy);

// Only the policy part, for requests built in code (the embedding API).
// Resolves rootfs and mount sources in place.
Status apply_policy(LaunchRequest& request, const RequestPolicy& policy);

// Checks the request's own rules (id pattern, paths, ranges) for requests built in code.
Status validate_request(const LaunchRequest& request);

bool is_valid_sandbox_id(std::string_view id);

// Flags whose meaning the Docker profile depends on; dockerd_args may not set them.
bool is_reserved_dockerd_flag(std::string_view arg);

}  // namespace sandbox_agent
