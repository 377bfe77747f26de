// Configuration: defaults < JSON file < command-line overrides (sandbox_agent/config.hpp).
#include <doctest/doctest.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sandbox_agent/config.hpp"

namespace fs = std::filesystem;
using namespace sandbox_agent;

namespace {

// A canonical scratch directory used as --root, removed at exit.
struct Scratch {
  std::string root;
  Scratch() {
    std::string tmpl = (fs::temp_directory_path() / "config_test.XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    root = fs::canonical(tmpl).string();
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

const std::string& root() {
  static Scratch s;
  return s.root;
}

ConfigOverrides with_root() {
  ConfigOverrides o;
  o.root = root();
  return o;
}

// What a configured prefix becomes: its realpath when it exists, else itself.
std::string resolved(const std::string& p) {
  char buf[PATH_MAX];
  return ::realpath(p.c_str(), buf) ? std::string(buf) : p;
}

Config parse_ok(const std::string& json, const ConfigOverrides& o = with_root()) {
  INFO("config: " << json);
  auto c = parse_config(json, o);
  REQUIRE_MESSAGE(c.ok(), c.error().describe());
  return *c;
}

void check_error(const std::string& json, const std::string& field, const std::string& message = {},
                 const ConfigOverrides& o = with_root(), ErrorCode code = ErrorCode::invalid_request) {
  INFO("config: " << json);
  auto c = parse_config(json, o);
  CHECK_FALSE(c.ok());
  if (c.ok()) return;
  INFO("got: " << c.error().describe());
  CHECK(std::string(to_string(c.error().code)) == std::string(to_string(code)));
  CHECK(c.error().field == field);
  if (!message.empty()) CHECK(c.error().message.find(message) != std::string::npos);
}

}  // namespace

TEST_CASE("config: defaults under the given root") {
  auto r = load_config("", with_root());
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  const Config& c = *r;
  CHECK(c.root == root());
  CHECK(c.socket.path == root() + "/agent.sock");
  CHECK(c.socket.mode == 0660u);
  CHECK(c.socket.allowed_uids == std::vector<std::uint32_t>{0});
  CHECK(c.socket.allowed_gids.empty());
  CHECK(c.spool == root() + "/spool");
  // The project-built runsc where scripts/install-deps put it, else Debian's.
  bool built = ::access(std::string(kProjectRunsc).c_str(), X_OK) == 0;
  CHECK(c.runsc.path == (built ? kProjectRunsc : kDebianRunsc));
  CHECK(c.runsc.platform == "auto");
  CHECK(c.runsc.flags == std::vector<std::string>{"--network=none"});
  CHECK(c.runsc.timeout_ms == 60000u);
  CHECK(c.runsc.launch == "run");  // one runsc run --detach
  CHECK(c.runsc.host_cgroups == "limited");
  CHECK(c.runsc.spawn_helper);  // runsc forked by the helper process
  CHECK(c.runsc.one_call_launch());
  CHECK(c.allowed_host_prefixes ==
        std::vector<std::string>{resolved(root() + "/images"), resolved("/srv/images")});
  CHECK_FALSE(c.allow_host_cgroup_bind);
  CHECK(c.probe.initial_ms == 5u);
  CHECK(c.probe.factor == doctest::Approx(2.0));
  CHECK(c.probe.max_ms == 250u);
  CHECK(c.probe.jitter == doctest::Approx(0.2));
  CHECK(c.probe.attempt_timeout_ms == 1000u);
  CHECK(c.docker.ready_timeout_ms == 30000u);
  CHECK(c.docker.dockerd_path == "dockerd");  // looked up in the sandbox's PATH
  CHECK(c.limits.max_sandboxes == 10000u);
  CHECK(c.limits.max_connections == 1024u);
  CHECK(c.limits.max_request_bytes == (1u << 20));
  CHECK_FALSE(c.stop_sandboxes_on_exit);
  CHECK(c.log_level == "info");
  CHECK_FALSE(c.sandbox_init.empty());
  // An empty file is the same as no file.
  auto e = parse_ok("{}");
  CHECK(e.socket.path == c.socket.path);
  CHECK(e.spool == c.spool);
  CHECK(e.allowed_host_prefixes == c.allowed_host_prefixes);
}

TEST_CASE("config: the default root") {
  auto r = load_config("", {});
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  CHECK(r->root == std::string(kDefaultRoot));
  CHECK(r->root == "/var/lib/sandbox-agent");
  CHECK(r->socket.path == "/var/lib/sandbox-agent/agent.sock");
  CHECK(r->spool == "/var/lib/sandbox-agent/spool");
}

TEST_CASE("config: the contract's example file") {
  auto c = parse_ok(R"({
  "socket": {"path": "ROOT/agent.sock", "mode": "0660", "allowed_uids": [0], "allowed_gids": []},
  "spool": "ROOT/spool",
  "runsc": {"path": "/usr/bin/runsc",
            "flags": ["--platform=ptrace", "--network=none", "--host-uds=create"],
            "max_concurrent": 4, "timeout_ms": 60000},
  "allowed_host_prefixes": ["/srv/images"],
  "allow_host_cgroup_bind": false,
  "probe": {"initial_ms": 5, "factor": 2.0, "max_ms": 250, "jitter": 0.2, "attempt_timeout_ms": 1000},
  "docker": {"ready_timeout_ms": 30000, "dockerd_path": "/usr/bin/dockerd"},
  "limits": {"max_sandboxes": 10000, "max_connections": 1024, "max_request_bytes": 1048576},
  "stop_sandboxes_on_exit": false,
  "log_level": "info"
})");
  CHECK(c.socket.path == root() + "/agent.sock");
  CHECK(c.spool == root() + "/spool");
  CHECK(c.runsc.max_concurrent == 4u);
  CHECK(c.runsc_concurrency() == 4u);
  CHECK(c.allowed_host_prefixes == std::vector<std::string>{resolved("/srv/images")});
  CHECK(c.limits.max_request_bytes == 1048576u);
}

TEST_CASE("config: the file overrides every default") {
  auto c = parse_ok(R"({
  "socket": {"path": "/run/sa/agent.sock", "mode": "0600", "allowed_uids": [0, 1000], "allowed_gids": [100]},
  "spool": "/var/spool/sandbox-agent",
  "runsc": {"path": "/opt/runsc", "flags": ["--platform=systrap"], "max_concurrent": 8, "timeout_ms": 5000,
            "launch": "create_start", "host_cgroups": "always", "spawn_helper": false},
  "allowed_host_prefixes": ["ROOT/img", "/data/images"],
  "allow_host_cgroup_bind": true,
  "probe": {"initial_ms": 10, "factor": 1.5, "max_ms": 500, "jitter": 0.1, "attempt_timeout_ms": 2000},
  "docker": {"ready_timeout_ms": 10000, "dockerd_path": "/usr/local/bin/dockerd"},
  "limits": {"max_sandboxes": 5, "max_connections": 6, "max_request_bytes": 2048,
             "max_pending_launches": 7, "max_watchers": 0, "max_output_bytes": 8192},
  "stop_sandboxes_on_exit": true,
  "clean_orphans": false,
  "log_level": "debug",
  "sandbox_init": "/opt/sandbox-init"
})");
  CHECK(c.socket.path == "/run/sa/agent.sock");
  CHECK(c.socket.mode == 0600u);
  CHECK(c.socket.allowed_uids == std::vector<std::uint32_t>{0, 1000});
  CHECK(c.socket.allowed_gids == std::vector<std::uint32_t>{100});
  CHECK(c.spool == "/var/spool/sandbox-agent");
  CHECK(c.runsc.path == "/opt/runsc");
  CHECK(c.runsc.flags == std::vector<std::string>{"--platform=systrap"});
  CHECK(c.runsc.max_concurrent == 8u);
  CHECK(c.runsc.timeout_ms == 5000u);
  CHECK_FALSE(c.runsc.one_call_launch());
  CHECK(c.runsc.host_cgroups == "always");
  CHECK_FALSE(c.runsc.spawn_helper);
  CHECK(c.allowed_host_prefixes == std::vector<std::string>{root() + "/img", "/data/images"});
  CHECK(c.allow_host_cgroup_bind);
  CHECK(c.probe.initial_ms == 10u);
  CHECK(c.probe.factor == doctest::Approx(1.5));
  CHECK(c.probe.max_ms == 500u);
  CHECK(c.probe.jitter == doctest::Approx(0.1));
  CHECK(c.probe.attempt_timeout_ms == 2000u);
  CHECK(c.docker.ready_timeout_ms == 10000u);
  CHECK(c.docker.dockerd_path == "/usr/local/bin/dockerd");
  CHECK(c.limits.max_sandboxes == 5u);
  CHECK(c.limits.max_connections == 6u);
  CHECK(c.limits.max_request_bytes == 2048u);
  CHECK(c.limits.max_pending_launches == 7u);
  CHECK(c.limits.max_watchers == 0u);
  CHECK(c.limits.max_output_bytes == 8192u);
  CHECK(c.stop_sandboxes_on_exit);
  CHECK_FALSE(c.clean_orphans);
  CHECK(c.log_level == "debug");
  CHECK(c.sandbox_init == "/opt/sandbox-init");

