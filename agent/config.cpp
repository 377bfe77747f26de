// Configuration: defaults < JSON file < command-line flags. Unknown keys are errors.
#include "sandbox_agent/config.hpp"

#include <climits>
#include <cstdlib>
#include <thread>

#include "json_in.hpp"
#include "json_out.hpp"
#include "metrics.hpp"
#include "paths.hpp"
#include "request_parse.hpp"

namespace sandbox_agent {

using json::Ptr;
using json::invalid;

RequestPolicy Config::request_policy() const {
  RequestPolicy p{allowed_host_prefixes, allow_host_cgroup_bind, static_cast<std::size_t>(limits.max_request_bytes)};
  p.egress_ceiling = network.egress_ceiling;
  return p;
}

const PoolConfig* Config::pool(std::string_view name) const {
  for (const auto& p : pools)
    if (p.name == name) return &p;
  return nullptr;
}

unsigned Config::runsc_concurrency() const {
  if (runsc.max_concurrent) return runsc.max_concurrent;
  unsigned cores = std::thread::hardware_concurrency();
  return 2 * (cores ? cores : 1);
}

namespace {

Status parse_mode(json::value v, const Ptr& at, unsigned& out) {
  std::string s;
  if (auto st = json::read_string(v, at, s, 8); !st) return st;
  char* end = nullptr;
  unsigned long m = std::strtoul(s.c_str(), &end, 8);
  if (s.empty() || *end || m > 0777) return invalid(at, "must be an octal mode string like \"0660\"");
  out = static_cast<unsigned>(m);
  return Ok{};
}

Status parse_id_list(json::value v, const Ptr& at, std::vector<std::uint32_t>& out) {
  simdjson::ondemand::array arr;
  if (auto e = v.get_array().get(arr)) return json::simdjson_error(e, at, "must be an array of ids");
  out.clear();
  for (auto item : arr) {
    json::value iv;
    Ptr here = at.child(out.size());
    if (auto e = item.get(iv)) return json::simdjson_error(e, here, "must be an integer");
    std::uint32_t id = 0;
    if (auto s = json::read_u32(iv, here, id, 0, 0xfffffffeu); !s) return s;
    out.push_back(id);
  }
  return Ok{};
}

Status parse_socket(json::value v, const Ptr& at, SocketConfig& c) {
  return json::for_each_member(v, at, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
    if (k == "path") return json::read_string(m, p, c.path);
    if (k == "mode") return parse_mode(m, p, c.mode);
    if (k == "allowed_uids") return parse_id_list(m, p, c.allowed_uids);
    if (k == "allowed_gids") return parse_id_list(m, p, c.allowed_gids);
    return invalid(p, "unknown key");
  });
}

Status parse_runsc(json::value v, const Ptr& at, RunscConfig& c) {
  return json::for_each_member(v, at, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
    if (k == "path") return json::read_string(m, p, c.path);
    if (k == "platform") return json::read_string(m, p, c.platform, 32);
    if (k == "flags") return json::read_string_array(m, p, c.flags, 64);
    if (k == "max_concurrent") return json::read_u32(m, p, c.max_concurrent, 1, 1024);
    if (k == "timeout_ms") return json::read_u32(m, p, c.timeout_ms, 100, 3600000);
    if (k == "launch") return json::read_string(m, p, c.launch, 32);
    if (k == "host_cgroups") return json::read_string(m, p, c.host_cgroups, 32);
    if (k == "spawn_helper") return json::read_bool(m, p, c.spawn_helper);
    return invalid(p, "unknown key");
  });
}

Status parse_probe(json::value v, const Ptr& at, ProbeConfig& c) {
  return json::for_each_member(v, at, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
    if (k == "initial_ms") return json::read_u32(m, p, c.initial_ms, 1, 60000);
    if (k == "factor") return json::read_double(m, p, c.factor, 1.0, 10.0);
    if (k == "max_ms") return json::read_u32(m, p, c.max_ms, 1, 600000);
    if (k == "jitter") return json::read_double(m, p, c.jitter, 0.0, 1.0);
    if (k == "attempt_timeout_ms") return json::read_u32(m, p, c.attempt_timeout_ms, 1, 600000);
    return invalid(p, "unknown key");
  });
}

