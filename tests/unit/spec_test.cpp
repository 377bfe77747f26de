// Rendering requests into OCI runtime specs (sandbox_agent/spec.hpp): golden files, key
// properties read back with simdjson's DOM, and validation against the OCI v1.2.1 schema.
//
// Regenerate the golden files with UPDATE_GOLDEN=1 (then review the diff by eye).
#include <doctest/doctest.h>
#include <simdjson.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "sandbox_agent/request.hpp"
#include "sandbox_agent/spec.hpp"

namespace fs = std::filesystem;
using namespace sandbox_agent;

namespace {

// ---- The representative requests ----

SpecContext context_for(const std::string& id) {
  return {"/usr/lib/sandbox-agent/sandbox-init", "/var/lib/sandbox-agent/sockets/" + id,
          "/var/lib/sandbox-agent/logs/" + id, "dockerd", {},
          // used by bridge requests only
          "/var/lib/sandbox-agent/network/netns/sa00000000000000" + std::to_string(id.size()),
          "/var/lib/sandbox-agent/network/resolv.conf", "containerd"};
}

LaunchRequest plain_request(const std::string& id) {
  LaunchRequest r;
  r.id = id;
  r.rootfs = "/srv/images/ubuntu";
  r.args = {"/bin/echo", "hello"};
  r.env = {"LANG=C.UTF-8"};
  return r;
}

LaunchRequest docker_request(const std::string& id, CgroupStrategy cgroup) {
  LaunchRequest r;
  r.id = id;
  r.rootfs = "/srv/images/ubuntu-docker";
  r.args = {"/bin/sleep", "infinity"};
  r.docker.enabled = true;
  r.docker.cgroup = cgroup;
  return r;
}

struct Case {
  std::string name;  // golden file tests/golden/NAME.json
  LaunchRequest request;
};

std::vector<Case> cases() {
  std::vector<Case> c;
  c.push_back({"plain", plain_request("plain-1")});
  {
    auto r = docker_request("docker-auto", CgroupStrategy::auto_detect);
    r.docker.dockerd_args = {"--debug", "--log-level=info", "--storage-driver=vfs"};
    c.push_back({"docker-auto", r});
  }
  c.push_back({"docker-sandbox", docker_request("docker-sandbox", CgroupStrategy::sandbox)});
  c.push_back({"docker-userns", docker_request("docker-userns", CgroupStrategy::userns)});
  c.push_back({"docker-host-bind", docker_request("docker-host-bind", CgroupStrategy::host_bind)});
  c.push_back({"docker-none", docker_request("docker-none", CgroupStrategy::none)});
  {
    auto r = plain_request("resources-1");
    r.resources.cpus = 1.5;
    r.resources.memory_mb = 2048;
    r.resources.pids = 4096;
    c.push_back({"resources", r});
  }
  {
    auto r = plain_request("mounts-1");
    r.mounts = {{"/srv/data", "/data", true}, {"/srv/scratch/job", "/scratch", false}};
    c.push_back({"mounts", r});
  }
  {
    auto r = plain_request("net-host");
    r.network = NetworkMode::host;
    r.hostname = "web-1";
    c.push_back({"network-host", r});
  }
  {
    // Bridge: the pinned namespace by path, the agent's resolv.conf; ports and egress are
    // the host side's business and leave no trace in the spec.
    auto r = docker_request("docker-bridge", CgroupStrategy::auto_detect);
    r.network = NetworkMode::bridge;
    r.ports = {{8080, 80, "tcp", ""}};
    r.egress = EgressRules{{*parse_cidr("0.0.0.0/0")}, {*parse_cidr("169.254.0.0/16")}};
    c.push_back({"docker-bridge", r});
  }
  {
    auto r = plain_request("labelled");
    r.labels = {{"batch-job", "1234"}, {"team/owner", "ml-infra"}};
    c.push_back({"labels", r});
  }
  {
    auto r = plain_request("user-1");
    r.user = {1000, 1000};
    r.cwd = "/home/user";
    r.env = {"PATH=/opt/bin:/usr/bin", "HOME=/home/user"};
    c.push_back({"user-env", r});
  }
  {
    // The contract's example request, rootfs and mount source as given there.
    LaunchRequest r;
    r.id = "job-42";
    r.rootfs = "/srv/images/ubuntu-docker";
    r.args = {"/bin/sleep", "infinity"};
    r.env = {"LANG=C.UTF-8"};
    r.hostname = "job-42";
    r.mounts = {{"/srv/data", "/data", true}};
    r.resources.cpus = 1.0;
    r.resources.memory_mb = 2048;
    r.resources.pids = 4096;
    r.docker.enabled = true;
    r.docker.ready_timeout_ms = 30000;
    r.labels = {{"batch-job", "1234"}};
    r.socket_owner = Owner{1000, 1000};
    c.push_back({"contract-example", r});
  }
  return c;
}

std::string render_case(const Case& c) { return render_spec(c.request, context_for(c.request.id)); }

std::string render(const LaunchRequest& r) { return render_spec(r, context_for(r.id)); }

// ---- Golden files ----

std::string read_text(const std::string& path, bool& ok) {
  std::ifstream in(path, std::ios::binary);
  ok = static_cast<bool>(in);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void check_golden(const std::string& name, const std::string& actual) {
  const std::string path = std::string(SANDBOX_AGENT_GOLDEN_DIR) + "/" + name + ".json";
  const char* update = std::getenv("UPDATE_GOLDEN");
  if (update && std::string(update) == "1") {
    fs::create_directories(SANDBOX_AGENT_GOLDEN_DIR);
    std::ofstream(path, std::ios::binary) << actual;
    MESSAGE("updated " << path);
    return;
  }
  bool ok = false;
  std::string expected = read_text(path, ok);
  if (!ok) {
    FAIL_CHECK("missing golden file " << path << " (regenerate with UPDATE_GOLDEN=1)");
    return;
  }
  if (expected == actual) return;
  // Point at the first differing line; the whole texts are long.
  std::istringstream e(expected), a(actual);
  std::string el, al;
  int line = 0;
  while (true) {
    ++line;
    bool he = static_cast<bool>(std::getline(e, el)), ha = static_cast<bool>(std::getline(a, al));
    if (!he && !ha) break;
    if (!he || !ha || el != al) break;
  }
  FAIL_CHECK(name << ": rendered spec differs from " << path << " at line " << line << "\n  golden:   "
                  << el << "\n  rendered: " << al << "\n(regenerate with UPDATE_GOLDEN=1 if intended)");
}

// ---- Reading the rendered spec back ----

struct Doc {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  explicit Doc(const std::string& text) {
    auto err = parser.parse(text).get(root);
    REQUIRE_MESSAGE(!err, "rendered spec is not JSON: " << simdjson::error_message(err));
  }
  simdjson::dom::element at(const std::string& pointer) const {
    simdjson::dom::element e;
    auto err = root.at_pointer(pointer).get(e);
    REQUIRE_MESSAGE(!err, "no " << pointer << " in the spec");
    return e;
  }
  bool has(const std::string& pointer) const {
    simdjson::dom::element e;
    return !root.at_pointer(pointer).get(e);
  }
  std::string str(const std::string& pointer) const {
    std::string_view s;
    REQUIRE_MESSAGE(!at(pointer).get_string().get(s), pointer << " is not a string");
    return std::string(s);
  }
  std::int64_t num(const std::string& pointer) const {
    std::int64_t n = 0;
    REQUIRE_MESSAGE(!at(pointer).get_int64().get(n), pointer << " is not an integer");
    return n;
  }
  bool boolean(const std::string& pointer) const {
    bool b = false;
    REQUIRE_MESSAGE(!at(pointer).get_bool().get(b), pointer << " is not a boolean");
    return b;
  }
  std::vector<std::string> strings(const std::string& pointer) const {
    simdjson::dom::array arr;
    REQUIRE_MESSAGE(!at(pointer).get_array().get(arr), pointer << " is not an array");
    std::vector<std::string> out;
    for (auto item : arr) {
      std::string_view s;
      REQUIRE(!item.get_string().get(s));
      out.emplace_back(s);
    }
    return out;
  }
};

struct MountView {
  std::string destination, type, source;
  std::vector<std::string> options;
  bool has_option(const std::string& o) const {
    return std::find(options.begin(), options.end(), o) != options.end();
  }
};

std::vector<MountView> mounts_of(const Doc& d) {
  simdjson::dom::array arr;
  REQUIRE(!d.at("/mounts").get_array().get(arr));
  std::vector<MountView> out;
  for (auto m : arr) {
    MountView v;
    std::string_view s;
    if (!m["destination"].get_string().get(s)) v.destination = s;
    if (!m["type"].get_string().get(s)) v.type = s;
    if (!m["source"].get_string().get(s)) v.source = s;
    simdjson::dom::array opts;
    if (!m["options"].get_array().get(opts))
      for (auto o : opts)
        if (!o.get_string().get(s)) v.options.emplace_back(s);
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<MountView> mounts_at(const Doc& d, const std::string& dest) {
  std::vector<MountView> out;
  for (auto& m : mounts_of(d))
    if (m.destination == dest) out.push_back(m);
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The process args after the first "--".
std::vector<std::string> args_after_dashes(const std::vector<std::string>& args) {
  auto it = std::find(args.begin(), args.end(), "--");
  if (it == args.end()) return {"<no -- in args>"};
  return {it + 1, args.end()};
}

// The value following `flag` in args (before "--"), or nullopt.
std::optional<std::string> flag_value(const std::vector<std::string>& args, const std::string& flag) {
  for (std::size_t i = 0; i + 1 < args.size() && args[i] != "--"; ++i)
    if (args[i] == flag) return args[i + 1];
  return std::nullopt;
}

bool has_arg_before_dashes(const std::vector<std::string>& args, const std::string& a) {
  for (const auto& x : args) {
    if (x == "--") return false;
    if (x == a) return true;
  }
  return false;
}

const std::vector<std::string> kDockerCaps = {
    "CAP_AUDIT_WRITE", "CAP_CHOWN",      "CAP_DAC_OVERRIDE", "CAP_FOWNER",     "CAP_FSETID",
    "CAP_KILL",        "CAP_MKNOD",      "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_SETFCAP",     "CAP_SETGID",     "CAP_SETPCAP",      "CAP_SETUID",     "CAP_SYS_ADMIN",
    "CAP_SYS_CHROOT",  "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE"};

const std::vector<std::pair<std::string, CgroupStrategy>> kStrategies = {
    {"auto", CgroupStrategy::auto_detect}, {"sandbox", CgroupStrategy::sandbox},
    {"userns", CgroupStrategy::userns},    {"host-bind", CgroupStrategy::host_bind},
    {"none", CgroupStrategy::none}};

}  // namespace

TEST_CASE("spec: the representative requests are valid requests") {
  for (const auto& c : cases()) {
    INFO("case: " << c.name);
    auto s = validate_request(c.request);
    CHECK_MESSAGE(s.ok(), (s.ok() ? std::string() : s.error().describe()));
  }
}

TEST_CASE("spec: rendered specs match the golden files") {
  for (const auto& c : cases()) {
    INFO("case: " << c.name);
    check_golden(c.name, render_case(c));
  }
}

TEST_CASE("spec: rendering is deterministic") {
  for (const auto& c : cases()) {
    INFO("case: " << c.name);
    CHECK(render_case(c) == render_case(c));
  }
}

TEST_CASE("spec: docker sandboxes get the 18 docker capabilities in all four sets") {
  REQUIRE(kDockerCaps.size() == 18);
  for (const auto& [name, strategy] : kStrategies) {
    INFO("cgroup: " << name);
    Doc d(render(docker_request("caps", strategy)));
    for (const char* set : {"bounding", "effective", "inheritable", "permitted"}) {
      INFO("set: " << set);
      auto caps = d.strings(std::string("/process/capabilities/") + set);
      CHECK(caps.size() == 18);
      CHECK(sorted(caps) == sorted(kDockerCaps));
    }
    CHECK_FALSE(d.boolean("/process/noNewPrivileges"));
  }
}

TEST_CASE("spec: plain sandboxes get Docker's default capabilities and no admin ones") {
  Doc d(render(plain_request("caps")));
  // No inheritable capabilities for plain sandboxes (the CVE-2022-24769 lesson).
  CHECK(d.strings("/process/capabilities/inheritable").empty());
  for (const char* set : {"bounding", "effective", "permitted"}) {
    INFO("set: " << set);
    auto caps = d.strings(std::string("/process/capabilities/") + set);
    CHECK(caps.size() == 14);
    for (const char* admin : {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE"})
      CHECK(std::find(caps.begin(), caps.end(), admin) == caps.end());
    for (const char* dflt : {"CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_NET_BIND_SERVICE"})
      CHECK(std::find(caps.begin(), caps.end(), dflt) != caps.end());
  }
  CHECK(d.boolean("/process/noNewPrivileges"));
}

TEST_CASE("spec: docker sandboxes get tmpfs at /var/lib/docker, /etc/docker and /var/run") {
  for (const auto& [name, strategy] : kStrategies) {
    INFO("cgroup: " << name);
    Doc d(render(docker_request("tmpfs", strategy)));
    for (const char* dest : {"/var/lib/docker", "/etc/docker", "/var/run", "/run", "/tmp"}) {
      INFO("destination: " << dest);
      auto m = mounts_at(d, dest);
      REQUIRE(m.size() == 1);
      CHECK(m[0].type == "tmpfs");
      CHECK(m[0].source == "tmpfs");
      CHECK_FALSE(m[0].has_option("ro"));
    }
  }
  Doc plain(render(plain_request("tmpfs")));
  for (const char* dest : {"/var/lib/docker", "/etc/docker", "/var/run"}) {
    INFO("plain, destination: " << dest);
    CHECK(mounts_at(plain, dest).empty());
  }
}

TEST_CASE("spec: the cgroup mount follows the strategy") {
  {
    INFO("auto");
    auto m = mounts_at(Doc(render(docker_request("cg", CgroupStrategy::auto_detect))), "/sys/fs/cgroup");
    REQUIRE(m.size() == 1);
    CHECK(m[0].type == "cgroup");
    CHECK(m[0].has_option("rw"));
  }
  {
    INFO("sandbox");
    auto m = mounts_at(Doc(render(docker_request("cg", CgroupStrategy::sandbox))), "/sys/fs/cgroup");
    REQUIRE(m.size() == 1);
    CHECK(m[0].type == "cgroup");
    CHECK(m[0].source == "cgroup");
    CHECK(m[0].has_option("rw"));
  }
  {
    INFO("host-bind: the host's /sys/fs/cgroup, rbind,rw");
    auto m = mounts_at(Doc(render(docker_request("cg", CgroupStrategy::host_bind))), "/sys/fs/cgroup");
    REQUIRE(m.size() == 1);
    CHECK(m[0].type == "bind");
    CHECK(m[0].source == "/sys/fs/cgroup");
    CHECK(m[0].has_option("rbind"));
    CHECK(m[0].has_option("rw"));
    CHECK_FALSE(m[0].has_option("ro"));
  }
  for (auto s : {CgroupStrategy::userns, CgroupStrategy::none}) {
    INFO("no cgroup mount for " << std::string(to_string(s)));
    CHECK(mounts_at(Doc(render(docker_request("cg", s))), "/sys/fs/cgroup").empty());
  }
  INFO("plain sandboxes have none");
  CHECK(mounts_at(Doc(render(plain_request("cg"))), "/sys/fs/cgroup").empty());
}

TEST_CASE("spec: sandbox-init is the process, with the cgroup strategy and dockerd flags") {
  for (const auto& [name, strategy] : kStrategies) {
    INFO("cgroup: " << name);
    auto r = docker_request("init-args", strategy);
    r.docker.dockerd_args = {"--debug", "--log-opt=max-size=10m", "--label=a b"};
    r.args = {"/bin/sh", "-c", "echo -- hi"};
    Doc d(render(r));
    auto args = d.strings("/process/args");
    REQUIRE_FALSE(args.empty());
    CHECK(args[0] == std::string(kInitPath));
    CHECK(flag_value(args, "--cgroup") == std::optional<std::string>(name));
    CHECK(flag_value(args, "--dockerd") == std::optional<std::string>("dockerd"));
    CHECK(flag_value(args, "--dockerd-socket") == std::optional<std::string>("/run/docker.sock"));
    CHECK(flag_value(args, "--relay-socket") ==
          std::optional<std::string>("/.sandbox-agent/sockets/docker.sock"));
    for (const char* f : {"--dockerd-arg=--iptables=false", "--dockerd-arg=--ip6tables=false",
                          "--dockerd-arg=--bridge=none", "--dockerd-arg=--debug",
                          "--dockerd-arg=--log-opt=max-size=10m", "--dockerd-arg=--label=a b"}) {
      INFO("expected init arg: " << f);
      CHECK(has_arg_before_dashes(args, f));
    }
    // The request's dockerd_args are never passed bare (init would take them as its own).
    CHECK_FALSE(has_arg_before_dashes(args, "--debug"));
    CHECK(args_after_dashes(args) == r.args);
  }
}

TEST_CASE("spec: plain sandboxes run the request's args under sandbox-init without Docker flags") {
  auto r = plain_request("plain-args");
  r.args = {"/usr/bin/env", "--", "x"};
  Doc d(render(r));
  auto args = d.strings("/process/args");
  REQUIRE_FALSE(args.empty());
  CHECK(args[0] == std::string(kInitPath));
  CHECK_FALSE(flag_value(args, "--cgroup").has_value());
  CHECK_FALSE(flag_value(args, "--dockerd").has_value());
  for (const auto& a : args) CHECK_FALSE(a.starts_with("--dockerd-arg="));
  CHECK(args_after_dashes(args) == r.args);
}

TEST_CASE("spec: a network namespace only for network none") {
  auto namespaces = [](const Doc& d) {
    simdjson::dom::array arr;
    REQUIRE(!d.at("/linux/namespaces").get_array().get(arr));
    std::vector<std::string> out;
    for (auto n : arr) {
      std::string_view t;
      REQUIRE(!n["type"].get_string().get(t));
      out.emplace_back(t);
    }
    return out;
  };
  auto none = namespaces(Doc(render(plain_request("net"))));
  CHECK(std::find(none.begin(), none.end(), "network") != none.end());
  for (const char* t : {"pid", "ipc", "uts", "mount"})
    CHECK(std::find(none.begin(), none.end(), t) != none.end());
  auto r = plain_request("net");
  r.network = NetworkMode::host;
  auto host = namespaces(Doc(render(r)));
  CHECK(std::find(host.begin(), host.end(), "network") == host.end());
  for (const char* t : {"pid", "ipc", "uts", "mount"})
    CHECK(std::find(host.begin(), host.end(), t) != host.end());
  // bridge: the prepared namespace, by path (runsc joins it and copies its interfaces)
  r.network = NetworkMode::bridge;
  Doc bridge(render(r));
  simdjson::dom::array arr;
  REQUIRE(!bridge.at("/linux/namespaces").get_array().get(arr));
  std::string_view path;
  for (auto n : arr) {
    std::string_view t;
    REQUIRE(!n["type"].get_string().get(t));
    if (t == "network") REQUIRE(!n["path"].get_string().get(path));
  }
  CHECK(path == context_for(r.id).netns_path);
  CHECK(std::string(render(r)).find("\"/etc/resolv.conf\"") != std::string::npos);
}

TEST_CASE("spec: resources become cpu quota/period, memory bytes and a pids limit") {
  auto r = plain_request("res");
  r.resources.cpus = 1.5;
  r.resources.memory_mb = 2048;
  r.resources.pids = 4096;
  Doc d(render(r));
  CHECK(d.num("/linux/resources/cpu/quota") == 150000);
  CHECK(d.num("/linux/resources/cpu/period") == 100000);
  CHECK(d.num("/linux/resources/memory/limit") == 2048LL * 1024 * 1024);
  CHECK(d.num("/linux/resources/pids/limit") == 4096);

  r.resources = {};
  r.resources.cpus = 0.01;
  Doc small(render(r));
  CHECK(small.num("/linux/resources/cpu/quota") == 1000);
  CHECK_FALSE(small.has("/linux/resources/memory"));
  CHECK_FALSE(small.has("/linux/resources/pids"));

  r.resources = {};
  r.resources.memory_mb = 16ull << 20;  // the maximum: 16 TiB
  Doc big(render(r));
  CHECK(big.num("/linux/resources/memory/limit") == (16LL << 40));

  INFO("no resources: no linux.resources");
  CHECK_FALSE(Doc(render(plain_request("res"))).has("/linux/resources"));
}

TEST_CASE("spec: sandbox-init read-only at /.sandbox-agent/init, sockets and logs read-write") {
  for (bool docker : {false, true}) {
    INFO("docker: " << docker);
    auto r = docker ? docker_request("helpers", CgroupStrategy::auto_detect) : plain_request("helpers");
    r.mounts = {{"/srv/data", "/data", false}};
    auto ctx = context_for("helpers");
    Doc d(render_spec(r, ctx));
    auto init = mounts_at(d, std::string(kInitPath));
    REQUIRE(init.size() == 1);
    CHECK(init[0].type == "bind");
    CHECK(init[0].source == ctx.sandbox_init);
    CHECK(init[0].has_option("ro"));
    CHECK_FALSE(init[0].has_option("rw"));
    auto sockets = mounts_at(d, std::string(kSocketsMount));
    REQUIRE(sockets.size() == 1);
    CHECK(sockets[0].type == "bind");
    CHECK(sockets[0].source == ctx.sockets_dir);
    CHECK(sockets[0].has_option("rw"));
    CHECK_FALSE(sockets[0].has_option("ro"));
    auto logs = mounts_at(d, std::string(kLogsMount));
    REQUIRE(logs.size() == 1);
    CHECK(logs[0].source == ctx.logs_dir);
    CHECK(logs[0].has_option("rw"));
    // After every request mount, so nothing the request mounts can hide them.
    auto all = mounts_of(d);
    REQUIRE(all.size() >= 3);
    CHECK(all[all.size() - 3].destination == std::string(kInitPath));
    CHECK(all[all.size() - 2].destination == std::string(kSocketsMount));
    CHECK(all[all.size() - 1].destination == std::string(kLogsMount));
  }
}

TEST_CASE("spec: request mounts are binds with ro/rw as asked") {
  auto r = plain_request("binds");
  r.mounts = {{"/srv/data", "/data", true}, {"/srv/scratch", "/scratch", false}};
  Doc d(render(r));
  auto data = mounts_at(d, "/data");
  REQUIRE(data.size() == 1);
  CHECK(data[0].type == "bind");
  CHECK(data[0].source == "/srv/data");
  CHECK(data[0].has_option("rbind"));
  CHECK(data[0].has_option("ro"));
  auto scratch = mounts_at(d, "/scratch");
  REQUIRE(scratch.size() == 1);
  CHECK(scratch[0].source == "/srv/scratch");
  CHECK(scratch[0].has_option("rw"));
  CHECK_FALSE(scratch[0].has_option("ro"));
}

TEST_CASE("spec: root, hostname, user, cwd, env and annotations") {
  auto r = plain_request("job-7");
  r.labels = {{"batch-job", "1234"}, {"team/owner", "x"}};
  Doc d(render(r));
  CHECK(d.str("/ociVersion").starts_with("1."));
  CHECK(d.str("/root/path") == "/srv/images/ubuntu");
  CHECK(d.boolean("/root/readonly"));
  CHECK(d.str("/hostname") == "job-7");  // defaults to the id
  CHECK(d.num("/process/user/uid") == 0);
  CHECK(d.str("/process/cwd") == "/");
  auto env = d.strings("/process/env");
  CHECK(std::count_if(env.begin(), env.end(), [](auto& e) { return e.starts_with("PATH="); }) == 1);
  CHECK(std::find(env.begin(), env.end(), "LANG=C.UTF-8") != env.end());
  CHECK(d.str("/annotations/dev.sandbox-agent.id") == "job-7");
  CHECK(d.str("/annotations/dev.sandbox-agent.label.batch-job") == "1234");
  CHECK(d.str("/annotations/dev.sandbox-agent.label.team~1owner") == "x");

  r.hostname = "web-1";
  r.user = {1000, 1001};
  r.cwd = "/work";
  r.env = {"PATH=/opt/bin", "A=1"};
  Doc e(render(r));
  CHECK(e.str("/hostname") == "web-1");
  CHECK(e.num("/process/user/uid") == 1000);
  CHECK(e.num("/process/user/gid") == 1001);
  CHECK(e.str("/process/cwd") == "/work");
  CHECK(e.strings("/process/env") == std::vector<std::string>{"PATH=/opt/bin", "A=1"});
}

// ---- OCI schema validation ----

namespace {

struct ValidatorRun {
  int exit_code = -1;
  std::string output;
};

// Writes each spec to a temp file and runs the copied validator over all of them.
ValidatorRun validate(const std::vector<std::pair<std::string, std::string>>& specs) {
  std::string tmpl = (fs::temp_directory_path() / "spec_test.XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  std::string cmd = std::string(SANDBOX_AGENT_PYTHON) + " '" + SANDBOX_AGENT_OCI_VALIDATOR + "'";
  for (const auto& [name, text] : specs) {
    std::string path = tmpl + "/" + name + ".json";
    std::ofstream(path, std::ios::binary) << text;
    cmd += " '" + path + "'";
  }
  const std::string out_path = tmpl + "/validator.out";
  cmd += " > '" + out_path + "' 2>&1";
  int status = std::system(cmd.c_str());
  ValidatorRun run;
  run.exit_code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  bool ok = false;
  run.output = read_text(out_path, ok);
  std::error_code ec;
  fs::remove_all(tmpl, ec);
  return run;
}

}  // namespace

TEST_CASE("spec: every rendered spec validates against the OCI runtime-spec v1.2.1 schema") {
  std::vector<std::pair<std::string, std::string>> specs;
  for (const auto& c : cases()) specs.emplace_back(c.name, render_case(c));
  auto run = validate(specs);
  INFO("validator output:\n" << run.output);
  CHECK(run.exit_code == 0);
  for (const auto& c : cases()) {
    INFO("case: " << c.name);
    CHECK(run.output.find(c.name + ".json: valid OCI runtime spec") != std::string::npos);
  }
}

TEST_CASE("spec: the validator rejects a broken spec (negative control)") {
  auto text = render(plain_request("broken"));
  auto pos = text.find("\"mount\"");
  REQUIRE(pos != std::string::npos);
  text.replace(pos, 7, "\"bogus-namespace\"");
  auto run = validate({{"broken", text}});
  INFO("validator output:\n" << run.output);
  CHECK(run.exit_code == 1);
  CHECK(run.output.find("/linux/namespaces") != std::string::npos);
}
