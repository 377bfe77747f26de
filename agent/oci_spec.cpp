// The request → OCI spec mapping: the base profile every sandbox gets, and the
// Docker-in-gVisor profile (see docs/docker-profile.md for why each piece is there).
#include "sandbox_agent/spec.hpp"

#include "oci_model.hpp"

namespace sandbox_agent {

namespace {

const std::vector<std::string>& base_capabilities() {
  // Docker's default set: what an ordinary container process expects.
  static const std::vector<std::string> caps{
      "CAP_AUDIT_WRITE", "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
      "CAP_KILL",        "CAP_MKNOD",   "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
      "CAP_SETGID",      "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"};
  return caps;
}

const std::vector<std::string>& docker_capabilities() {
  // gVisor's documented set for Docker-in-gVisor, plus SYS_RESOURCE (dockerd raises rlimits).
  static const std::vector<std::string> caps{
      "CAP_AUDIT_WRITE", "CAP_CHOWN",    "CAP_DAC_OVERRIDE", "CAP_FOWNER",  "CAP_FSETID",
      "CAP_KILL",        "CAP_MKNOD",    "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW",
      "CAP_SETFCAP",     "CAP_SETGID",   "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_ADMIN",
      "CAP_SYS_CHROOT",  "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE"};
  return caps;
}

// The dockerd flags every Docker sandbox needs on any supported runsc: no iptables, no
// bridge (the sandbox has no network stack to program). On current gVisor the agent adds
// --storage-driver=overlay2 (RuntimeInfo::dockerd_flags); Debian's falls back to vfs.
const std::vector<std::string>& portable_dockerd_flags() {
  static const std::vector<std::string> flags{"--iptables=false", "--ip6tables=false",
                                              "--bridge=none"};
  return flags;
}

oci::Mount tmpfs(std::string dest, std::vector<std::string> options) {
  return {std::move(dest), "tmpfs", "tmpfs", std::move(options)};
}

oci::Mount bind(std::string dest, std::string source, bool readonly) {
  return {std::move(dest), "bind", std::move(source), {"rbind", readonly ? "ro" : "rw"}};
}

void add_base_mounts(std::vector<oci::Mount>& m) {
  m.push_back({"/proc", "proc", "proc", {}});
  m.push_back(tmpfs("/dev", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  m.push_back({"/dev/pts", "devpts", "devpts",
               {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}});
  m.push_back(tmpfs("/dev/shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}));
  m.push_back({"/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}});
  m.push_back({"/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}});
  m.push_back(tmpfs("/tmp", {"nosuid", "nodev", "mode=1777"}));
  m.push_back(tmpfs("/run", {"nosuid", "nodev", "mode=755"}));
}

void add_cgroup_mount(std::vector<oci::Mount>& m, CgroupStrategy s) {
  switch (s) {
    case CgroupStrategy::sandbox:
    case CgroupStrategy::auto_detect:  // served by gVisor where it can; init decides at run time
      m.push_back({"/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "rw"}});
      break;
    case CgroupStrategy::host_bind:  // the seed's approach; kept for newer runsc, refused by default
      m.push_back(bind("/sys/fs/cgroup", "/sys/fs/cgroup", false));
      break;
    case CgroupStrategy::userns:
    case CgroupStrategy::none:
      break;
  }
}

std::vector<std::string> init_args(const LaunchRequest& r, const SpecContext& ctx) {
  std::vector<std::string> a{std::string(kInitPath), "--status-dir", std::string(kSocketsMount),
                             "--log-dir", std::string(kLogsMount)};
  if (r.docker.enabled) {
    a.insert(a.end(), {"--dockerd", ctx.dockerd_path, "--cgroup", std::string(to_string(r.docker.cgroup)),
                       "--dockerd-socket", std::string(kDockerdInnerSocket), "--relay-socket",
                       std::string(kSocketsMount) + "/" + std::string(kDockerSocketName)});
    const auto& profile = ctx.dockerd_flags.empty() ? portable_dockerd_flags() : ctx.dockerd_flags;
    if (!ctx.containerd_path.empty()) a.insert(a.end(), {"--containerd", ctx.containerd_path});
    for (const auto& f : profile) a.push_back("--dockerd-arg=" + f);
    for (const auto& f : r.docker.dockerd_args) a.push_back("--dockerd-arg=" + f);
  }
  a.push_back("--");
  a.insert(a.end(), r.args.begin(), r.args.end());
  return a;
}

std::vector<std::string> process_env(const LaunchRequest& r) {
  std::vector<std::string> env;
  bool has_path = false;
  for (const auto& e : r.env) has_path = has_path || e.starts_with("PATH=");
  if (!has_path) env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  // A docker client inside (an exec, the main process) finds dockerd where the profile puts
  // its socket, not at /var/run/docker.sock (a tmpfs of the profile's own).
  bool has_docker_host = false;
  for (const auto& e : r.env) has_docker_host = has_docker_host || e.starts_with("DOCKER_HOST=");
  if (r.docker.enabled && !has_docker_host) env.push_back("DOCKER_HOST=unix://" + std::string(kDockerdInnerSocket));
  env.insert(env.end(), r.env.begin(), r.env.end());
  return env;
}

}  // namespace

std::string render_spec(const LaunchRequest& r, const SpecContext& ctx, bool indented) {
  oci::Spec spec;
  auto& p = spec.process;
  p.user = {r.user.uid, r.user.gid};
  p.args = init_args(r, ctx);
  p.env = process_env(r);
  p.cwd = r.cwd;
  p.capabilities.caps = r.docker.enabled ? docker_capabilities() : base_capabilities();
  // Plain sandboxes keep no inheritable capabilities (as Docker does since CVE-2022-24769);
  // the Docker profile sets all four, as gVisor documents for dockerd inside.
  p.capabilities.inheritable = r.docker.enabled;
  p.rlimits.push_back({"RLIMIT_NOFILE", 1048576, 1048576});
  // dockerd needs setuid helpers and file capabilities; plain sandboxes do not.
  p.no_new_privileges = !r.docker.enabled;

  spec.root = {r.rootfs, true};  // shared between sandboxes: never written
  spec.hostname = r.hostname.empty() ? r.id : r.hostname;

  auto& m = spec.mounts;
  add_base_mounts(m);
  if (r.docker.enabled) {
    m.push_back(tmpfs("/var/lib/docker", {"nosuid", "nodev", "mode=711"}));
    m.push_back(tmpfs("/etc/docker", {"nosuid", "nodev", "mode=755"}));
    m.push_back(tmpfs("/var/run", {"nosuid", "nodev", "mode=755"}));
    add_cgroup_mount(m, r.docker.cgroup);
  }
  for (const auto& rm : r.mounts) m.push_back(bind(rm.destination, rm.source, rm.readonly));
  if (r.network == NetworkMode::bridge && !ctx.resolv_conf.empty())
    m.push_back(bind(std::string("/etc/resolv.conf"), ctx.resolv_conf, true));
  // Last, so nothing the request mounts can hide them.
  m.push_back({std::string(kInitPath), "bind", ctx.sandbox_init, {"bind", "ro"}});
  m.push_back(bind(std::string(kSocketsMount), ctx.sockets_dir, false));
  m.push_back(bind(std::string(kLogsMount), ctx.logs_dir, false));

  spec.annotations.emplace_back(std::string(kIdAnnotation), r.id);
  for (const auto& [k, v] : r.labels) spec.annotations.emplace_back("dev.sandbox-agent.label." + k, v);

  auto& ns = spec.linux_.namespaces;
  for (const char* t : {"pid", "ipc", "uts", "mount"}) ns.push_back({t, ""});
  if (r.network == NetworkMode::none) ns.push_back({"network", ""});
  // Host network: no entry (runsc --network=host uses the host's). Bridge: the pinned one.
  if (r.network == NetworkMode::bridge) ns.push_back({"network", ctx.netns_path});

  auto& res = spec.linux_.resources;
  if (r.resources.cpus) {
    constexpr std::uint64_t period = 100000;
    res.cpu = oci::CpuResources{static_cast<std::int64_t>(*r.resources.cpus * period + 0.5), period};
  }
  if (r.resources.memory_mb)
    res.memory = oci::LimitResource{static_cast<std::int64_t>(*r.resources.memory_mb << 20)};
  if (r.resources.pids) res.pids = oci::LimitResource{*r.resources.pids};

  return json::to_json(spec, indented ? json::Layout::indented : json::Layout::compact);
}

}  // namespace sandbox_agent
