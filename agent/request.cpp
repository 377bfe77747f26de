// Launch requests: simdjson parsing, the request's own rules, then the host path policy.
#include "sandbox_agent/request.hpp"

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "json_in.hpp"
#include "paths.hpp"
#include "request_parse.hpp"

namespace sandbox_agent {

using json::Ptr;
using json::invalid;

std::string_view to_string(CgroupStrategy s) {
  switch (s) {
    case CgroupStrategy::auto_detect: return "auto";
    case CgroupStrategy::sandbox: return "sandbox";
    case CgroupStrategy::userns: return "userns";
    case CgroupStrategy::host_bind: return "host-bind";
    case CgroupStrategy::none: return "none";
  }
  return "auto";
}

std::string_view to_string(NetworkMode n) {
  switch (n) {
    case NetworkMode::host: return "host";
    case NetworkMode::bridge: return "bridge";
    default: return "none";
  }
}

bool is_valid_sandbox_id(std::string_view id) {
  if (id.empty() || id.size() > 63) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(id[0])) return false;
  for (char c : id.substr(1))
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  return true;
}

bool is_reserved_dockerd_flag(std::string_view arg) {
  // Long flags the profile sets itself: the socket, its group, networking, state directories.
  static constexpr std::string_view long_flags[] = {
      "--host", "--group", "--iptables", "--ip6tables", "--bridge", "--bip",
      "--data-root", "--exec-root", "--pidfile", "--graph", "--userns-remap"};
  if (arg.starts_with("--")) {
    auto name = arg.substr(0, arg.find('='));
    for (auto f : long_flags)
      if (name == f) return true;
    return false;
  }
  // pflag shorthands, possibly combined ("-DH unix://…"): H host, G group, b bridge,
  // p pidfile, g graph.
  if (arg.size() < 2 || arg[0] != '-') return false;
  for (char c : arg.substr(1)) {
    if (c == 'H' || c == 'G' || c == 'b' || c == 'p' || c == 'g') return true;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) break;
  }
  return false;
}

namespace {

constexpr std::size_t kMaxArgs = 4096;
constexpr std::size_t kMaxMounts = 64;
constexpr std::size_t kMaxLabels = 64;

}  // namespace

Status parse_owner(json::value v, const Ptr& at, Owner& out) {
  bool has_uid = false, has_gid = false;
  auto s = json::for_each_member(v, at, [&](std::string_view key, json::value m, const Ptr& p) -> Status {
    if (key == "uid") { has_uid = true; return json::read_u32(m, p, out.uid, 0, 0xfffffffeu); }
    if (key == "gid") { has_gid = true; return json::read_u32(m, p, out.gid, 0, 0xfffffffeu); }
    return invalid(p, "unknown field");
  });
  if (!s) return s;
  if (!has_uid) return invalid(at.child("uid"), "is required");
  if (!has_gid) return invalid(at.child("gid"), "is required");
  return Ok{};
}