Status parse_docker(json::value v, const Ptr& at, DockerConfig& c) {
  return json::for_each_member(v, at, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
    if (k == "ready_timeout_ms") return json::read_u32(m, p, c.ready_timeout_ms, 1, 3600000);
    if (k == "dockerd_path") return json::read_string(m, p, c.dockerd_path);
    if (k == "containerd_path") return json::read_string(m, p, c.containerd_path);
    return invalid(p, "unknown key");
  });
}

Status parse_limits(json::value v, const Ptr& at, LimitsConfig& c) {
  return json::for_each_member(v, at, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
    if (k == "max_sandboxes") return json::read_u32(m, p, c.max_sandboxes, 1, 1000000);
    if (k == "max_connections") return json::read_u32(m, p, c.max_connections, 1, 1000000);
    if (k == "max_request_bytes") return json::read_uint(m, p, c.max_request_bytes, 1024, 64u << 20);
    if (k == "max_pending_launches") return json::read_u32(m, p, c.max_pending_launches, 1, 1000000);
    if (k == "max_watchers") return json::read_u32(m, p, c.max_watchers, 0, 100000);
    if (k == "max_output_bytes") return json::read_uint(m, p, c.max_output_bytes, 4096, 1u << 30);
    if (k == "first_line_timeout_ms") return json::read_u32(m, p, c.first_line_timeout_ms, 100, 3600000);
    if (k == "max_execs") return json::read_u32(m, p, c.max_execs, 1, 4096);
    if (k == "max_copy_bytes") return json::read_uint(m, p, c.max_copy_bytes, 1, 1ull << 40);
    return invalid(p, "unknown key");
  });
}

Status parse_network(json::value v, const Ptr& at, NetworkConfig& c) {
  return json::for_each_member(v, at, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
    if (k == "subnet") return json::read_string(m, p, c.subnet, 64);
    if (k == "cni_conf") return json::read_string(m, p, c.cni_conf);
    if (k == "cni_path") return json::read_string(m, p, c.cni_path);
    if (k == "egress_ceiling") {
      EgressRules e = default_egress_ceiling();  // a list not given keeps its default
      auto st = parse_egress_rules(m, p, e);
      if (st) c.egress_ceiling = std::move(e);
      return st;
    }
    if (k == "dns") {
      auto st = json::read_string_array(m, p, c.dns, 8, 64);
      for (std::size_t i = 0; st && i < c.dns.size(); ++i)
        if (!parse_address(c.dns[i])) return invalid(p.child(i), "must be an IPv4 or IPv6 address");
      return st;
    }
    if (k == "resolv_conf") return json::read_string(m, p, c.resolv_conf);
    if (k == "plugin_timeout_ms") return json::read_u32(m, p, c.plugin_timeout_ms, 100, 600000);
    if (k == "max_concurrent") return json::read_u32(m, p, c.max_concurrent, 1, 1024);
    return invalid(p, "unknown key");
  });
}

Status parse_logs(json::value v, const Ptr& at, LogsConfig& c) {
  return json::for_each_member(v, at, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
    if (k == "max_bytes_per_sandbox") {
      auto st = json::read_uint(m, p, c.max_bytes_per_sandbox, 0, 1ull << 36);
      if (st && c.max_bytes_per_sandbox != 0 && c.max_bytes_per_sandbox < (64u << 10))
        return invalid(p, "must be 0 (no quota) or at least 65536");
      return st;
    }
    return invalid(p, "unknown key");
  });
}

Status parse_metrics(json::value v, const Ptr& at, MetricsConfig& c) {
  return json::for_each_member(v, at, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
    if (k == "listen") {
      if (auto st = json::read_string(m, p, c.listen, 200); !st) return st;
      if (auto ep = parse_metrics_listen(c.listen); !ep) return invalid(p, ep.error().message);
      return Ok{};
    }
    return invalid(p, "unknown key");
  });
}

