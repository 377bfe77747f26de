// Reading what runsc says of itself, and deciding flags and the Docker profile from it.
// Decisions come from what the binary offers (its platforms, its flags), never from version
// strings: a runsc built from the Go module reports "VERSION_MISSING".
#include "sandbox_agent/runtime.hpp"

#include <algorithm>
#include <cstdlib>
#include <sstream>

namespace sandbox_agent {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

template <class F>
void for_each_line(std::string_view text, F f) {
  while (!text.empty()) {
    auto nl = text.find('\n');
    f(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// "runsc version X" and "spec: Y".
void parse_version(std::string_view text, RuntimeInfo& info) {
  for_each_line(text, [&](std::string_view line) {
    line = trim(line);
    if (line.starts_with("runsc version ")) info.version = std::string(trim(line.substr(14)));
    else if (line.starts_with("spec: ")) info.oci_version = std::string(trim(line.substr(6)));
  });
}

// Go's flag.PrintDefaults: "  -name type" on one line, its usage indented on the next.
std::vector<std::string> parse_flags(std::string_view text) {
  std::vector<std::string> names;
  for_each_line(text, [&](std::string_view line) {
    if (!line.starts_with("  -")) return;
    line.remove_prefix(3);
    auto end = line.find_first_of(" \t=");
    auto name = line.substr(0, end);
    if (!name.empty()) names.emplace_back(name);
  });
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

std::vector<std::string> parse_platforms(std::string_view text) {
  std::vector<std::string> out;
  for_each_line(text, [&](std::string_view line) {
    line = trim(line);
    bool word = !line.empty() && line.find_first_of(" :") == std::string_view::npos;
    if (word) out.emplace_back(line);
  });
  return out;
}

// "Docker version 20.10.24+dfsg1, build 5d6db84" -> 20.
int parse_docker_major(std::string_view text) {
  auto at = text.find("version ");
  if (at == std::string_view::npos) return 0;
  return std::atoi(std::string(text.substr(at + 8, 8)).c_str());
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : std::string(sep)) + x;
  return s;
}

// The value of "--name=value" in `flags`, if present.
const std::string* configured(const std::vector<std::string>& flags, std::string_view name) {
  for (const auto& f : flags)
    if (flag_name(f) == name) return &f;
  return nullptr;
}

}  // namespace

std::string_view flag_name(std::string_view flag) {
  if (!flag.starts_with('-')) return {};
  flag.remove_prefix(flag.starts_with("--") ? 2 : 1);
  return flag.substr(0, flag.find('='));
}

bool RuntimeInfo::has_flag(std::string_view name) const { return std::binary_search(flags.begin(), flags.end(), name); }

RuntimeInfo describe_runtime(const RuntimeProbeOutput& out, const RunscConfig& config) {
  RuntimeInfo info;
  info.path = config.path;
  info.probed = out.ran;
  info.probe_error = out.error;
  if (out.ran) {
    parse_version(out.version_text, info);
    info.flags = parse_flags(out.flags_text);
    info.platforms = parse_platforms(out.platforms_text);
  }
  info.host_dockerd_major = parse_docker_major(out.dockerd_version_text);
  // Not asked: assume what Debian's runsc (the oldest supported) accepts.
  auto supports = [&](std::string_view flag) { return !info.probed || info.has_flag(flag); };

  if (const auto* f = configured(config.flags, "platform")) {
    info.platform = f->substr(f->find('=') == std::string::npos ? f->size() : f->find('=') + 1);
    info.platform_source = "runsc.flags";
    if (config.platform != "auto")
      info.warnings.push_back("runsc.flags sets " + *f + "; runsc.platform (" + config.platform + ") is ignored");
  } else {
    if (config.platform != "auto") {
      info.platform = config.platform;
      info.platform_source = "runsc.platform";
    } else {
      // systrap where the binary has it (current gVisor's default); ptrace otherwise. Never
      // KVM by default: it needs /dev/kvm and hangs without nested virtualisation.
      info.platform = contains(info.platforms, "systrap") ? "systrap" : "ptrace";
      info.platform_source = "auto";
    }
    info.common_flags.push_back("--platform=" + info.platform);
  }
  if (info.probed && !info.platforms.empty() && !contains(info.platforms, info.platform))
    info.warnings.push_back("platform " + info.platform + " is not one this runsc lists (" +
                            join(info.platforms, ", ") + ")");

  // The host-visible Docker socket needs runsc to let the sandbox create host Unix sockets.
  if (!configured(config.flags, "host-uds") && !configured(config.flags, "fsgofer-host-uds")) {
    if (supports("host-uds")) info.common_flags.push_back("--host-uds=create");
    else if (info.has_flag("fsgofer-host-uds")) info.common_flags.push_back("--fsgofer-host-uds");
    else info.warnings.push_back("runsc has no --host-uds flag: Docker sockets will not be reachable from the host");
  }

  // dockerd needs raw sockets (netlink, iptables probing); only Docker sandboxes get them.
  if (!configured(config.flags, "net-raw") && supports("net-raw")) info.docker_flags.push_back("--net-raw");
  // Docker >= 28 writes to packet sockets; runsc refuses unless allowed (public flag since
  // release-20251208.0; the older TESTONLY one is never used).
  if (info.host_dockerd_major >= 28 && !configured(config.flags, "allow-packet-socket-write")) {
    if (info.has_flag("allow-packet-socket-write")) info.docker_flags.push_back("--allow-packet-socket-write");
    else info.warnings.push_back("dockerd " + std::to_string(info.host_dockerd_major) +
                                 " needs packet-socket writes, which this runsc cannot allow");
  }

  // Docker-in-gVisor (nested `docker run`) first worked in release-20231030.0; the systrap
  // platform is the feature of that generation that the binary shows (Debian's 20221219
  // lists only ptrace and kvm). A Go-module build has no release name to go by.
  if (!info.probed) {
    info.nested_reason = "runsc could not be asked (" + info.probe_error + ")";
  } else if (!contains(info.platforms, "systrap")) {
    info.nested_reason = "this runsc predates Docker-in-gVisor (no systrap platform): dockerd answers, docker run fails";
  } else if (!info.has_flag("net-raw")) {
    info.nested_reason = "this runsc has no --net-raw";
  } else {
    info.nested_containers = true;
    info.nested_reason = "current gVisor: overlay2 storage, cgroups served by the sandbox";
  }

  // Debian's 20221219 takes every namespace on this kernel for the root one (it looks for
  // /proc/sys/net/core/rmem_default) and refuses to run there; the same generation mark tells.
  if (!info.probed) {
    info.network_reason = "runsc could not be asked";
  } else if (!contains(info.platforms, "systrap")) {
    info.network_reason = "this runsc predates isolated networking in a prepared namespace (no systrap platform)";
  } else {
    info.isolated_network = true;
    info.network_reason = "runsc joins the sandbox's namespace and copies its interfaces";
  }

  // runsc makes a cgroup per sandbox in every hierarchy (its path "/ID" when the spec names
  // none): ~30 ms of each cold create on cgroup v1, and of no use to a sandbox without limits.
  if (const auto* f = configured(config.flags, "ignore-cgroups")) {
    auto value = f->find('=') == std::string::npos ? std::string_view("true") : std::string_view(*f).substr(f->find('=') + 1);
    bool go_false = value == "false" || value == "0" || value == "f" || value == "F" || value == "FALSE" || value == "False";
    if (!go_false)  // Go's flag package: the false spellings of strconv.ParseBool
      info.warnings.push_back("runsc.flags has " + *f + ": no sandbox gets a host cgroup, and requests' resources limits are not applied");
  } else if (config.host_cgroups != "always" && supports("ignore-cgroups")) {
    info.no_cgroup_flags.push_back("--ignore-cgroups");
  }

  info.dockerd_flags = {"--iptables=false", "--ip6tables=false", "--bridge=none"};
  if (info.nested_containers) info.dockerd_flags.push_back("--storage-driver=overlay2");
  return info;
}

std::string RuntimeInfo::summary() const {
  std::ostringstream s;
  s << "runtime " << path;
  if (probed) s << " (version " << (version.empty() ? "?" : version) << ", OCI " << (oci_version.empty() ? "?" : oci_version) << ")";
  else s << " (not probed: " << probe_error << ")";
  s << "; platform " << platform << " (" << platform_source;
  if (!platforms.empty()) s << "; offers " << join(platforms, ", ");
  s << "); nested containers: " << (nested_containers ? "yes" : "no") << " (" << nested_reason << ")";
  s << "; bridge networking: " << (isolated_network ? "yes" : "no");
  if (!isolated_network) s << " (" << network_reason << ")";
  std::vector<std::string> added = common_flags;
  for (const auto& f : docker_flags) added.push_back(f + " (Docker sandboxes)");
  for (const auto& f : no_cgroup_flags) added.push_back(f + " (sandboxes without resources limits)");
  if (!added.empty()) s << "; adds " << join(added, " ");
  return s.str();
}

}  // namespace sandbox_agent