namespace {

Status parse_mount(json::value v, const Ptr& at, Mount& out) {
  bool has_source = false, has_dest = false;
  auto s = json::for_each_member(v, at, [&](std::string_view key, json::value m, const Ptr& p) -> Status {
    if (key == "source") { has_source = true; return json::read_string(m, p, out.source); }
    if (key == "destination") { has_dest = true; return json::read_string(m, p, out.destination); }
    if (key == "readonly") return json::read_bool(m, p, out.readonly);
    return invalid(p, "unknown field");
  });
  if (!s) return s;
  if (!has_source) return invalid(at.child("source"), "is required");
  if (!has_dest) return invalid(at.child("destination"), "is required");
  return Ok{};
}

Status parse_mounts(json::value v, const Ptr& at, std::vector<Mount>& out) {
  simdjson::ondemand::array arr;
  if (auto e = v.get_array().get(arr)) return json::simdjson_error(e, at, "must be an array of mounts");
  for (auto item : arr) {
    Ptr here = at.child(out.size());
    if (out.size() == kMaxMounts)
      return invalid(at, "must have at most " + std::to_string(kMaxMounts) + " items");
    json::value iv;
    if (auto e = item.get(iv)) return json::simdjson_error(e, here, "must be an object");
    Mount m;
    if (auto s = parse_mount(iv, here, m); !s) return s;
    out.push_back(std::move(m));
  }
  return Ok{};
}

Status parse_resources(json::value v, const Ptr& at, Resources& out) {
  return json::for_each_member(v, at, [&](std::string_view key, json::value m, const Ptr& p) -> Status {
    if (key == "cpus") {
      double x = 0;
      auto s = json::read_double(m, p, x, 0.01, 1024);
      if (s) out.cpus = x;
      return s;
    }
    if (key == "memory_mb") {
      std::uint64_t x = 0;
      auto s = json::read_uint(m, p, x, 16, 16ull << 20);
      if (s) out.memory_mb = x;
      return s;
    }
    if (key == "pids") {
      std::int64_t x = 0;
      auto s = json::read_int(m, p, x, 1, 4194304);
      if (s) out.pids = x;
      return s;
    }
    return invalid(p, "unknown field");
  });
}

Status parse_cgroup(json::value v, const Ptr& at, CgroupStrategy& out) {
  std::string s;
  if (auto st = json::read_string(v, at, s, 64); !st) return st;
  for (auto c : {CgroupStrategy::auto_detect, CgroupStrategy::sandbox, CgroupStrategy::userns,
                 CgroupStrategy::host_bind, CgroupStrategy::none}) {
    if (s == to_string(c)) {
      out = c;
      return Ok{};
    }
  }
  return invalid(at, "must be one of auto, sandbox, userns, host-bind, none");
}

Status parse_docker(json::value v, const Ptr& at, DockerOptions& out) {
  return json::for_each_member(v, at, [&](std::string_view key, json::value m, const Ptr& p) -> Status {
    if (key == "enabled") return json::read_bool(m, p, out.enabled);
    if (key == "cgroup") return parse_cgroup(m, p, out.cgroup);
    if (key == "dockerd_args") return json::read_string_array(m, p, out.dockerd_args, 256);
    if (key == "ready_timeout_ms") {
      std::uint32_t x = 0;
      auto s = json::read_u32(m, p, x, 1, 3600000);
      if (s) out.ready_timeout_ms = x;
      return s;
    }
    return invalid(p, "unknown field");
  });
}

bool is_label_key(std::string_view k) {
  if (k.empty() || k.size() > 128) return false;
  for (char c : k) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '/';
    if (!ok) return false;
  }
  return true;
}

Status parse_labels(json::value v, const Ptr& at,
                    std::vector<std::pair<std::string, std::string>>& out) {
  return json::for_each_member(v, at, [&](std::string_view key, json::value m, const Ptr& p) -> Status {
    if (out.size() == kMaxLabels)
      return invalid(at, "must have at most " + std::to_string(kMaxLabels) + " labels");
    if (!is_label_key(key))
      return invalid(p, "label keys are 1-128 characters of A-Z a-z 0-9 . _ - /");
    std::string value;
    if (auto s = json::read_string(m, p, value, 1024); !s) return s;
    out.emplace_back(std::string(key), std::move(value));
    return Ok{};
  });
}

Status parse_network(json::value v, const Ptr& at, NetworkMode& out) {
  std::string s;
  if (auto st = json::read_string(v, at, s, 64); !st) return st;
  if (s == "none") out = NetworkMode::none;
  else if (s == "host") out = NetworkMode::host;
  else if (s == "bridge") out = NetworkMode::bridge;
  else return invalid(at, "must be one of none, host, bridge");
  return Ok{};
}

constexpr std::size_t kMaxPorts = 64;
constexpr std::size_t kMaxEgressEntries = 256;