constexpr unsigned kMaxPoolSize = 1000;

Status read_pools(json::value v, const Ptr& at, std::vector<PoolConfig>& out) {
  simdjson::ondemand::array arr;
  if (auto e = v.get_array().get(arr)) return json::simdjson_error(e, at, "must be an array of pools");
  std::size_t i = 0;
  for (auto item : arr) {
    Ptr here = at.child(i++);
    if (i > 64) return invalid(here, "at most 64 pools");
    json::value pv;
    if (auto e = item.get(pv)) return json::simdjson_error(e, here, "must be an object");
    PoolConfig pc;
    bool has_name = false, has_size = false, has_request = false;
    auto s = json::for_each_member(pv, here, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
      if (k == "name") {
        has_name = true;
        auto st = json::read_string(m, p, pc.name, 64);
        if (st && !is_valid_pool_name(pc.name)) return invalid(p, "must be 1-32 of A-Z a-z 0-9 _ . - (not starting with . _ -)");
        return st;
      }
      if (k == "size") { has_size = true; return json::read_u32(m, p, pc.size, 0, kMaxPoolSize); }
      if (k == "request") {
        has_request = true;
        simdjson::ondemand::object obj;
        std::string_view raw;
        if (auto e = m.get_object().get(obj)) return json::simdjson_error(e, p, "must be a launch request (an object)");
        if (auto e = obj.raw_json().get(raw)) return json::simdjson_error(e, p, "must be a launch request (an object)");
        pc.template_json = json::minify(std::string(raw));
        return Ok{};
      }
      return invalid(p, "unknown key");
    });
    if (!s) return s;
    if (!has_name) return invalid(here.child("name"), "is required");
    if (!has_size) return invalid(here.child("size"), "is required");
    if (!has_request) return invalid(here.child("request"), "is required");
    for (const auto& other : out)
      if (other.name == pc.name) return invalid(here.child("name"), "names another pool too");
    out.push_back(std::move(pc));
  }
  return Ok{};
}

// FNV-1a: a stable hash of a template's text (members record it; a changed template
// replaces them).
std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

// A pool's template: a full launch request, under the same policy as any, with what only a
// claim can say left out.
Status finish_pool(PoolConfig& pc, const Ptr& at, const RequestPolicy& policy) {
  auto r = parse_launch_request(pc.template_json, policy);
  if (!r) {
    auto e = r.error();
    e.field = at.child("request").path() + e.field;
    return e;
  }
  Ptr req = at.child("request");
  if (!r->id.empty()) return invalid(req.child("id"), "is the claim's (each member gets its own until then)");
  if (!r->pool.empty()) return invalid(req.child("pool"), "cannot be set in a pool's template");
  if (!r->ports.empty()) return invalid(req.child("ports"), "cannot be published by every member of a pool at once");
  pc.request = std::move(r.value());
  pc.template_hash = fnv1a(pc.template_json);
  return Ok{};
}

// A program inside the image: an absolute path, or a name looked up in the sandbox's PATH.
bool is_program_name(const std::string& p) { return !p.empty() && (p[0] == '/' || p.find('/') == std::string::npos); }

bool is_log_level(std::string_view l) {
  for (auto n : {"trace", "debug", "info", "warn", "error", "critical", "off"})
    if (l == n) return true;
  return false;
}