  auto p = c.request_policy();
  CHECK(p.allowed_host_prefixes == c.allowed_host_prefixes);
  CHECK(p.allow_host_cgroup_bind);
  CHECK(p.max_request_bytes == 2048u);
}

TEST_CASE("config: overrides beat the file") {
  const std::string file = R"({"root":"/file/root","socket":{"path":"/file.sock"},"spool":"/file/spool",)"
                           R"("runsc":{"path":"/file/runsc"},"log_level":"warn","stop_sandboxes_on_exit":true})";
  {
    auto c = parse_ok(file, {});
    CHECK(c.root == "/file/root");
    CHECK(c.socket.path == "/file.sock");
    CHECK(c.spool == "/file/spool");
    CHECK(c.runsc.path == "/file/runsc");
    CHECK(c.log_level == "warn");
    CHECK(c.stop_sandboxes_on_exit);
  }
  ConfigOverrides o;
  o.root = root();
  o.socket = "/flag.sock";
  o.spool = "/flag/spool";
  o.runsc = "/flag/runsc";
  o.log_level = "error";
  o.stop_sandboxes_on_exit = 0;
  auto c = parse_ok(file, o);
  CHECK(c.root == root());
  CHECK(c.socket.path == "/flag.sock");
  CHECK(c.spool == "/flag/spool");
  CHECK(c.runsc.path == "/flag/runsc");
  CHECK(c.log_level == "error");
  CHECK_FALSE(c.stop_sandboxes_on_exit);
  o.stop_sandboxes_on_exit = 1;
  CHECK(parse_ok(R"({"stop_sandboxes_on_exit":false})", o).stop_sandboxes_on_exit);
}

TEST_CASE("config: a root from the file moves the derived paths") {
  auto c = parse_ok(R"({"root":"/srv/agent"})", {});
  CHECK(c.root == "/srv/agent");
  CHECK(c.socket.path == "/srv/agent/agent.sock");
  CHECK(c.spool == "/srv/agent/spool");
  CHECK(c.allowed_host_prefixes.at(0) == resolved("/srv/agent/images"));
}

TEST_CASE("config: ROOT/... is expanded to the root") {
  auto c = parse_ok(R"({"socket":{"path":"ROOT/s/agent.sock"},"spool":"ROOT/q",)"
                    R"("allowed_host_prefixes":["ROOT/images","ROOT","/x/ROOT/y"]})");
  CHECK(c.socket.path == root() + "/s/agent.sock");
  CHECK(c.spool == root() + "/q");
  CHECK(c.allowed_host_prefixes == std::vector<std::string>{root() + "/images", root(), "/x/ROOT/y"});
}

TEST_CASE("config: allowed prefixes are resolved like request paths") {
  fs::create_directories(root() + "/real-images");
  std::error_code ec;
  fs::remove(root() + "/images-link", ec);
  fs::create_directory_symlink(root() + "/real-images", root() + "/images-link");
  auto c = parse_ok(R"({"allowed_host_prefixes":["ROOT/images-link"]})");
  CHECK(c.allowed_host_prefixes == std::vector<std::string>{root() + "/real-images"});
}

TEST_CASE("config: a relative root is resolved against the working directory") {
  char cwd[PATH_MAX];
  REQUIRE(::getcwd(cwd, sizeof cwd) != nullptr);
  ConfigOverrides o;
  o.root = "rel/agent-root";
  auto c = parse_ok("{}", o);
  CHECK(c.root == std::string(cwd) + "/rel/agent-root");
  CHECK(c.socket.path == std::string(cwd) + "/rel/agent-root/agent.sock");
  o.root = root() + "//";
  CHECK(parse_ok("{}", o).root == root());  // trailing slashes dropped
}

TEST_CASE("config: unknown keys are errors naming the field") {
  check_error(R"({"bogus":1})", "/bogus", "unknown key");
  check_error(R"({"socket":{"path":"/x.sock","bogus":1}})", "/socket/bogus", "unknown key");
  check_error(R"({"runsc":{"flag":[]}})", "/runsc/flag", "unknown key");
  check_error(R"({"probe":{"initial":5}})", "/probe/initial", "unknown key");
  check_error(R"({"docker":{"enabled":true}})", "/docker/enabled", "unknown key");
  check_error(R"({"limits":{"max_requests":5}})", "/limits/max_requests", "unknown key");
  check_error(R"({"Spool":"/x"})", "/Spool", "unknown key");
}

TEST_CASE("config: wrong types") {
  check_error(R"({"spool":1})", "/spool", "must be a string");
  check_error(R"({"socket":"/x.sock"})", "/socket", "must be an object");
  check_error(R"({"socket":{"allowed_uids":0}})", "/socket/allowed_uids", "must be an array");
  check_error(R"({"socket":{"allowed_uids":[0,-1]}})", "/socket/allowed_uids/1", "must be an integer");
  check_error(R"({"socket":{"allowed_gids":["wheel"]}})", "/socket/allowed_gids/0", "must be an integer");
  check_error(R"({"runsc":{"flags":"--platform=ptrace"}})", "/runsc/flags", "must be an array");
  check_error(R"({"runsc":{"flags":[1]}})", "/runsc/flags/0", "must be a string");
  check_error(R"({"runsc":{"flags":["--network=none","--root=/x"]}})", "/runsc/flags/1", "--root is the agent's own");
  check_error(R"({"runsc":{"platform":"Sys trap"}})", "/runsc/platform", "must be \"auto\" or a platform name");
  check_error(R"({"runsc":{"platform":""}})", "/runsc/platform", "must be \"auto\" or a platform name");
  check_error(R"({"runsc":{"launch":"create"}})", "/runsc/launch", "must be \"run\" (one runsc run --detach) or \"create_start\"");
  check_error(R"({"runsc":{"launch":true}})", "/runsc/launch", "must be a string");
  check_error(R"({"runsc":{"spawn_helper":"yes"}})", "/runsc/spawn_helper", "must be true or false");
  check_error(R"({"runsc":{"host_cgroups":"never"}})", "/runsc/host_cgroups", "must be \"limited\" (a host cgroup only for a sandbox with resources) or \"always\"");
  check_error(R"({"runsc":{"max_concurrent":"4"}})", "/runsc/max_concurrent", "must be an integer");
  check_error(R"({"runsc":{"max_concurrent":0}})", "/runsc/max_concurrent", "must be an integer from 1");
  check_error(R"({"runsc":{"timeout_ms":1.5}})", "/runsc/timeout_ms", "must be an integer");
  check_error(R"({"allowed_host_prefixes":"/srv/images"})", "/allowed_host_prefixes", "must be an array");
  check_error(R"({"allow_host_cgroup_bind":"yes"})", "/allow_host_cgroup_bind", "must be true or false");
  check_error(R"({"probe":{"factor":"2"}})", "/probe/factor", "must be a number");
  check_error(R"({"probe":{"jitter":1.5}})", "/probe/jitter", "must be a number");
  check_error(R"({"docker":{"dockerd_path":["/usr/bin/dockerd"]}})", "/docker/dockerd_path", "must be a string");
  check_error(R"({"limits":{"max_sandboxes":"10"}})", "/limits/max_sandboxes", "must be an integer");
  check_error(R"({"limits":{"max_request_bytes":10}})", "/limits/max_request_bytes", "must be an integer from 1024");
  check_error(R"({"stop_sandboxes_on_exit":1})", "/stop_sandboxes_on_exit", "must be true or false");
  check_error(R"({"log_level":3})", "/log_level", "must be a string");
  check_error(R"({"socket":{"path":"/a.sock","path":"/b.sock"}})", "/socket/path", "duplicate key");
  check_error("[]", "", "must be a JSON object");
}

TEST_CASE("config: text that is not JSON") {
  check_error("spool = /x", "", {}, with_root(), ErrorCode::invalid_json);
  check_error("", "", {}, with_root(), ErrorCode::invalid_json);
  check_error(R"({"spool":"/x"} trailing)", "", {}, with_root(), ErrorCode::invalid_json);
}

TEST_CASE("config: a truncated file is invalid_json") {
  // A file cut short is not JSON: invalid_json, not a type error at the cut.
  check_error("{\"spool\": ", "", {}, with_root(), ErrorCode::invalid_json);
}

TEST_CASE("config: socket mode strings") {
  CHECK(parse_ok(R"({"socket":{"mode":"0600"}})").socket.mode == 0600u);
  CHECK(parse_ok(R"({"socket":{"mode":"660"}})").socket.mode == 0660u);
  CHECK(parse_ok(R"({"socket":{"mode":"0777"}})").socket.mode == 0777u);
  check_error(R"({"socket":{"mode":"0999"}})", "/socket/mode", "octal mode");
  check_error(R"({"socket":{"mode":"rw-rw----"}})", "/socket/mode");
  check_error(R"({"socket":{"mode":""}})", "/socket/mode", "octal mode");
  check_error(R"({"socket":{"mode":"01777"}})", "/socket/mode", "octal mode");
  check_error(R"({"socket":{"mode":"0x1b6"}})", "/socket/mode", "octal mode");
  check_error(R"({"socket":{"mode":660}})", "/socket/mode", "must be a string");
}

TEST_CASE("config: allowed prefixes must be absolute, normalised and not /") {
  check_error(R"({"allowed_host_prefixes":["/"]})", "/allowed_host_prefixes/0", "must not be /");
  check_error(R"({"allowed_host_prefixes":["/srv/images","/"]})", "/allowed_host_prefixes/1", "must not be /");
  check_error(R"({"allowed_host_prefixes":["images"]})", "/allowed_host_prefixes/0", "absolute");
  check_error(R"({"allowed_host_prefixes":["/srv/../etc"]})", "/allowed_host_prefixes/0", "absolute");
}

TEST_CASE("config: dockerd_path is an absolute path or a bare program name") {
  CHECK(parse_ok(R"({"docker":{"dockerd_path":"/usr/sbin/dockerd"}})").docker.dockerd_path == "/usr/sbin/dockerd");
  CHECK(parse_ok(R"({"docker":{"dockerd_path":"dockerd"}})").docker.dockerd_path == "dockerd");
  check_error(R"({"docker":{"dockerd_path":"bin/dockerd"}})", "/docker/dockerd_path", "absolute path or a bare");
  check_error(R"({"docker":{"dockerd_path":""}})", "/docker/dockerd_path", "absolute path or a bare");
}

TEST_CASE("config: containerd_path is an absolute path, a bare program name or empty") {
  CHECK(parse_ok("{}").docker.containerd_path == "containerd");  // started beside dockerd by default
  CHECK(parse_ok(R"({"docker":{"containerd_path":"/usr/bin/containerd"}})").docker.containerd_path == "/usr/bin/containerd");
  CHECK(parse_ok(R"({"docker":{"containerd_path":""}})").docker.containerd_path.empty());  // dockerd starts its own
  check_error(R"({"docker":{"containerd_path":"bin/containerd"}})", "/docker/containerd_path", "absolute path, a bare");
}

TEST_CASE("config: probe.max_ms below probe.initial_ms is rejected") {
  check_error(R"({"probe":{"initial_ms":100,"max_ms":50}})", "/probe/max_ms", "at least");
  check_error(R"({"probe":{"initial_ms":500}})", "/probe/max_ms", "at least");  // against the default max
  auto c = parse_ok(R"({"probe":{"initial_ms":250,"max_ms":250}})");
  CHECK(c.probe.max_ms == 250u);
}

TEST_CASE("config: log levels") {
  for (const char* l : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    INFO("level: " << l);
    CHECK(parse_ok(std::string(R"({"log_level":")") + l + "\"}").log_level == l);
  }
  check_error(R"({"log_level":"verbose"})", "/log_level", "must be one of");
  check_error(R"({"log_level":"INFO"})", "/log_level", "must be one of");
  ConfigOverrides o = with_root();
  o.log_level = "loud";
  check_error("{}", "/log_level", "must be one of", o);
}

TEST_CASE("config: a socket path too long for sockaddr_un") {
  ConfigOverrides o = with_root();
  o.socket = "/" + std::string(120, 's');
  check_error("{}", "/socket/path", "107", o);
  check_error(R"({"socket":{"path":")" + o.socket + "\"}}", "/socket/path", "107");
}

