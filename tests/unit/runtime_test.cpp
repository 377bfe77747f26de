// What the agent decides from the runtime probe (sandbox_agent/runtime.hpp). The texts are
// what the two runscs this project supports print (Debian's 20221219, current gVisor built
// from its Go module), abridged to the lines that matter.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "sandbox_agent/runtime.hpp"

using namespace sandbox_agent;

namespace {

constexpr const char* kDebianFlags =
    "  -host-uds value\n    \tcontrols permission to access host Unix-domain sockets. Values: none|open|create|all\n"
    "  -ignore-cgroups\n    \tdon't configure cgroups.\n"
    "  -net-raw runsc exec\n    \tenable raw sockets. When false, raw sockets are disabled\n"
    "  -network value\n    \tspecifies which network to use: sandbox (default), host, none.\n"
    "  -platform string\n    \tspecifies which platform to use: ptrace (default), kvm. (default \"ptrace\")\n"
    "  -TESTONLY-allow-packet-endpoint-write\n    \tTEST ONLY; do not ever use!\n";
constexpr const char* kCurrentFlags =
    "  -allow-packet-socket-write\n    \tallow writes on packet sockets\n"
    "  -host-uds value\n    \tcontrols permission to access host Unix-domain sockets.\n"
    "  -ignore-cgroups\n    \tdon't configure cgroups.\n"
    "  -net-raw runsc exec\n    \tenable raw sockets.\n"
    "  -network value\n    \tspecifies which network to use\n"
    "  -platform string\n    \tspecifies which platform to use: systrap (default), ptrace, kvm.\n";

RuntimeProbeOutput debian(std::string dockerd = "Docker version 20.10.24+dfsg1, build 5d6db84\n") {
  return {true, "", "runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n", kDebianFlags, "kvm\nptrace\n", dockerd};
}

RuntimeProbeOutput current(std::string dockerd = "Docker version 20.10.24+dfsg1, build 5d6db84\n") {
  return {true, "", "runsc version go-v0.0.0-20260905035102-160fafc42237\nspec: 1.2.1\n", kCurrentFlags,
          "kvm\nptrace\nslimvm\nsystrap\n", dockerd};
}

RunscConfig defaults() { return RunscConfig{}; }

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

}  // namespace

TEST_CASE("runtime: Debian's runsc gets ptrace, host UDS, and no nested containers") {
  auto info = describe_runtime(debian(), defaults());
  CHECK(info.probed);
  CHECK(info.version == "0.0~20221219.0");
  CHECK(info.oci_version == "1.0.2-dev");
  CHECK(info.platforms == std::vector<std::string>{"kvm", "ptrace"});
  CHECK(info.platform == "ptrace");
  CHECK(info.platform_source == "auto");
  CHECK_FALSE(info.nested_containers);
  CHECK(info.common_flags == std::vector<std::string>{"--platform=ptrace", "--host-uds=create"});
  CHECK(info.docker_flags == std::vector<std::string>{"--net-raw"});
  // vfs: overlay2 fails on this runsc, so it is not asked for
  CHECK(info.dockerd_flags == std::vector<std::string>{"--iptables=false", "--ip6tables=false", "--bridge=none"});
  CHECK(info.summary().find("nested containers: no") != std::string::npos);
  CHECK_FALSE(info.isolated_network);
  CHECK(info.summary().find("bridge networking: no (this runsc predates") != std::string::npos);
  CHECK(info.warnings.empty());
}

TEST_CASE("runtime: current gVisor gets systrap, --net-raw for Docker, overlay2, nested containers") {
  auto info = describe_runtime(current(), defaults());
  CHECK(info.version == "go-v0.0.0-20260905035102-160fafc42237");
  CHECK(info.oci_version == "1.2.1");
  CHECK(info.platform == "systrap");
  CHECK(info.nested_containers);
  CHECK(info.common_flags == std::vector<std::string>{"--platform=systrap", "--host-uds=create"});
  CHECK(info.docker_flags == std::vector<std::string>{"--net-raw"});
  CHECK(has(info.dockerd_flags, "--storage-driver=overlay2"));
  CHECK(info.summary().find("nested containers: yes") != std::string::npos);
  CHECK(info.isolated_network);
  CHECK(info.summary().find("bridge networking: yes") != std::string::npos);
  CHECK(info.summary().find("platform systrap") != std::string::npos);
}

TEST_CASE("runtime: never KVM by default, even when it is the only other platform") {
  auto out = current();
  out.platforms_text = "kvm\nptrace\n";
  CHECK(describe_runtime(out, defaults()).platform == "ptrace");
}

TEST_CASE("runtime: the packet-socket flag only where the binary has it and dockerd needs it") {
  auto docker28 = "Docker version 28.2.2, build e6534b4\n";
  // Docker 20.10 does not write to packet sockets: no flag, even where runsc has one
  CHECK_FALSE(has(describe_runtime(current(), defaults()).docker_flags, "--allow-packet-socket-write"));
  auto info = describe_runtime(current(docker28), defaults());
  CHECK(info.host_dockerd_major == 28);
  CHECK(has(info.docker_flags, "--allow-packet-socket-write"));
  // Debian's has only the TESTONLY variant: never used, and the operator is told
  auto old = describe_runtime(debian(docker28), defaults());
  for (const auto& f : old.docker_flags) CHECK(f.find("TESTONLY") == std::string::npos);
  CHECK_FALSE(has(old.docker_flags, "--allow-packet-socket-write"));
  REQUIRE(old.warnings.size() == 1);
  CHECK(old.warnings[0].find("packet-socket") != std::string::npos);
  // no dockerd on the host: nothing assumed
  CHECK(describe_runtime(current(""), defaults()).host_dockerd_major == 0);
}