Status parse_top(json::value root, Config& c) {
  return json::for_each_member(root, Ptr{}, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
    if (k == "root") return json::read_string(m, p, c.root);
    if (k == "socket") return parse_socket(m, p, c.socket);
    if (k == "spool") return json::read_string(m, p, c.spool);
    if (k == "runsc") return parse_runsc(m, p, c.runsc);
    if (k == "allowed_host_prefixes") return json::read_string_array(m, p, c.allowed_host_prefixes, 256);
    if (k == "allow_host_cgroup_bind") return json::read_bool(m, p, c.allow_host_cgroup_bind);
    if (k == "probe") return parse_probe(m, p, c.probe);
    if (k == "docker") return parse_docker(m, p, c.docker);
    if (k == "limits") return parse_limits(m, p, c.limits);
    if (k == "network") return parse_network(m, p, c.network);
    if (k == "logs") return parse_logs(m, p, c.logs);
    if (k == "pools") return read_pools(m, p, c.pools);
    if (k == "metrics") return parse_metrics(m, p, c.metrics);
    if (k == "stop_sandboxes_on_exit") return json::read_bool(m, p, c.stop_sandboxes_on_exit);
    if (k == "clean_orphans") return json::read_bool(m, p, c.clean_orphans);
    if (k == "log_level") return json::read_string(m, p, c.log_level, 16);
    if (k == "sandbox_init") return json::read_string(m, p, c.sandbox_init);
    return invalid(p, "unknown key");
  });
}

std::string expand_root(const std::string& value, const std::string& root) {
  // "ROOT/x" in the file means the configured root, as in the documented example.
  if (value == "ROOT") return root;
  if (value.starts_with("ROOT/")) return paths::join(root, value.substr(5));
  return value;
}