Status parse_port(json::value v, const Ptr& at, PortMapping& out) {
  bool has_host = false, has_sandbox = false;
  auto s = json::for_each_member(v, at, [&](std::string_view key, json::value m, const Ptr& p) -> Status {
    if (key == "host_port") { has_host = true; return json::read_u32(m, p, out.host_port, 1, 65535); }
    if (key == "sandbox_port") { has_sandbox = true; return json::read_u32(m, p, out.sandbox_port, 1, 65535); }
    if (key == "protocol") {
      auto st = json::read_string(m, p, out.protocol, 16);
      if (st && out.protocol != "tcp" && out.protocol != "udp") return invalid(p, "must be tcp or udp");
      return st;
    }
    if (key == "host_ip") {
      auto st = json::read_string(m, p, out.host_ip, 64);
      if (st && !parse_address(out.host_ip)) return invalid(p, "must be an IPv4 or IPv6 address");
      return st;
    }
    return invalid(p, "unknown field");
  });
  if (!s) return s;
  if (!has_host) return invalid(at.child("host_port"), "is required");
  if (!has_sandbox) return invalid(at.child("sandbox_port"), "is required");
  return Ok{};
}

Status parse_ports(json::value v, const Ptr& at, std::vector<PortMapping>& out) {
  simdjson::ondemand::array arr;
  if (auto e = v.get_array().get(arr)) return json::simdjson_error(e, at, "must be an array of port mappings");
  for (auto item : arr) {
    Ptr here = at.child(out.size());
    if (out.size() == kMaxPorts) return invalid(at, "must have at most " + std::to_string(kMaxPorts) + " items");
    json::value iv;
    if (auto e = item.get(iv)) return json::simdjson_error(e, here, "must be an object");
    PortMapping pm;
    if (auto s = parse_port(iv, here, pm); !s) return s;
    out.push_back(std::move(pm));
  }
  return Ok{};
}

Status parse_cidr_list(json::value v, const Ptr& at, std::vector<Cidr>& out) {
  std::vector<std::string> texts;
  if (auto s = json::read_string_array(v, at, texts, kMaxEgressEntries, 64); !s) return s;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    std::string why;
    auto c = parse_cidr(texts[i], &why);
    if (!c) return invalid(at.child(i), texts[i] + " " + why);
    out.push_back(*c);
  }
  return Ok{};
}

}  // namespace

Status parse_egress_rules(json::value v, const Ptr& at, EgressRules& out) {
  return json::for_each_member(v, at, [&](std::string_view key, json::value m, const Ptr& p) -> Status {
    // A list given replaces that list (the config's ceiling starts from its defaults).
    if (key == "allow") return out.allow.clear(), parse_cidr_list(m, p, out.allow);
    if (key == "deny") return out.deny.clear(), parse_cidr_list(m, p, out.deny);
    return invalid(p, "unknown field");
  });
}