TEST_CASE("runtime: runsc.platform names the platform; one runsc does not list is a warning") {
  auto config = defaults();
  config.platform = "ptrace";
  auto info = describe_runtime(current(), config);
  CHECK(info.platform == "ptrace");
  CHECK(info.platform_source == "runsc.platform");
  CHECK(has(info.common_flags, "--platform=ptrace"));
  CHECK(info.warnings.empty());
  config.platform = "systrap";
  auto old = describe_runtime(debian(), config);
  CHECK(old.platform == "systrap");
  REQUIRE(old.warnings.size() == 1);
  CHECK(old.warnings[0].find("not one this runsc lists") != std::string::npos);
}

TEST_CASE("runtime: flags the operator set in runsc.flags win and are not added twice") {
  auto config = defaults();
  config.flags = {"--network=none", "--platform=ptrace", "--host-uds=all", "--net-raw"};
  auto info = describe_runtime(current(), config);
  CHECK(info.platform == "ptrace");
  CHECK(info.platform_source == "runsc.flags");
  CHECK(info.common_flags.empty());
  CHECK(info.docker_flags.empty());
  config.platform = "systrap";  // both given: the explicit flag wins, and that is said
  auto both = describe_runtime(current(), config);
  CHECK(both.platform == "ptrace");
  REQUIRE(both.warnings.size() == 1);
  CHECK(both.warnings[0].find("is ignored") != std::string::npos);
}

TEST_CASE("runtime: a runsc that cannot be asked gets Debian's flags and no claims") {
  RuntimeProbeOutput failed;
  failed.error = "cannot run /nope/runsc: No such file or directory";
  auto info = describe_runtime(failed, defaults());
  CHECK_FALSE(info.probed);
  CHECK_FALSE(info.nested_containers);
  CHECK(info.platform == "ptrace");
  CHECK(info.common_flags == std::vector<std::string>{"--platform=ptrace", "--host-uds=create"});
  CHECK(info.summary().find("not probed: cannot run /nope/runsc") != std::string::npos);
}

TEST_CASE("runtime: a runsc without --host-uds is told, and one with only the old flag uses it") {
  auto out = current();
  out.flags_text = "  -net-raw\n    \tx\n  -fsgofer-host-uds\n    \tDEPRECATED\n";
  auto info = describe_runtime(out, defaults());
  CHECK(has(info.common_flags, "--fsgofer-host-uds"));
  out.flags_text = "  -net-raw\n    \tx\n";
  auto none = describe_runtime(out, defaults());
  REQUIRE(none.warnings.size() == 1);
  CHECK(none.warnings[0].find("--host-uds") != std::string::npos);
  // and without --net-raw dockerd cannot run its networking: not nested-capable
  out.flags_text = "  -host-uds value\n    \tx\n";
  CHECK_FALSE(describe_runtime(out, defaults()).nested_containers);
}

TEST_CASE("runtime: flag_name") {
  CHECK(flag_name("--platform=systrap") == "platform");
  CHECK(flag_name("-net-raw") == "net-raw");
  CHECK(flag_name("--net-raw") == "net-raw");
  CHECK(flag_name("value") == "");
}

TEST_CASE("runtime: sandboxes without limits get no host cgroup unless runsc.host_cgroups says always") {
  auto config = defaults();
  CHECK(config.host_cgroups == "limited");
  CHECK(describe_runtime(current(), config).no_cgroup_flags == std::vector<std::string>{"--ignore-cgroups"});
  CHECK(describe_runtime(debian(), config).no_cgroup_flags == std::vector<std::string>{"--ignore-cgroups"});
  CHECK(describe_runtime(current(), config).summary().find("--ignore-cgroups (sandboxes without resources limits)") !=
        std::string::npos);
  // A runsc without the flag: every sandbox keeps its cgroup, nothing is claimed.
  auto old = current();
  old.flags_text = kDebianFlags;
  old.flags_text.erase(old.flags_text.find("  -ignore-cgroups"), std::string("  -ignore-cgroups\n    \tdon't configure cgroups.\n").size());
  CHECK(describe_runtime(old, config).no_cgroup_flags.empty());

  config.host_cgroups = "always";
  CHECK(describe_runtime(current(), config).no_cgroup_flags.empty());

  // The operator's own flag decides for every sandbox, and limits then go unenforced: said.
  config = defaults();
  config.flags.push_back("--ignore-cgroups");
  auto info = describe_runtime(current(), config);
  CHECK(info.no_cgroup_flags.empty());
  REQUIRE(info.warnings.size() == 1);
  CHECK(info.warnings[0].find("resources limits are not applied") != std::string::npos);
  for (const char* off : {"--ignore-cgroups=false", "-ignore-cgroups=0", "--ignore-cgroups=F"}) {
    config.flags.back() = off;
    info = describe_runtime(current(), config);
    CHECK(info.no_cgroup_flags.empty());
    CHECK(info.warnings.empty());
  }
  config.flags.back() = "--ignore-cgroups=true";
  CHECK(describe_runtime(current(), config).warnings.size() == 1);
}