// Derived defaults and checks that involve several keys.
Status finish(Config& c) {
  auto err = [&](std::string field, std::string msg) {
    return make_error(ErrorCode::invalid_request, std::move(msg), std::move(field));
  };
  if (c.root.empty()) c.root = std::string(kDefaultRoot);
  if (c.root[0] != '/') {
    char cwd[PATH_MAX];
    if (!::getcwd(cwd, sizeof cwd)) return err("/root", "cannot resolve a relative root");
    c.root = paths::join(cwd, c.root);
  }
  while (c.root.size() > 1 && c.root.back() == '/') c.root.pop_back();
  c.socket.path = c.socket.path.empty() ? paths::join(c.root, "agent.sock") : expand_root(c.socket.path, c.root);
  c.spool = c.spool.empty() ? paths::join(c.root, "spool") : expand_root(c.spool, c.root);
  if (c.allowed_host_prefixes.empty())
    c.allowed_host_prefixes = {paths::join(c.root, "images"), "/srv/images"};
  for (std::size_t i = 0; i < c.allowed_host_prefixes.size(); ++i) {
    auto& p = c.allowed_host_prefixes[i];
    p = expand_root(p, c.root);
    if (!paths::is_normalized_absolute(p))
      return err("/allowed_host_prefixes/" + std::to_string(i), "must be an absolute, normalised path");
    if (p == "/") return err("/allowed_host_prefixes/" + std::to_string(i), "must not be / (it would allow every host path)");
    char buf[PATH_MAX];  // compare against what requests resolve to
    if (::realpath(p.c_str(), buf)) p = buf;
  }
  if (c.sandbox_init.empty()) {
    auto beside = paths::join(paths::self_exe_dir(), "sandbox-init");
    c.sandbox_init = ::access(beside.c_str(), X_OK) == 0 ? beside : "/usr/lib/sandbox-agent/sandbox-init";
  }
  if (c.runsc.path.empty())
    c.runsc.path = ::access(std::string(kProjectRunsc).c_str(), X_OK) == 0 ? kProjectRunsc : kDebianRunsc;
  if (c.runsc.platform.empty() ||
      c.runsc.platform.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") != std::string::npos)
    return err("/runsc/platform", "must be \"auto\" or a platform name such as systrap or ptrace");
  if (c.runsc.host_cgroups != "limited" && c.runsc.host_cgroups != "always")
    return err("/runsc/host_cgroups", "must be \"limited\" (a host cgroup only for a sandbox with resources) or \"always\"");
  if (c.runsc.launch != "run" && c.runsc.launch != "create_start")
    return err("/runsc/launch", "must be \"run\" (one runsc run --detach) or \"create_start\" (runsc create, then runsc start)");
  for (std::size_t i = 0; i < c.runsc.flags.size(); ++i) {
    const auto& f = c.runsc.flags[i];
    if (f == "--root" || f == "-root" || f.starts_with("--root=") || f.starts_with("-root="))
      return err("/runsc/flags/" + std::to_string(i), "--root is the agent's own (ROOT/runsc)");
  }
  if (c.socket.path.size() >= 108) return err("/socket/path", "is longer than a Unix socket path may be (107 bytes)");
  if (!is_log_level(c.log_level))
    return err("/log_level", "must be one of trace, debug, info, warn, error, critical, off");
  if (!is_program_name(c.docker.dockerd_path))
    return err("/docker/dockerd_path", "must be an absolute path or a bare program name");
  if (!c.docker.containerd_path.empty() && !is_program_name(c.docker.containerd_path))
    return err("/docker/containerd_path", "must be an absolute path, a bare program name or \"\" (dockerd starts its own)");
  {
    std::string why;
    auto subnet = parse_cidr(c.network.subnet, &why);
    if (!subnet) return err("/network/subnet", c.network.subnet + " " + why);
    if (subnet->v6 || subnet->prefix > 28)
      return err("/network/subnet", "must be an IPv4 CIDR of /28 or wider (the built-in CNI config's range)");
  }
  for (auto* f : {&c.network.cni_conf, &c.network.resolv_conf, &c.network.cni_path}) *f = expand_root(*f, c.root);
  if (!paths::is_normalized_absolute(c.network.cni_path))
    return err("/network/cni_path", "must be an absolute, normalised path");
  if (!c.network.cni_conf.empty() && !paths::is_normalized_absolute(c.network.cni_conf))
    return err("/network/cni_conf", "must be an absolute, normalised path");
  if (!c.network.resolv_conf.empty() && !paths::is_normalized_absolute(c.network.resolv_conf))
    return err("/network/resolv_conf", "must be an absolute, normalised path");
  if (c.probe.max_ms < c.probe.initial_ms) return err("/probe/max_ms", "must be at least probe.initial_ms");
  auto policy = c.request_policy();
  for (std::size_t i = 0; i < c.pools.size(); ++i)
    if (auto s = finish_pool(c.pools[i], Ptr{"/pools"}.child(i), policy); !s) return s;
  return Ok{};
}

void apply_overrides(Config& c, const ConfigOverrides& o) {
  if (!o.root.empty()) c.root = o.root;
  if (!o.socket.empty()) c.socket.path = o.socket;
  if (!o.spool.empty()) c.spool = o.spool;
  if (!o.runsc.empty()) c.runsc.path = o.runsc;
  if (!o.log_level.empty()) c.log_level = o.log_level;
  if (o.stop_sandboxes_on_exit >= 0) c.stop_sandboxes_on_exit = o.stop_sandboxes_on_exit;
}

}  // namespace

namespace {
Result<Config> build(const std::string_view* text, const ConfigOverrides& o) {
  Config c;
  if (text) {
    auto s = json::parse_object_document(json::thread_parser(), *text,
                                         [&](json::value root) { return parse_top(root, c); });
    if (!s) return s.error();
  }
  apply_overrides(c, o);
  if (auto s = finish(c); !s) return s.error();
  return c;
}
}  // namespace

Result<Config> parse_config(std::string_view text, const ConfigOverrides& o) {
  return build(&text, o);
}

Result<Config> load_config(const std::string& file, const ConfigOverrides& o) {
  std::string text;
  // Never blocks (SIGHUP reloads on the reactor): a FIFO or a device is refused.
  if (!file.empty() && !paths::read_regular_file(file, text, 4 << 20))
    return make_error(ErrorCode::invalid_request,
                      errno == EINVAL ? "cannot read: not a regular file" : "cannot read: " + paths::errno_text());
  if (file.empty()) return build(nullptr, o);
  return parse_config(text, o);
}

}  // namespace sandbox_agent