namespace {

Status parse_fields(json::value root, LaunchRequest& r) {
  bool has_rootfs = false;
  Ptr top{};
  std::vector<std::string> seen;
  auto s = json::for_each_member(root, top, [&](std::string_view key, json::value m, const Ptr& p) -> Status {
    seen.emplace_back(key);
    if (key == "pool") {
      auto st = json::read_string(m, p, r.pool, 64);
      if (st && !is_valid_pool_name(r.pool)) return invalid(p, "must be a pool name (1-32 of A-Z a-z 0-9 _ . -)");
      return st;
    }
    if (key == "id") {
      auto st = json::read_string(m, p, r.id, 256);
      if (st && r.id.empty()) return invalid(p, "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ (omit it to have one generated)");
      return st;
    }
    if (key == "rootfs") { has_rootfs = true; return json::read_string(m, p, r.rootfs); }
    if (key == "args") return json::read_string_array(m, p, r.args, kMaxArgs, 65536);
    if (key == "env") return json::read_string_array(m, p, r.env, kMaxArgs, 65536);
    if (key == "cwd") return json::read_string(m, p, r.cwd);
    if (key == "user") return parse_owner(m, p, r.user);
    if (key == "hostname") {
      auto st = json::read_string(m, p, r.hostname, 256);
      // Empty means "absent" (the id) in the model: an explicit "" is not a hostname.
      if (st && r.hostname.empty()) return invalid(p, "must be 1-63 characters of A-Z a-z 0-9 - . not starting with - or .");
      return st;
    }
    if (key == "mounts") return parse_mounts(m, p, r.mounts);
    if (key == "resources") return parse_resources(m, p, r.resources);
    if (key == "network") return parse_network(m, p, r.network);
    if (key == "ports") return parse_ports(m, p, r.ports);
    if (key == "egress") {
      EgressRules e;
      auto st = parse_egress_rules(m, p, e);
      if (st) r.egress = std::move(e);
      return st;
    }
    if (key == "docker") return parse_docker(m, p, r.docker);
    if (key == "labels") return parse_labels(m, p, r.labels);
    if (key == "ttl_ms") {
      std::uint64_t x = 0;
      auto st = json::read_uint(m, p, x, 1, kMaxTtlMs);
      if (st) r.ttl_ms = x;
      return st;
    }
    if (key == "socket_owner") {
      Owner o;
      auto st = parse_owner(m, p, o);
      if (st) r.socket_owner = o;
      return st;
    }
    return invalid(p, "unknown field");
  });
  if (!s) return s;
  if (!r.pool.empty()) {
    // The pool's template decides everything else; a field it would ignore is a mistake.
    for (const auto& k : seen)
      if (k != "pool" && k != "id" && k != "labels" && k != "socket_owner" && k != "ttl_ms")
        return invalid(top.child(k), "is the pool's to decide (with pool, a request carries only id, labels, "
                                     "socket_owner and ttl_ms)");
    return Ok{};
  }
  if (!has_rootfs) return invalid(top.child("rootfs"), "is required");
  return Ok{};
}

bool is_hostname(std::string_view h) {
  if (h.empty() || h.size() > 63) return false;
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.';
    if (!ok) return false;
  }
  return h.front() != '-' && h.front() != '.';
}

}  // namespace

// Destinations the profile owns: a request may not mount over or under them.
bool is_reserved_destination(std::string_view d) {
  for (std::string_view r : {"/proc", "/sys", "/dev", "/.sandbox-agent"})
    if (paths::is_same_or_under(d, r)) return true;
  return false;
}

bool is_valid_pool_name(std::string_view name) {
  if (name.empty() || name.size() > 32 || name[0] == '.' || name[0] == '_' || name[0] == '-') return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
  return true;
}