TEST_CASE("config: load_config reads the file") {
  const std::string path = root() + "/agent.json";
  std::ofstream(path) << R"({"spool":"ROOT/from-file","log_level":"debug"})" << "\n";
  auto c = load_config(path, with_root());
  REQUIRE_MESSAGE(c.ok(), c.error().describe());
  CHECK(c->spool == root() + "/from-file");
  CHECK(c->log_level == "debug");

  std::ofstream(path) << R"({"spool":"ROOT/x","nope":true})";
  auto bad = load_config(path, with_root());
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().field == "/nope");

  auto missing = load_config(root() + "/missing.json", with_root());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("cannot read") != std::string::npos);
}

TEST_CASE("config: runsc concurrency") {
  auto c = parse_ok("{}");
  CHECK(c.runsc.max_concurrent == 0u);
  CHECK(c.runsc_concurrency() >= 2u);  // two per core
  CHECK(c.runsc_concurrency() % 2 == 0u);
  CHECK(parse_ok(R"({"runsc":{"max_concurrent":3}})").runsc_concurrency() == 3u);
}

TEST_CASE("config: network defaults, keys and errors") {
  auto d = parse_ok("{}");
  CHECK(d.network.subnet == "10.231.0.0/16");
  CHECK(d.network.cni_path == "/usr/lib/cni");
  CHECK(d.network.cni_conf.empty());
  CHECK(d.network.egress_ceiling.allow.size() == 2);     // everything, v4 and v6
  CHECK(d.network.egress_ceiling.deny.size() >= 10);     // loopback, link-local, private, …
  auto c = parse_ok(R"({"network":{"subnet":"10.50.0.0/24","cni_conf":"ROOT/net.conflist","cni_path":"/opt/cni/bin",
    "egress_ceiling":{"allow":["0.0.0.0/0","10.99.0.0/24"]},"dns":["192.0.2.53"],"plugin_timeout_ms":2000,
    "max_concurrent":2}})");
  CHECK(c.network.subnet == "10.50.0.0/24");
  CHECK(c.network.cni_conf == root() + "/net.conflist");
  CHECK(c.network.cni_path == "/opt/cni/bin");
  CHECK(c.network.egress_ceiling.allow.size() == 2);
  CHECK(c.network.egress_ceiling.deny == default_egress_ceiling().deny);  // a list not given keeps its default
  CHECK(c.network.dns == std::vector<std::string>{"192.0.2.53"});
  CHECK(c.network.plugin_timeout_ms == 2000u);
  CHECK(c.network.max_concurrent == 2u);
  // what requests are held to
  CHECK(c.request_policy().egress_ceiling.allow.size() == 2);

  check_error(R"({"network":{"subnet":"10.50.0.1/24"}})", "/network/subnet", "host bits set");
  check_error(R"({"network":{"subnet":"fd00::/64"}})", "/network/subnet", "IPv4");
  check_error(R"({"network":{"subnet":"10.50.0.0/30"}})", "/network/subnet", "/28 or wider");
  check_error(R"({"network":{"egress_ceiling":{"allow":["nowhere"]}}})", "/network/egress_ceiling/allow/0",
              "not an IPv4 or IPv6 address");
  check_error(R"({"network":{"dns":["dns.example"]}})", "/network/dns/0", "IPv4 or IPv6 address");
  check_error(R"({"network":{"cni_path":"lib/cni"}})", "/network/cni_path", "absolute");
  check_error(R"({"network":{"bridge":"br0"}})", "/network/bridge", "unknown key");
}

