// The durable sandbox record (state/ID.json) and the request as JSON (agent/store.hpp).
#include <doctest/doctest.h>

#include <asio/io_context.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "sandbox_agent/request.hpp"
#include "store.hpp"

namespace fs = std::filesystem;
using namespace sandbox_agent;

namespace {

struct Scratch {
  std::string base, images, rootfs, data, scratch_dir;
  Scratch() {
    std::string tmpl = (fs::temp_directory_path() / "store_test.XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    base = fs::canonical(tmpl).string();
    images = base + "/images";
    rootfs = images + "/rootfs";
    data = images + "/data";
    scratch_dir = images + "/scratch";
    for (const auto& d : {rootfs, data, scratch_dir}) fs::create_directories(d);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }
};

const Scratch& dirs() {
  static Scratch s;
  return s;
}

RequestPolicy policy() {
  RequestPolicy p;
  p.allowed_host_prefixes = {dirs().images};
  p.allow_host_cgroup_bind = true;
  return p;
}

// A request with every field set to something other than its default.
LaunchRequest full_request() {
  LaunchRequest r;
  r.id = "job-42";
  r.rootfs = dirs().rootfs;
  r.args = {"/bin/sh", "-c", "echo \"hi\" && sleep 1", "ünïcode"};
  r.env = {"LANG=C.UTF-8", "A=b=c", "EMPTY="};
  r.cwd = "/work";
  r.user = {0, 0};  // Docker sandboxes run as root inside; the socket goes to socket_owner
  r.hostname = "job-42.example";
  r.mounts = {{dirs().data, "/data", true}, {dirs().scratch_dir, "/scratch", false}};
  r.resources.cpus = 1.25;
  r.resources.memory_mb = 2048;
  r.resources.pids = 4096;
  r.network = NetworkMode::host;
  r.docker.enabled = true;
  r.docker.cgroup = CgroupStrategy::host_bind;
  r.docker.dockerd_args = {"--debug", "--log-level=warn"};
  r.docker.ready_timeout_ms = 12345;
  r.labels = {{"z-first", "1"}, {"a/second", "two"}, {"empty", ""}};
  r.socket_owner = Owner{1000, 1001};
  return r;
}

void check_same_request(const LaunchRequest& a, const LaunchRequest& b) {
  CHECK(a.id == b.id);
  CHECK(a.rootfs == b.rootfs);
  CHECK(a.args == b.args);
  CHECK(a.env == b.env);
  CHECK(a.cwd == b.cwd);
  CHECK(a.user.uid == b.user.uid);
  CHECK(a.user.gid == b.user.gid);
  CHECK(a.hostname == b.hostname);
  REQUIRE(a.mounts.size() == b.mounts.size());
  for (std::size_t i = 0; i < a.mounts.size(); ++i) {
    INFO("mount " << i);
    CHECK(a.mounts[i].source == b.mounts[i].source);
    CHECK(a.mounts[i].destination == b.mounts[i].destination);
    CHECK(a.mounts[i].readonly == b.mounts[i].readonly);
  }
  CHECK(a.resources.cpus == b.resources.cpus);
  CHECK(a.resources.memory_mb == b.resources.memory_mb);
  CHECK(a.resources.pids == b.resources.pids);
  CHECK(a.network == b.network);
  CHECK(a.ports == b.ports);
  REQUIRE(a.egress.has_value() == b.egress.has_value());
  if (a.egress) {
    CHECK(a.egress->allow == b.egress->allow);
    CHECK(a.egress->deny == b.egress->deny);
  }
  CHECK(a.docker.enabled == b.docker.enabled);
  CHECK(a.docker.cgroup == b.docker.cgroup);
  CHECK(a.docker.dockerd_args == b.docker.dockerd_args);
  CHECK(a.docker.ready_timeout_ms == b.docker.ready_timeout_ms);
  CHECK(a.labels == b.labels);
  REQUIRE(a.socket_owner.has_value() == b.socket_owner.has_value());
  if (a.socket_owner) {
    CHECK(a.socket_owner->uid == b.socket_owner->uid);
    CHECK(a.socket_owner->gid == b.socket_owner->gid);
  }
}

// The least a record needs: ids and a request.
void make_minimal(Sandbox& sb) {
  sb.id = std::string("j");
  sb.runsc_id = std::string("r");
  sb.request.id = sb.id;
  sb.request.rootfs = std::string("/x");
}

}  // namespace

TEST_CASE("store: record_to_json and parse_record round-trip every field") {
  asio::io_context io;
  Sandbox sb(io.get_executor());
  sb.id = "job-42";
  sb.runsc_id = "sa-000000000000002a";
  sb.request = full_request();
  sb.origin = "spool:job-42.json";
  sb.state = SandboxState::failed;
  sb.reason = std::string(reason::dockerd_exited);
  sb.exit_code = 137;
  sb.created_at_us = 1795942069123456;
  sb.ready_at_us = 1795942070023456;
  sb.timings.create_ms = 131;
  sb.timings.start_ms = 41;
  sb.timings.ready_ms = 900;
  sb.timings.network_ms = 17;
  sb.ttl_deadline_us = 1795942071000000;
  sb.request.ttl_ms = 3600000;
  sb.network_intent = true;
  sb.network = NetworkAttachment{"10.231.0.5", "10.231.0.5/16", "10.231.0.1", R"({"cniVersion":"1.0.0","ips":[{"address":"10.231.0.5/16"}]})"};
  sb.log_tail = "line 1\nfailed to start daemon: \"Devices cgroup isn't mounted\"\n\ttab \\ backslash\n";
  sb.docker_socket = "/var/lib/sandbox-agent/sockets/job-42/docker.sock";
  sb.capabilities = Capabilities{"0.0~20221219.0", "ptrace", false};
  sb.pid = 4242;
  sb.stop_requested = true;
  sb.runsc_created = true;
  sb.finished = true;
  sb.dir = "pool-small-0a1b2c3d";
  sb.pool = "small";
  sb.pool_start = PoolStart::warm;
  sb.pool_template = 18446744073709551557ull;

  const std::string json = record_to_json(sb);
  INFO("record: " << json);
  CHECK(json.find('\n') == std::string::npos);  // one line
  auto r = parse_record(json);
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  const Record& rec = *r;
  CHECK(rec.id == sb.id);
  CHECK(rec.runsc_id == sb.runsc_id);
  CHECK(rec.origin == sb.origin);
  CHECK(rec.state == sb.state);
  CHECK(rec.reason == sb.reason);
  CHECK(rec.exit_code == sb.exit_code);
  CHECK(rec.created_at_us == sb.created_at_us);
  CHECK(rec.ready_at_us == sb.ready_at_us);
  CHECK(rec.timings.create_ms == sb.timings.create_ms);
  CHECK(rec.timings.start_ms == sb.timings.start_ms);
  CHECK(rec.timings.ready_ms == sb.timings.ready_ms);
  CHECK(rec.timings.network_ms == 17);
  CHECK(rec.ttl_deadline_us == 1795942071000000);
  CHECK(rec.request.ttl_ms == 3600000u);
  CHECK(rec.network_intent);
  REQUIRE(rec.network.has_value());
  CHECK(rec.network->ip == "10.231.0.5");
  CHECK(rec.network->cidr == "10.231.0.5/16");
  CHECK(rec.network->gateway == "10.231.0.1");
  CHECK(rec.network->cni_result == sb.network->cni_result);
  CHECK(rec.log_tail == sb.log_tail);
  CHECK(rec.docker_socket == sb.docker_socket);
  REQUIRE(rec.capabilities.has_value());
  CHECK(rec.capabilities->runtime_version == "0.0~20221219.0");
  CHECK(rec.capabilities->platform == "ptrace");
  CHECK_FALSE(rec.capabilities->nested_containers);
  CHECK(rec.pid == sb.pid);
  CHECK(rec.stop_requested);
  CHECK(rec.runsc_created);
  CHECK_FALSE(rec.finished);  // runsc may still hold it: not finished on disk (next case)
  CHECK(rec.dir == "pool-small-0a1b2c3d");
  CHECK(rec.pool == "small");
  CHECK(rec.pool_start == PoolStart::warm);
  CHECK(rec.pool_template == 18446744073709551557ull);
  check_same_request(rec.request, sb.request);
}

TEST_CASE("store: a record without dir is kept under its id; a bad dir is refused") {
  asio::io_context io;
  Sandbox sb(io.get_executor());
  sb.id = sb.dir = "plain";
  sb.runsc_id = "sa-000000000000002b";
  sb.request = full_request();
  auto json = record_to_json(sb);
  CHECK(json.find("\"dir\"") == std::string::npos);
  CHECK(json.find("\"pool\"") == std::string::npos);
  auto r = parse_record(json);
  REQUIRE(r.ok());
  CHECK(r->dir == "plain");
  CHECK(r->pool_start == PoolStart::none);
  sb.dir = "../../etc";
  CHECK_FALSE(parse_record(record_to_json(sb)).ok());
}

TEST_CASE("store: a record with optional fields unset round-trips as unset") {
  asio::io_context io;
  Sandbox sb(io.get_executor());
  sb.id = "job-1";
  sb.runsc_id = "sa-0000000000000001";
  sb.request.id = "job-1";
  sb.request.rootfs = "/srv/images/x";
  sb.origin = "socket";
  sb.created_at_us = 1;
  auto r = parse_record(record_to_json(sb));
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  CHECK(r->state == SandboxState::accepted);
  CHECK(r->reason.empty());
  CHECK_FALSE(r->exit_code.has_value());
  CHECK_FALSE(r->ready_at_us.has_value());
  CHECK_FALSE(r->timings.create_ms.has_value());
  CHECK_FALSE(r->timings.start_ms.has_value());
  CHECK_FALSE(r->timings.ready_ms.has_value());
  CHECK(r->pid == -1);
  CHECK_FALSE(r->stop_requested);
  CHECK_FALSE(r->runsc_created);
  CHECK_FALSE(r->finished);
  CHECK_FALSE(r->capabilities.has_value());
  check_same_request(r->request, sb.request);
}

TEST_CASE("store: every state survives the record") {
  asio::io_context io;
  for (auto st : {SandboxState::accepted, SandboxState::creating, SandboxState::starting, SandboxState::probing,
                  SandboxState::ready, SandboxState::stopping, SandboxState::stopped, SandboxState::failed}) {
    Sandbox sb(io.get_executor());
    make_minimal(sb);
    sb.state = st;
    auto r = parse_record(record_to_json(sb));
    REQUIRE_MESSAGE(r.ok(), r.error().describe());
    CHECK(r->state == st);
  }
}

TEST_CASE("store: a log tail that is not UTF-8 is stored sanitised, as valid JSON") {
  asio::io_context io;
  Sandbox sb(io.get_executor());
  make_minimal(sb);
  sb.log_tail = "bad \xff\xfe bytes";
  auto r = parse_record(record_to_json(sb));
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  CHECK(r->log_tail.find("bad ") == 0);
  CHECK(r->log_tail.find("bytes") != std::string::npos);
  CHECK(r->log_tail.find('\xff') == std::string::npos);
}

TEST_CASE("store: parse_record rejects incomplete or damaged records and tolerates new fields") {
  CHECK_FALSE(parse_record("").ok());
  CHECK_FALSE(parse_record("{").ok());
  CHECK_FALSE(parse_record(R"({"version":1,"id":"j","runsc_id":"r"})").ok());  // no request
  CHECK_FALSE(parse_record(R"({"version":1,"runsc_id":"r","request":{"rootfs":"/x"}})").ok());  // no id
  CHECK_FALSE(parse_record(R"({"version":1,"id":"j","request":{"rootfs":"/x"}})").ok());  // no runsc_id
  CHECK_FALSE(parse_record(R"({"version":2,"id":"j","runsc_id":"r","request":{"rootfs":"/x"}})").ok());
  CHECK_FALSE(parse_record(R"({"version":1,"id":"j","runsc_id":"r","state":"sleeping","request":{"rootfs":"/x"}})").ok());
  CHECK_FALSE(parse_record(R"({"version":1,"id":"j","runsc_id":"r","request":{"rootfs":"rel"}})").ok());
  auto r = parse_record(R"({"version":1,"id":"j","runsc_id":"r","added_later":{"x":[1,2]},"request":{"rootfs":"/x"}})");
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  CHECK(r->id == "j");
}

TEST_CASE("store: request_to_json parses back with parse_launch_request into an equal request") {
  SUBCASE("every field set") {
    const auto original = full_request();
    const auto json = request_to_json(original);
    INFO("request json: " << json);
    CHECK(json.find('\n') == std::string::npos);
    auto r = parse_launch_request(json, policy());
    REQUIRE_MESSAGE(r.ok(), r.error().describe());
    check_same_request(*r, original);
  }
  SUBCASE("bridge with ports and egress") {
    LaunchRequest original;
    original.id = "job-9";
    original.rootfs = dirs().rootfs;
    original.network = NetworkMode::bridge;
    original.ports = {{8080, 80, "tcp", ""}, {53, 5353, "udp", "127.0.0.1"}};
    original.egress = EgressRules{{*parse_cidr("0.0.0.0/0")}, {*parse_cidr("169.254.0.0/16"), *parse_cidr("8.8.8.8")}};
    const auto json = request_to_json(original);
    INFO("request json: " << json);
    auto r = parse_launch_request(json, policy());
    REQUIRE_MESSAGE(r.ok(), r.error().describe());
    check_same_request(*r, original);
  }
  SUBCASE("defaults") {
    LaunchRequest original;
    original.id = "job-7";
    original.rootfs = dirs().rootfs;
    const auto json = request_to_json(original);
    INFO("request json: " << json);
    auto r = parse_launch_request(json, policy());
    REQUIRE_MESSAGE(r.ok(), r.error().describe());
    check_same_request(*r, original);
  }
  SUBCASE("docker without the optional fields") {
    LaunchRequest original;
    original.id = "job-8";
    original.rootfs = dirs().rootfs;
    original.docker.enabled = true;
    original.docker.cgroup = CgroupStrategy::userns;
    original.resources.memory_mb = 16;
    const auto json = request_to_json(original);
    INFO("request json: " << json);
    auto r = parse_launch_request(json, policy());
    REQUIRE_MESSAGE(r.ok(), r.error().describe());
    check_same_request(*r, original);
  }
}

TEST_CASE("store: a sandbox is finished on disk only once runsc let go of it") {
  asio::io_context io;
  Sandbox sb(io.get_executor());
  sb.id = sb.dir = "s";
  sb.runsc_id = "sa-000000000000002d";
  sb.request = full_request();
  sb.state = SandboxState::stopped;
  sb.finished = true;
  sb.runsc_created = true;  // its delete failed: a restart must try again
  CHECK_FALSE(parse_record(record_to_json(sb))->finished);
  sb.runsc_created = false;
  CHECK(parse_record(record_to_json(sb))->finished);
}

TEST_CASE("store: an intent record that promised runsc says runsc_created before runsc is called") {
  asio::io_context io;
  Sandbox sb(io.get_executor());
  sb.id = sb.dir = "promised";
  sb.runsc_id = "sa-000000000000002c";
  sb.request = full_request();
  CHECK_FALSE(parse_record(record_to_json(sb))->runsc_created);
  sb.runsc_promised = true;  // no bridge network: the intent is the record before runsc create
  CHECK(parse_record(record_to_json(sb))->runsc_created);
  CHECK_FALSE(sb.runsc_created);  // in memory: not yet (tear-down deletes only what runsc has)
}