Status validate_request(const LaunchRequest& r) {
  Ptr top{};
  if (!r.id.empty() && !is_valid_sandbox_id(r.id))
    return invalid(top.child("id"), "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$");
  if (!r.pool.empty()) return Ok{};  // the rest is the pool's template, checked at start-up
  if (!paths::is_normalized_absolute(r.rootfs))
    return invalid(top.child("rootfs"), "must be an absolute path without . or .. components");
  if (!r.args.empty() && r.args[0].empty()) return invalid(Ptr{"/args/0"}, "must not be empty");
  for (std::size_t i = 0; i < r.env.size(); ++i) {
    auto eq = r.env[i].find('=');
    if (eq == std::string::npos || eq == 0)
      return invalid(top.child("env").child(i), "must be NAME=VALUE");
  }
  if (!paths::is_normalized_absolute(r.cwd))
    return invalid(top.child("cwd"), "must be an absolute path without . or .. components");
  if (!r.hostname.empty() && !is_hostname(r.hostname))
    return invalid(top.child("hostname"),
                   "must be 1-63 characters of A-Z a-z 0-9 - . not starting with - or .");
  for (std::size_t i = 0; i < r.mounts.size(); ++i) {
    Ptr mounts_at = top.child("mounts");
    Ptr at = mounts_at.child(i);
    const auto& m = r.mounts[i];
    if (!paths::is_normalized_absolute(m.source))
      return invalid(at.child("source"), "must be an absolute path without . or .. components");
    if (!paths::is_normalized_absolute(m.destination) || m.destination == "/")
      return invalid(at.child("destination"),
                     "must be an absolute path other than / without . or .. components");
    if (is_reserved_destination(m.destination))
      return invalid(at.child("destination"),
                     "must not be /proc, /sys, /dev, /.sandbox-agent or under them");
    for (std::size_t j = 0; j < i; ++j)
      if (r.mounts[j].destination == m.destination)
        return invalid(at.child("destination"), "is already used by /mounts/" + std::to_string(j));
  }
  for (std::size_t i = 0; i < r.docker.dockerd_args.size(); ++i)
    if (is_reserved_dockerd_flag(r.docker.dockerd_args[i]))
      return invalid(top.child("docker").child("dockerd_args").child(i),
                     "sets a flag the Docker profile depends on (-H/--host, -G/--group, "
                     "--iptables, --ip6tables, -b/--bridge, --bip, --data-root, --exec-root, "
                     "-p/--pidfile, -g/--graph, --userns-remap)");
  if (r.docker.enabled && (r.user.uid != 0 || r.user.gid != 0))
    return invalid(top.child("user"),
                   "must be root (0/0) with docker.enabled: dockerd needs it; give the socket to a user with socket_owner");
  if (!r.docker.enabled && r.socket_owner)
    return invalid(top.child("socket_owner"), "needs docker.enabled: the socket is Docker's");
  if (r.network != NetworkMode::bridge) {
    if (!r.ports.empty()) return invalid(top.child("ports"), "needs network: bridge");
    if (r.egress) return invalid(top.child("egress"), "needs network: bridge");
  }
  for (std::size_t i = 0; i < r.ports.size(); ++i)
    for (std::size_t j = 0; j < i; ++j) {
      const auto& a = r.ports[i];
      const auto& b = r.ports[j];
      bool same_ip = a.host_ip.empty() || b.host_ip.empty() || a.host_ip == b.host_ip;
      if (a.host_port == b.host_port && a.protocol == b.protocol && same_ip)
        return invalid(top.child("ports").child(i).child("host_port"),
                       "is already published by /ports/" + std::to_string(j));
    }
  return Ok{};
}

namespace {

// A normalized absolute path (what requests must give) reached without a symlink is its
// own resolution: openat2 with RESOLVE_NO_SYMLINKS says so without the /proc/self/fd link,
// whose lookup makes a procfs dentry and inode per descriptor and cost more than the open
// (9 % of the agent's CPU per launch in bench/scale.py). nullopt: a symlink is on the way,
// or no openat2 (Linux < 5.6); "" with errno: not a directory, or it cannot be opened.
std::optional<std::string> resolve_dir_without_symlinks(const std::string& path) {
  if (!paths::is_normalized_absolute(path)) return std::nullopt;
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof how));
  if (fd >= 0) {
    ::close(fd);
    return path;
  }
  if (errno == ELOOP || errno == ENOSYS || errno == E2BIG || errno == EPERM) return std::nullopt;
  return std::string();
}