TEST_CASE("config: the log quota") {
  CHECK(parse_ok("{}").logs.max_bytes_per_sandbox == (16u << 20));
  CHECK(parse_ok(R"({"logs":{"max_bytes_per_sandbox":0}})").logs.max_bytes_per_sandbox == 0u);
  CHECK(parse_ok(R"({"logs":{"max_bytes_per_sandbox":65536}})").logs.max_bytes_per_sandbox == 65536u);
  check_error(R"({"logs":{"max_bytes_per_sandbox":1000}})", "/logs/max_bytes_per_sandbox", "at least 65536");
  check_error(R"({"logs":{"max_bytes_per_sandbox":-1}})", "/logs/max_bytes_per_sandbox");
  check_error(R"({"logs":{"rotate":true}})", "/logs/rotate", "unknown key");
}

TEST_CASE("config: pools") {
  auto images = root() + "/images/pool-rootfs";
  std::filesystem::create_directories(images);
  auto c = parse_ok(R"({"pools": [{"name": "small", "size": 3, "request": {"rootfs": ")" + images +
                    R"(", "docker": {"enabled": true}, "ttl_ms": 60000}}]})");
  REQUIRE(c.pools.size() == 1);
  const auto& p = c.pools[0];
  CHECK(p.name == "small");
  CHECK(p.size == 3u);
  CHECK(p.request.docker.enabled);
  CHECK(p.request.ttl_ms == 60000u);
  CHECK(p.template_hash != 0);
  CHECK(c.pool("small") == &p);
  CHECK(c.pool("other") == nullptr);
  // The hash follows the template, not the formatting.
  auto again = parse_ok(R"({"pools":[{"name":"small","size":1,"request":{"rootfs":")" + images +
                        R"(","docker":{"enabled":true},"ttl_ms":60000}}]})");
  CHECK(again.pools[0].template_hash == p.template_hash);
  auto changed = parse_ok(R"({"pools":[{"name":"small","size":1,"request":{"rootfs":")" + images + R"("}}]})");
  CHECK(changed.pools[0].template_hash != p.template_hash);

  auto req = [&](const std::string& extra) { return R"({"rootfs": ")" + images + "\"" + extra + "}"; };
  check_error(R"({"pools": {}})", "/pools", "array");
  check_error(R"({"pools": [{"size": 1, "request": )" + req("") + "}]}", "/pools/0/name", "is required");
  check_error(R"({"pools": [{"name": "a", "request": )" + req("") + "}]}", "/pools/0/size", "is required");
  check_error(R"({"pools": [{"name": "a", "size": 1}]})", "/pools/0/request", "is required");
  check_error(R"({"pools": [{"name": "-a", "size": 1, "request": )" + req("") + "}]}", "/pools/0/name");
  check_error(R"({"pools": [{"name": "a", "size": 1001, "request": )" + req("") + "}]}", "/pools/0/size");
  check_error(R"({"pools": [{"name": "a", "size": 1, "color": 1, "request": )" + req("") + "}]}", "/pools/0/color");
  check_error(R"({"pools": [{"name": "a", "size": 1, "request": )" + req(R"(, "id": "x")") + "}]}",
              "/pools/0/request/id");
  check_error(R"({"pools": [{"name": "a", "size": 1, "request": {"pool": "b"}}]})", "/pools/0/request/pool");
  check_error(R"({"pools": [{"name": "a", "size": 1, "request": {"rootfs": "/srv/nowhere/x"}}]})",
              "/pools/0/request/rootfs");
  check_error(R"({"pools": [{"name": "a", "size": 1, "request": )" +
                  req(R"(, "network": "bridge", "ports": [{"host_port": 80, "sandbox_port": 80}])") + "}]}",
              "/pools/0/request/ports");
  check_error(R"({"pools": [{"name": "a", "size": 1, "request": )" + req("") + R"(}, {"name": "a", "size": 2, "request": )" +
                  req("") + "}]}",
              "/pools/1/name", "another pool");
}