// The directory `path` names, symlinks resolved, as the kernel sees it: without a symlink
// on the way, the path itself (above); else an O_PATH open and its /proc/self/fd link (3
// system calls; realpath(3) is one readlink per component and a stat). Empty, with errno
// set, if it is not a directory or cannot be opened.
std::string resolve_dir(const std::string& path) {
  if (auto direct = resolve_dir_without_symlinks(path)) return *direct;
  int fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return {};
  char buf[PATH_MAX];
  char link[32];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = ::readlink(link, buf, sizeof buf);
  ::close(fd);
  std::string_view shown(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  if (n > 0 && n < static_cast<ssize_t>(sizeof buf) && shown.front() == '/' && !shown.ends_with(" (deleted)"))
    return std::string(shown);
  // No /proc, or a directory removed meanwhile: the library's way (and its errno).
  struct stat st {};
  if (!::realpath(path.c_str(), buf)) return {};
  if (::stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return {};
  }
  return buf;
}

// Resolves `path` (symlinks included) and checks it is a directory under an allowed prefix.
Status resolve_host_dir(std::string& path, const Ptr& at, const RequestPolicy& policy) {
  std::string resolved = resolve_dir(path);
  if (resolved.empty()) {
    // ENOTDIR is also a file in the middle of the path: realpath tells which it was, and names
    // what a non-directory resolves to.
    char buf[PATH_MAX];
    if (errno != ENOTDIR || !::realpath(path.c_str(), buf))
      return invalid(at, "cannot be resolved: " + path + ": " + paths::errno_text());
    return invalid(at, "must be a directory: " + std::string(buf));
  }
  for (const auto& prefix : policy.allowed_host_prefixes) {
    if (paths::is_same_or_under(resolved, prefix)) {
      path = std::move(resolved);
      return Ok{};
    }
  }
  std::string allowed;
  for (const auto& prefix : policy.allowed_host_prefixes) allowed += (allowed.empty() ? "" : ", ") + prefix;
  return invalid(at, (resolved == path ? path : path + " (" + resolved + ")") +
                         " is not under an allowed host prefix (" +
                         (allowed.empty() ? std::string("none configured") : allowed) + ")");
}

}  // namespace

Status apply_policy(LaunchRequest& r, const RequestPolicy& policy) {
  Ptr top{};
  if (!r.pool.empty()) return Ok{};
  if (auto s = resolve_host_dir(r.rootfs, top.child("rootfs"), policy); !s) return s;
  Ptr mounts_at = top.child("mounts");
  for (std::size_t i = 0; i < r.mounts.size(); ++i) {
    Ptr at = mounts_at.child(i);
    if (auto s = resolve_host_dir(r.mounts[i].source, at.child("source"), policy); !s) return s;
  }
  if (r.egress) {
    // A request narrows what the ceiling allows, never widens it: an allow entry the ceiling
    // refuses entirely is a mistake worth saying, not silently a no-op.
    auto ceiling = allowed_by(policy.egress_ceiling, /*deny_wins=*/false);
    for (std::size_t i = 0; i < r.egress->allow.size(); ++i) {
      const auto& c = r.egress->allow[i];
      if (!(c.v6 ? ceiling.v6 : ceiling.v4).overlaps(c.first(), c.last()))
        return invalid(top.child("egress").child("allow").child(i),
                       c.to_string() + " is outside what this agent allows (network.egress_ceiling)");
    }
  }
  if (r.docker.enabled && r.docker.cgroup == CgroupStrategy::host_bind && !policy.allow_host_cgroup_bind)
    return invalid(top.child("docker").child("cgroup"),
                   "host-bind is refused by this agent's configuration (allow_host_cgroup_bind)");
  return Ok{};
}

Result<LaunchRequest> parse_launch_request(std::string_view text, const RequestPolicy& policy) {
  return parse_launch_request_with(json::thread_parser(), text, policy);
}

Result<LaunchRequest> parse_launch_request_with(simdjson::ondemand::parser& parser, std::string_view text,
                                                const RequestPolicy& policy) {
  if (text.size() > policy.max_request_bytes)
    return make_error(ErrorCode::too_large,
                      "request is larger than " + std::to_string(policy.max_request_bytes) + " bytes");
  LaunchRequest r;
  auto s = json::parse_object_document(parser, text, [&](json::value root) { return parse_fields(root, r); });
  if (!s) return s.error();
  if (s = validate_request(r); !s) return s.error();
  if (s = apply_policy(r, policy); !s) return s.error();
  return r;
}

Status parse_request_value(json::value v, LaunchRequest& out) {
  if (auto s = parse_fields(v, out); !s) return s;
  return validate_request(out);
}

}  // namespace sandbox_agent
