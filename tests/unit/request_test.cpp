// Launch request parsing, validation and host path policy (sandbox_agent/request.hpp).
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "sandbox_agent/request.hpp"

namespace fs = std::filesystem;
using namespace sandbox_agent;

namespace {

// A scratch tree: BASE/images is the allowed prefix, with a rootfs and a data directory in
// it; BASE/outside lies outside every prefix. Paths are canonical (realpath of mkdtemp).
struct Dirs {
  std::string base, images, rootfs, data, outside;
  Dirs() {
    std::string tmpl = (fs::temp_directory_path() / "request_test.XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    base = fs::canonical(tmpl).string();
    images = base + "/images";
    rootfs = images + "/rootfs";
    data = images + "/data";
    outside = base + "/outside";
    fs::create_directories(rootfs);
    fs::create_directories(data);
    fs::create_directories(outside + "/rootfs");
    fs::create_directories(base + "/images-evil");  // shares a string prefix with images
    std::ofstream(images + "/file.txt") << "not a directory\n";
    fs::create_directory_symlink(outside, images + "/escape");  // inside -> outside
    fs::create_directory_symlink(rootfs, images + "/alias");    // inside -> inside
  }
  ~Dirs() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }
};

const Dirs& dirs() {
  static Dirs d;
  return d;
}

RequestPolicy policy() {
  RequestPolicy p;
  p.allowed_host_prefixes = {dirs().images};
  return p;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (auto pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

// @ROOTFS@, @DATA@, @IMAGES@, @OUTSIDE@ stand for the scratch directories.
std::string expand(std::string json) {
  replace_all(json, "@ROOTFS@", dirs().rootfs);
  replace_all(json, "@DATA@", dirs().data);
  replace_all(json, "@IMAGES@", dirs().images);
  replace_all(json, "@OUTSIDE@", dirs().outside);
  return json;
}

std::string code_name(ErrorCode c) { return std::string(to_string(c)); }

const std::string kAnyField = "<any>";

struct Row {
  std::string name;
  std::string json;
  ErrorCode code;
  std::string field;        // JSON pointer, or kAnyField
  std::string message = {};  // substring of the message ("" = not checked)
};

// Rejected with the expected code, field and message; reports the row on failure.
void check_rejected(const Row& row, const RequestPolicy& pol) {
  INFO("row: " << row.name);
  INFO("json: " << (row.json.size() > 300 ? row.json.substr(0, 300) + "..." : row.json));
  auto r = parse_launch_request(expand(row.json), pol);
  CHECK_FALSE(r.ok());
  if (r.ok()) return;
  const Error& e = r.error();
  INFO("got: " << e.describe());
  CHECK(code_name(e.code) == code_name(row.code));
  if (row.field != kAnyField) CHECK(e.field == row.field);
  if (!row.message.empty()) CHECK(e.message.find(row.message) != std::string::npos);
}

constexpr auto IJ = ErrorCode::invalid_json;
constexpr auto IR = ErrorCode::invalid_request;

std::vector<Row> malformed_rows() {
  const std::string base = R"({"rootfs":"@ROOTFS@")";
  auto with = [&](const std::string& rest) { return base + "," + rest + "}"; };
  const std::string docker_on = R"("docker":{"enabled":true})";
  std::vector<Row> rows = {
      // Not a single JSON object.
      {"not JSON", "not json", IJ, ""},
      {"empty input", "", IJ, ""},
      {"whitespace only", "  \n ", IJ, ""},
      {"trailing garbage", base + "} x", IJ, "", "after the JSON object"},
      {"second object after the first", base + "}{}", IJ, kAnyField},
      {"extra closing brace", base + "}}", IJ, kAnyField},
      {"top-level array", R"([{"rootfs":"/x"}])", IR, "", "must be a JSON object"},
      {"top-level number", "42", IR, "", "must be a JSON object"},
      {"top-level string", R"("rootfs")", IR, "", "must be a JSON object"},
      {"top-level null", "null", IR, "", "must be a JSON object"},
      {"invalid UTF-8", "{\"rootfs\":\"/\xff\"}", IJ, kAnyField},
      {"bad string escape", R"({"rootfs":"\q"})", IJ, kAnyField},
      // Duplicate keys.
      {"duplicate top-level key", with(R"("rootfs":"@ROOTFS@")"), IR, "/rootfs", "duplicate key"},
      {"duplicate key spelled with an escape", with(R"("root\u0066s":"@ROOTFS@")"), IR, "/rootfs",
       "duplicate key"},
      {"duplicate nested key (user)", with(R"("user":{"uid":1,"uid":2,"gid":0})"), IR, "/user/uid",
       "duplicate key"},
      {"duplicate nested key (docker)", with(R"("docker":{"enabled":true,"enabled":false})"), IR,
       "/docker/enabled", "duplicate key"},
      {"duplicate nested key (mount)",
       with(R"("mounts":[{"source":"@DATA@","destination":"/d","destination":"/e"}])"), IR,
       "/mounts/0/destination", "duplicate key"},
      {"duplicate label", with(R"("labels":{"a":"1","a":"2"})"), IR, "/labels/a", "duplicate key"},
      // Unknown fields, everywhere.
      {"unknown top-level field", with(R"("bogus":1)"), IR, "/bogus", "unknown field"},
      {"unknown field name escaped in the pointer", with(R"("a/b~c":1)"), IR, "/a~1b~0c",
       "unknown field"},
      {"unknown field in user", with(R"("user":{"uid":0,"gid":0,"name":"root"})"), IR, "/user/name",
       "unknown field"},
      {"unknown field in mounts", with(R"("mounts":[{"source":"@DATA@","destination":"/d","mode":"ro"}])"),
       IR, "/mounts/0/mode", "unknown field"},
      {"unknown field in resources", with(R"("resources":{"cpu":1})"), IR, "/resources/cpu",
       "unknown field"},
      {"unknown field in docker", with(R"("docker":{"enable":true})"), IR, "/docker/enable",
       "unknown field"},
      {"unknown field in socket_owner",
       with(docker_on + R"(,"socket_owner":{"uid":1,"gid":1,"user":"x"})"), IR,
       "/socket_owner/user", "unknown field"},
      // Wrong types.
      {"id not a string", with(R"("id":5)"), IR, "/id", "must be a string"},
      {"rootfs not a string", R"({"rootfs":true})", IR, "/rootfs", "must be a string"},
      {"args not an array", with(R"("args":"/bin/sh")"), IR, "/args", "must be an array of strings"},
      {"args item not a string", with(R"("args":["/bin/sh",1])"), IR, "/args/1", "must be a string"},
      {"env not an array", with(R"("env":{"A":"1"})"), IR, "/env", "must be an array"},
      {"env item not a string", with(R"("env":["A=1",null])"), IR, "/env/1", "must be a string"},
      {"cwd not a string", with(R"("cwd":1)"), IR, "/cwd", "must be a string"},
      {"user not an object", with(R"("user":[0,0])"), IR, "/user", "must be an object"},
      {"user.uid a string", with(R"("user":{"uid":"0","gid":0})"), IR, "/user/uid", "must be an integer"},
      {"user.gid negative", with(R"("user":{"uid":0,"gid":-1})"), IR, "/user/gid", "must be an integer"},
      {"user.uid 2^32-1 (reserved)", with(R"("user":{"uid":4294967295,"gid":0})"), IR, "/user/uid"},
      {"user.uid fractional", with(R"("user":{"uid":1.5,"gid":0})"), IR, "/user/uid"},
      {"user without gid", with(R"("user":{"uid":0})"), IR, "/user/gid", "is required"},
      {"hostname null", with(R"("hostname":null)"), IR, "/hostname", "must be a string"},
      {"mounts not an array", with(R"("mounts":{"source":"@DATA@"})"), IR, "/mounts", "must be an array"},
      {"mount not an object", with(R"("mounts":["@DATA@:/d"])"), IR, "/mounts/0", "must be an object"},
      {"mount source not a string", with(R"("mounts":[{"source":1,"destination":"/d"}])"), IR,
       "/mounts/0/source", "must be a string"},
      {"mount readonly a string",
       with(R"("mounts":[{"source":"@DATA@","destination":"/d","readonly":"yes"}])"), IR,
       "/mounts/0/readonly", "must be true or false"},
      {"resources not an object", with(R"("resources":1)"), IR, "/resources", "must be an object"},
      {"resources.cpus a string", with(R"("resources":{"cpus":"1"})"), IR, "/resources/cpus",
       "must be a number"},
      {"resources.memory_mb fractional", with(R"("resources":{"memory_mb":1024.5})"), IR,
       "/resources/memory_mb", "must be an integer"},
      {"network not a string", with(R"("network":0)"), IR, "/network", "must be a string"},
      {"docker not an object", with(R"("docker":true)"), IR, "/docker", "must be an object"},
      {"docker.enabled a string", with(R"("docker":{"enabled":"true"})"), IR, "/docker/enabled",
       "must be true or false"},
      {"docker.cgroup not a string", with(R"("docker":{"enabled":true,"cgroup":1})"), IR,
       "/docker/cgroup", "must be a string"},
      {"docker.dockerd_args a string", with(R"("docker":{"enabled":true,"dockerd_args":"--debug"})"), IR,
       "/docker/dockerd_args", "must be an array"},
      {"docker.ready_timeout_ms a string", with(R"("docker":{"enabled":true,"ready_timeout_ms":"1000"})"),
       IR, "/docker/ready_timeout_ms", "must be an integer"},
      {"labels an array", with(R"("labels":["a=b"])"), IR, "/labels", "must be an object"},
      {"label value a number", with(R"("labels":{"batch-job":1234})"), IR, "/labels/batch-job",
       "must be a string"},
      {"label value an object", with(R"("labels":{"a":{}})"), IR, "/labels/a", "must be a string"},
      {"label value null, key escaped", with(R"("labels":{"team/owner":null})"), IR,
       "/labels/team~1owner", "must be a string"},
      {"socket_owner a string", with(docker_on + R"(,"socket_owner":"root")"), IR, "/socket_owner",
       "must be an object"},
      // Missing rootfs.
      {"empty object", "{}", IR, "/rootfs", "is required"},
      {"no rootfs", R"({"id":"job-1","args":["/bin/true"]})", IR, "/rootfs", "is required"},
      // Id pattern.
      {"id too long (64)", with("\"id\":\"" + std::string(64, 'a') + "\""), IR, "/id", "must match"},
      {"id leading -", with(R"("id":"-job")"), IR, "/id", "must match"},
      {"id leading _", with(R"("id":"_job")"), IR, "/id", "must match"},
      {"id leading .", with(R"("id":".job")"), IR, "/id", "must match"},
      {"id with a space", with(R"("id":"job 1")"), IR, "/id", "must match"},
      {"id with a slash", with(R"("id":"job/1")"), IR, "/id", "must match"},
      {"id with a colon", with(R"("id":"job:1")"), IR, "/id", "must match"},
      {"id non-ASCII", with(R"("id":"j\u00f6b")"), IR, "/id", "must match"},
      // Paths.
      {"relative rootfs", R"({"rootfs":"images/rootfs"})", IR, "/rootfs", "absolute path"},
      {"rootfs with ..", R"({"rootfs":"@IMAGES@/../images/rootfs"})", IR, "/rootfs", "absolute path"},
      {"rootfs with .", R"({"rootfs":"@IMAGES@/./rootfs"})", IR, "/rootfs", "absolute path"},
      {"rootfs empty", R"({"rootfs":""})", IR, "/rootfs"},
      {"args[0] empty", with(R"("args":[""])"), IR, "/args/0", "must not be empty"},
      {"env entry without =", with(R"("env":["LANG=C","FOO"])"), IR, "/env/1", "NAME=VALUE"},
      {"env entry with empty name", with(R"("env":["=x"])"), IR, "/env/0", "NAME=VALUE"},
      {"cwd relative", with(R"("cwd":"tmp")"), IR, "/cwd", "absolute path"},
      {"cwd with ..", with(R"("cwd":"/a/../b")"), IR, "/cwd", "absolute path"},
      {"hostname leading -", with(R"("hostname":"-job")"), IR, "/hostname"},
      {"hostname empty", with(R"("hostname":"")"), IR, "/hostname", "must be 1-63"},
      {"hostname with _", with(R"("hostname":"job_42")"), IR, "/hostname"},
      {"hostname too long (64)", with("\"hostname\":\"" + std::string(64, 'h') + "\""), IR, "/hostname"},
      {"hostname with a space", with(R"("hostname":"a b")"), IR, "/hostname"},
      // Mounts.
      {"mount without source", with(R"("mounts":[{"destination":"/d"}])"), IR, "/mounts/0/source",
       "is required"},
      {"mount without destination", with(R"("mounts":[{"source":"@DATA@"}])"), IR,
       "/mounts/0/destination", "is required"},
      {"mount source relative", with(R"("mounts":[{"source":"data","destination":"/d"}])"), IR,
       "/mounts/0/source", "absolute path"},
      {"mount destination relative", with(R"("mounts":[{"source":"@DATA@","destination":"data"}])"), IR,
       "/mounts/0/destination", "absolute path"},
      {"mount destination /a/../b", with(R"("mounts":[{"source":"@DATA@","destination":"/a/../b"}])"), IR,
       "/mounts/0/destination", "absolute path"},
      {"mount destination /a//b", with(R"("mounts":[{"source":"@DATA@","destination":"/a//b"}])"), IR,
       "/mounts/0/destination", "absolute path"},
      {"mount destination /a/", with(R"("mounts":[{"source":"@DATA@","destination":"/a/"}])"), IR,
       "/mounts/0/destination", "absolute path"},
      {"mount destination /", with(R"("mounts":[{"source":"@DATA@","destination":"/"}])"), IR,
       "/mounts/0/destination", "other than /"},
      {"mount destination /proc", with(R"("mounts":[{"source":"@DATA@","destination":"/proc"}])"), IR,
       "/mounts/0/destination", "must not be /proc"},
      {"mount destination /sys/x", with(R"("mounts":[{"source":"@DATA@","destination":"/sys/x"}])"), IR,
       "/mounts/0/destination", "must not be /proc"},
      {"mount destination /dev", with(R"("mounts":[{"source":"@DATA@","destination":"/dev"}])"), IR,
       "/mounts/0/destination", "must not be /proc"},
      {"mount destination /dev/shm", with(R"("mounts":[{"source":"@DATA@","destination":"/dev/shm"}])"), IR,
       "/mounts/0/destination", "must not be /proc"},
      {"mount destination /.sandbox-agent",
       with(R"("mounts":[{"source":"@DATA@","destination":"/.sandbox-agent"}])"), IR,
       "/mounts/0/destination", "/.sandbox-agent"},
      {"mount destination /.sandbox-agent/init",
       with(R"("mounts":[{"source":"@DATA@","destination":"/.sandbox-agent/init"}])"), IR,
       "/mounts/0/destination", "/.sandbox-agent"},
      {"duplicate destinations",
       with(R"("mounts":[{"source":"@DATA@","destination":"/d"},{"source":"@ROOTFS@","destination":"/e"},)"
            R"({"source":"@DATA@","destination":"/d"}])"),
       IR, "/mounts/2/destination", "already used by /mounts/0"},
      // Resources.
      {"cpus 0", with(R"("resources":{"cpus":0})"), IR, "/resources/cpus", "must be a number"},
      {"cpus negative", with(R"("resources":{"cpus":-1.0})"), IR, "/resources/cpus"},
      {"cpus too many", with(R"("resources":{"cpus":100000})"), IR, "/resources/cpus"},
      {"memory_mb 1", with(R"("resources":{"memory_mb":1})"), IR, "/resources/memory_mb",
       "must be an integer from 16"},
      {"memory_mb negative", with(R"("resources":{"memory_mb":-2048})"), IR, "/resources/memory_mb"},
      {"pids 0", with(R"("resources":{"pids":0})"), IR, "/resources/pids", "must be an integer from 1"},
      {"pids negative", with(R"("resources":{"pids":-1})"), IR, "/resources/pids"},
      {"pids fractional", with(R"("resources":{"pids":1.5})"), IR, "/resources/pids"},
      // Enums.
      {"network nat", with(R"("network":"nat")"), IR, "/network", "must be one of none, host, bridge"},
      {"network is case-sensitive", with(R"("network":"Host")"), IR, "/network", "must be one of none, host, bridge"},
      // Bridge networking: ports and egress.
      {"ports without bridge", with(R"("ports":[{"host_port":8080,"sandbox_port":80}])"), IR, "/ports",
       "needs network: bridge"},
      {"egress without bridge", with(R"("network":"host","egress":{"allow":["0.0.0.0/0"]})"), IR, "/egress",
       "needs network: bridge"},
      {"port 0", with(R"("network":"bridge","ports":[{"host_port":0,"sandbox_port":80}])"), IR,
       "/ports/0/host_port"},
      {"port 65536", with(R"("network":"bridge","ports":[{"host_port":8080,"sandbox_port":65536}])"), IR,
       "/ports/0/sandbox_port"},
      {"port without sandbox_port", with(R"("network":"bridge","ports":[{"host_port":8080}])"), IR,
       "/ports/0/sandbox_port", "is required"},
      {"port protocol sctp", with(R"("network":"bridge","ports":[{"host_port":1,"sandbox_port":1,"protocol":"sctp"}])"),
       IR, "/ports/0/protocol", "must be tcp or udp"},
      {"port host_ip a name", with(R"("network":"bridge","ports":[{"host_port":1,"sandbox_port":1,"host_ip":"localhost"}])"),
       IR, "/ports/0/host_ip", "must be an IPv4 or IPv6 address"},
      {"port twice", with(R"("network":"bridge","ports":[{"host_port":8080,"sandbox_port":80},{"host_port":8080,"sandbox_port":81}])"),
       IR, "/ports/1/host_port", "is already published by /ports/0"},
      {"port unknown field", with(R"("network":"bridge","ports":[{"host_port":1,"sandbox_port":1,"hostPort":2}])"),
       IR, "/ports/0/hostPort", "unknown field"},
      {"egress host bits", with(R"("network":"bridge","egress":{"allow":["10.0.0.1/8"]})"), IR,
       "/egress/allow/0", "did you mean 10.0.0.0/8"},
      {"egress not a cidr", with(R"("network":"bridge","egress":{"deny":["0.0.0.0/0","metadata.google"]})"), IR,
       "/egress/deny/1", "is not an IPv4 or IPv6 address"},
      {"ttl_ms 0", with(R"("ttl_ms":0)"), IR, "/ttl_ms", "must be an integer from 1"},
      {"ttl_ms over a year", with(R"("ttl_ms":99999999999999)"), IR, "/ttl_ms"},
      {"ttl_ms a string", with(R"("ttl_ms":"1h")"), IR, "/ttl_ms"},
      {"egress unknown key", with(R"("network":"bridge","egress":{"block":[]})"), IR, "/egress/block", "unknown field"},
      {"docker.cgroup systemd", with(R"("docker":{"enabled":true,"cgroup":"systemd"})"), IR,
       "/docker/cgroup", "must be one of auto, sandbox, userns, host-bind, none"},
      {"docker.cgroup host_bind", with(R"("docker":{"enabled":true,"cgroup":"host_bind"})"), IR,
       "/docker/cgroup", "must be one of auto, sandbox, userns, host-bind, none"},
      // dockerd_args overriding what the profile owns.
      {"dockerd_args -H", with(R"("docker":{"enabled":true,"dockerd_args":["-H","unix:///x"]})"), IR,
       "/docker/dockerd_args/0", "sets a flag the Docker profile depends on"},
      {"dockerd_args --host=", with(R"("docker":{"enabled":true,"dockerd_args":["--debug","--host=unix:///x"]})"),
       IR, "/docker/dockerd_args/1", "sets a flag the Docker profile depends on"},
      {"dockerd_args --iptables=true", with(R"("docker":{"enabled":true,"dockerd_args":["--iptables=true"]})"),
       IR, "/docker/dockerd_args/0"},
      {"dockerd_args -DH combined", with(R"("docker":{"enabled":true,"dockerd_args":["-DH","unix:///x"]})"),
       IR, "/docker/dockerd_args/0"},
      {"dockerd_args --data-root", with(R"("docker":{"enabled":true,"dockerd_args":["--data-root","/x"]})"),
       IR, "/docker/dockerd_args/0"},
      {"dockerd_args --data-root=", with(R"("docker":{"enabled":true,"dockerd_args":["-D","--data-root=/x"]})"),
       IR, "/docker/dockerd_args/1"},
      {"dockerd_args -G", with(R"("docker":{"enabled":true,"dockerd_args":["-G","docker"]})"), IR,
       "/docker/dockerd_args/0"},
      {"dockerd_args --bridge", with(R"("docker":{"enabled":true,"dockerd_args":["--bridge=docker0"]})"), IR,
       "/docker/dockerd_args/0"},
      {"dockerd_args --userns-remap", with(R"("docker":{"enabled":true,"dockerd_args":["--userns-remap=default"]})"),
       IR, "/docker/dockerd_args/0"},
      {"dockerd_args --exec-root", with(R"("docker":{"enabled":true,"dockerd_args":["--exec-root=/x"]})"), IR,
       "/docker/dockerd_args/0"},
      {"docker.ready_timeout_ms 0", with(R"("docker":{"enabled":true,"ready_timeout_ms":0})"), IR,
       "/docker/ready_timeout_ms", "must be an integer from 1"},
      // Labels.
      {"label key with a space", with(R"("labels":{"bad key":"x"})"), IR, "/labels/bad key", "label keys"},
      {"label key empty", with(R"("labels":{"":"x"})"), IR, "/labels/", "label keys"},
      {"label key with ~ (escaped in the pointer)", with(R"("labels":{"a~b":"x"})"), IR, "/labels/a~0b",
       "label keys"},
      {"label key non-ASCII", with(R"("labels":{"\u00e9":"x"})"), IR, "/labels/\xc3\xa9", "label keys"},
      // socket_owner needs Docker.
      {"socket_owner without docker", with(R"("socket_owner":{"uid":1000,"gid":1000})"), IR,
       "/socket_owner", "needs docker.enabled"},
      {"socket_owner with docker disabled",
       with(R"("docker":{"enabled":false},"socket_owner":{"uid":1000,"gid":1000})"), IR, "/socket_owner",
       "needs docker.enabled"},
      // NUL inside strings.
      {"NUL in an arg", with(R"("args":["/bin/sh","a\u0000b"])"), IR, "/args/1", "must not contain NUL"},
      {"NUL in the id", with(R"("id":"job\u0000")"), IR, "/id", "must not contain NUL"},
      {"NUL in rootfs", R"({"rootfs":"@ROOTFS@\u0000/x"})", IR, "/rootfs", "must not contain NUL"},
      {"NUL in env", with(R"("env":["A=\u0000"])"), IR, "/env/0", "must not contain NUL"},
      {"NUL in a label value", with(R"("labels":{"a":"x\u0000"})"), IR, "/labels/a", "must not contain NUL"},
  };
  // Size limit (1 MiB by default): one byte over is too_large, before any parsing.
  std::string big = R"({"rootfs":"@ROOTFS@","args":["/bin/echo",")";
  big += std::string((1u << 20), 'a') + "\"]}";
  rows.push_back({"request over the size limit", big, ErrorCode::too_large, "", "larger than 1048576"});
  // Item limits.
  std::string many_labels = R"("labels":{)";
  for (int i = 0; i < 65; ++i) {
    if (i) many_labels += ',';
    many_labels += "\"l" + std::to_string(i) + "\":\"v\"";
  }
  rows.push_back({"65 labels", with(many_labels + "}"), IR, "/labels", "at most 64"});
  std::string many_mounts = R"("mounts":[)";
  for (int i = 0; i < 65; ++i) {
    if (i) many_mounts += ',';
    many_mounts += R"({"source":"@DATA@","destination":"/m)" + std::to_string(i) + "\"}";
  }
  rows.push_back({"65 mounts", with(many_mounts + "]"), IR, "/mounts", "at most 64"});
  return rows;
}

}  // namespace

TEST_CASE("request: malformed launch requests are rejected with code and field (table)") {
  auto rows = malformed_rows();
  CHECK(rows.size() >= 45);
  MESSAGE("malformed request rows: " << rows.size());
  auto pol = policy();
  for (const auto& row : rows) check_rejected(row, pol);
}

TEST_CASE("request: an explicit empty id violates the id pattern") {
  // Only an absent id is generated; an empty one breaks the pattern.
  check_rejected({"id empty", R"({"id":"","rootfs":"@ROOTFS@"})", IR, "/id", "must match"}, policy());
}

TEST_CASE("request: JSON syntax errors inside values are invalid_json") {
  // ondemand meets these lazily, as type errors; the text is not JSON: invalid_json.
  auto pol = policy();
  check_rejected({"truncated object", R"({"rootfs":)", IJ, kAnyField}, pol);
  check_rejected({"truncated inside an array", R"({"rootfs":"@ROOTFS@","args":["/bin/sh",)", IJ, kAnyField},
                 pol);
  check_rejected({"number with a leading zero", R"({"rootfs":"@ROOTFS@","resources":{"pids":01}})", IJ,
                  kAnyField},
                 pol);
  check_rejected({"misspelled literal", R"({"rootfs":"@ROOTFS@","docker":{"enabled":tru}})", IJ, kAnyField},
                 pol);
  check_rejected({"trailing comma in an array", R"({"rootfs":"@ROOTFS@","args":["/bin/sh",]})", IJ,
                  kAnyField},
                 pol);
}

TEST_CASE("request: numbers too large to hold are the field's error, not invalid_json") {
  // Valid JSON that simdjson cannot convert (and reports like a malformed number).
  auto pol = policy();
  check_rejected({"ttl_ms past 2^64", R"({"rootfs":"@ROOTFS@","ttl_ms":18446744073709551616})", IR, "/ttl_ms", ""},
                 pol);
  check_rejected({"cpus past a double", R"({"rootfs":"@ROOTFS@","resources":{"cpus":1e400}})", IR,
                  "/resources/cpus", ""},
                 pol);
  check_rejected({"a uid of forty digits",
                  R"({"rootfs":"@ROOTFS@","user":{"uid":1234567890123456789012345678901234567890,"gid":0}})", IR,
                  "/user/uid", ""},
                 pol);
  // ... while a number JSON does not allow stays invalid_json, big or not.
  check_rejected({"leading zero beside a big number", R"({"rootfs":"@ROOTFS@","ttl_ms":1e400,"x":01})", IJ, kAnyField},
                 pol);
}

TEST_CASE("request: the size limit follows the policy") {
  auto pol = policy();
  pol.max_request_bytes = 64;
  std::string json = expand(R"({"rootfs":"@ROOTFS@"})");
  REQUIRE(json.size() < 64);
  CHECK(parse_launch_request(json, pol).ok());
  json.insert(json.size() - 1, ",\"args\":[\"" + std::string(64, 'x') + "\"]");
  auto r = parse_launch_request(json, pol);
  REQUIRE_FALSE(r.ok());
  CHECK(code_name(r.error().code) == "too_large");
  CHECK(r.error().field.empty());
}

TEST_CASE("request: the contract's full example parses with every field as given") {
  const std::string json = expand(R"({
  "id": "job-42",
  "rootfs": "@ROOTFS@",
  "args": ["/bin/sleep", "infinity"],
  "env": ["LANG=C.UTF-8"],
  "cwd": "/",
  "user": {"uid": 0, "gid": 0},
  "hostname": "job-42",
  "mounts": [{"source": "@DATA@", "destination": "/data", "readonly": true}],
  "resources": {"cpus": 1.0, "memory_mb": 2048, "pids": 4096},
  "network": "none",
  "docker": {
    "enabled": true,
    "cgroup": "auto",
    "dockerd_args": [],
    "ready_timeout_ms": 30000
  },
  "labels": {"batch-job": "1234"},
  "socket_owner": {"uid": 1000, "gid": 1000}
}
)");
  auto r = parse_launch_request(json, policy());
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  const LaunchRequest& q = *r;
  CHECK(q.id == "job-42");
  CHECK(q.rootfs == dirs().rootfs);
  CHECK(q.args == std::vector<std::string>{"/bin/sleep", "infinity"});
  CHECK(q.env == std::vector<std::string>{"LANG=C.UTF-8"});
  CHECK(q.cwd == "/");
  CHECK(q.user.uid == 0);
  CHECK(q.user.gid == 0);
  CHECK(q.hostname == "job-42");
  REQUIRE(q.mounts.size() == 1);
  CHECK(q.mounts[0].source == dirs().data);
  CHECK(q.mounts[0].destination == "/data");
  CHECK(q.mounts[0].readonly);
  REQUIRE(q.resources.cpus.has_value());
  CHECK(*q.resources.cpus == doctest::Approx(1.0));
  CHECK(q.resources.memory_mb == std::optional<std::uint64_t>(2048));
  CHECK(q.resources.pids == std::optional<std::int64_t>(4096));
  CHECK(q.network == NetworkMode::none);
  CHECK(q.docker.enabled);
  CHECK(q.docker.cgroup == CgroupStrategy::auto_detect);
  CHECK(q.docker.dockerd_args.empty());
  CHECK(q.docker.ready_timeout_ms == std::optional<std::uint32_t>(30000));
  REQUIRE(q.labels.size() == 1);
  CHECK(q.labels[0].first == "batch-job");
  CHECK(q.labels[0].second == "1234");
  REQUIRE(q.socket_owner.has_value());
  CHECK(q.socket_owner->uid == 1000);
  CHECK(q.socket_owner->gid == 1000);
}

TEST_CASE("request: defaults for a minimal request") {
  auto r = parse_launch_request(expand(R"({"rootfs":"@ROOTFS@"})"), policy());
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  const LaunchRequest& q = *r;
  CHECK(q.id.empty());  // generated by the agent later
  CHECK(q.args.empty());
  CHECK(q.env.empty());
  CHECK(q.cwd == "/");
  CHECK(q.user.uid == 0);
  CHECK(q.user.gid == 0);
  CHECK(q.hostname.empty());
  CHECK(q.mounts.empty());
  CHECK_FALSE(q.resources.cpus.has_value());
  CHECK_FALSE(q.resources.memory_mb.has_value());
  CHECK_FALSE(q.resources.pids.has_value());
  CHECK(q.network == NetworkMode::none);
  CHECK_FALSE(q.docker.enabled);
  CHECK(q.docker.cgroup == CgroupStrategy::auto_detect);
  CHECK(q.docker.dockerd_args.empty());
  CHECK_FALSE(q.docker.ready_timeout_ms.has_value());
  CHECK(q.labels.empty());
  CHECK_FALSE(q.socket_owner.has_value());
}

TEST_CASE("request: accepted edge cases") {
  auto pol = policy();
  auto ok = [&](const std::string& json) {
    INFO("json: " << json);
    auto r = parse_launch_request(expand(json), pol);
    CHECK_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error().describe()));
    return r;
  };
  ok(R"({"rootfs":"@ROOTFS@"})" "\n");  // a spool file ends with a newline
  ok("{\"id\":\"" + std::string(63, 'a') + "\",\"rootfs\":\"@ROOTFS@\"}");  // longest id
  ok(R"({"id":"A9_.-z","rootfs":"@ROOTFS@"})");
  ok(R"({"id":"7","rootfs":"@ROOTFS@"})");
  // Reserved destinations are matched by component, not by string prefix.
  ok(R"({"rootfs":"@ROOTFS@","mounts":[{"source":"@DATA@","destination":"/process"},)"
     R"({"source":"@DATA@","destination":"/devices"},{"source":"@DATA@","destination":"/system"}]})");
  ok(R"({"rootfs":"@ROOTFS@","resources":{"cpus":0.01,"memory_mb":16,"pids":1}})");
  ok(R"({"rootfs":"@ROOTFS@","network":"host","hostname":"a.b-c"})");
  ok(R"({"rootfs":"@ROOTFS@","docker":{"enabled":true,"dockerd_args":["--debug","-D","--log-level=warn",)"
     R"("--storage-driver=vfs","--hosts-file=x","--mtu=1400"]}})");
  ok(R"({"rootfs":"@ROOTFS@","docker":{"enabled":true,"cgroup":"userns"},"socket_owner":{"uid":1,"gid":2}})");
  // Labels keep the order given.
  auto r = ok(R"({"rootfs":"@ROOTFS@","labels":{"z":"1","a":"2","team/owner":"x","m":""}})");
  REQUIRE(r.ok());
  REQUIRE(r->labels.size() == 4);
  CHECK(r->labels[0].first == "z");
  CHECK(r->labels[1].first == "a");
  CHECK(r->labels[2].first == "team/owner");
  CHECK(r->labels[3].first == "m");
  CHECK(r->labels[3].second.empty());
}

// ---- Host path policy, with real directories ----

namespace {
void check_policy_rejects(const std::string& json, const RequestPolicy& pol, const std::string& field,
                          const std::string& message) {
  check_rejected({"policy", json, IR, field, message}, pol);
}
}  // namespace

TEST_CASE("request policy: rootfs outside the allowed prefixes") {
  check_policy_rejects(R"({"rootfs":"@OUTSIDE@/rootfs"})", policy(), "/rootfs",
                       "is not under an allowed host prefix");
}

TEST_CASE("request policy: a directory sharing only a string prefix with the allowed one") {
  check_policy_rejects(R"({"rootfs":"@IMAGES@-evil"})", policy(), "/rootfs",
                       "is not under an allowed host prefix");
}

TEST_CASE("request policy: rootfs that is a file") {
  check_policy_rejects(R"({"rootfs":"@IMAGES@/file.txt"})", policy(), "/rootfs", "must be a directory");
}

TEST_CASE("request policy: rootfs that does not exist") {
  check_policy_rejects(R"({"rootfs":"@IMAGES@/missing"})", policy(), "/rootfs", "cannot be resolved");
}

TEST_CASE("request policy: a symlink inside the prefix pointing outside is rejected") {
  check_policy_rejects(R"({"rootfs":"@IMAGES@/escape"})", policy(), "/rootfs",
                       "is not under an allowed host prefix");
  check_policy_rejects(R"({"rootfs":"@IMAGES@/escape/rootfs"})", policy(), "/rootfs",
                       "is not under an allowed host prefix");
  check_policy_rejects(R"({"rootfs":"@ROOTFS@","mounts":[{"source":"@IMAGES@/escape","destination":"/d"}]})",
                       policy(), "/mounts/0/source", "is not under an allowed host prefix");
}

TEST_CASE("request policy: a symlink inside the prefix pointing inside resolves to its target") {
  auto r = parse_launch_request(
      expand(R"({"rootfs":"@IMAGES@/alias","mounts":[{"source":"@IMAGES@/alias","destination":"/d"}]})"),
      policy());
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  CHECK(r->rootfs == dirs().rootfs);
  CHECK(r->mounts[0].source == dirs().rootfs);
}

TEST_CASE("request policy: a mount source outside the prefixes") {
  check_policy_rejects(
      R"({"rootfs":"@ROOTFS@","mounts":[{"source":"@DATA@","destination":"/a"},{"source":"@OUTSIDE@","destination":"/b"}]})",
      policy(), "/mounts/1/source", "is not under an allowed host prefix");
  check_policy_rejects(R"({"rootfs":"@ROOTFS@","mounts":[{"source":"@IMAGES@/nope","destination":"/a"}]})",
                       policy(), "/mounts/0/source", "cannot be resolved");
}

TEST_CASE("request policy: no allowed prefixes allows nothing") {
  RequestPolicy pol;
  check_policy_rejects(R"({"rootfs":"@ROOTFS@"})", pol, "/rootfs", "none configured");
}

TEST_CASE("request policy: host-bind is refused unless allow_host_cgroup_bind") {
  const std::string json = R"({"rootfs":"@ROOTFS@","docker":{"enabled":true,"cgroup":"host-bind"}})";
  auto pol = policy();
  check_policy_rejects(json, pol, "/docker/cgroup", "allow_host_cgroup_bind");
  pol.allow_host_cgroup_bind = true;
  auto r = parse_launch_request(expand(json), pol);
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  CHECK(r->docker.cgroup == CgroupStrategy::host_bind);
}

TEST_CASE("request policy: egress may narrow the ceiling, never widen it") {
  auto pol = policy();
  // The default ceiling denies private ranges: allowing one is an error, not a silent no-op.
  check_policy_rejects(R"({"rootfs":"@ROOTFS@","network":"bridge","egress":{"allow":["1.1.1.0/24","10.99.0.0/24"]}})",
                       pol, "/egress/allow/1", "outside what this agent allows (network.egress_ceiling)");
  // Overlapping the ceiling is fine (the contract's own example): the ceiling still applies.
  auto r = parse_launch_request(expand(R"({"rootfs":"@ROOTFS@","network":"bridge","egress":{"allow":["0.0.0.0/0"],"deny":["169.254.0.0/16"]}})"), pol);
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  REQUIRE(r->egress);
  CHECK(r->egress->allow.size() == 1);
  CHECK(r->egress->deny[0].to_string() == "169.254.0.0/16");
  // An operator who lists the range lets requests allow it.
  pol.egress_ceiling.allow.push_back(*parse_cidr("10.99.0.0/24"));
  auto opened = parse_launch_request(expand(R"({"rootfs":"@ROOTFS@","network":"bridge","egress":{"allow":["10.99.0.0/24"]}})"), pol);
  CHECK_MESSAGE(opened.ok(), opened.error().describe());
}

TEST_CASE("request: bridge with ports and egress parses, and survives a record round trip") {
  auto r = parse_launch_request(expand(R"({"rootfs":"@ROOTFS@","network":"bridge",
    "ports":[{"host_port":8080,"sandbox_port":80},{"host_port":5353,"sandbox_port":53,"protocol":"udp","host_ip":"127.0.0.1"}],
    "egress":{"allow":["0.0.0.0/0"],"deny":["8.8.8.8"]}})"), policy());
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  CHECK(r->network == NetworkMode::bridge);
  REQUIRE(r->ports.size() == 2);
  CHECK(r->ports[0] == PortMapping{8080, 80, "tcp", ""});
  CHECK(r->ports[1] == PortMapping{5353, 53, "udp", "127.0.0.1"});
  CHECK(r->egress->deny[0].to_string() == "8.8.8.8/32");
}

TEST_CASE("request: validate_request and apply_policy for requests built in code") {
  LaunchRequest q;
  q.rootfs = dirs().images + "/alias";
  CHECK(validate_request(q).ok());
  q.id = "-x";
  auto s = validate_request(q);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().field == "/id");
  q.id = "ok";
  q.mounts.push_back({dirs().data, "/sys/fs/cgroup", false});
  s = validate_request(q);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().field == "/mounts/0/destination");
  q.mounts[0].destination = "/data";
  REQUIRE(validate_request(q).ok());
  auto p = apply_policy(q, policy());
  REQUIRE_MESSAGE(p.ok(), p.error().describe());
  CHECK(q.rootfs == dirs().rootfs);  // resolved in place
  q.rootfs = dirs().outside;
  CHECK_FALSE(apply_policy(q, policy()).ok());
}

TEST_CASE("request: is_valid_sandbox_id") {
  CHECK(is_valid_sandbox_id("a"));
  CHECK(is_valid_sandbox_id("job-42"));
  CHECK(is_valid_sandbox_id("A.b_c-9"));
  CHECK(is_valid_sandbox_id(std::string(63, 'x')));
  CHECK_FALSE(is_valid_sandbox_id(""));
  CHECK_FALSE(is_valid_sandbox_id(std::string(64, 'x')));
  CHECK_FALSE(is_valid_sandbox_id("-a"));
  CHECK_FALSE(is_valid_sandbox_id(".a"));
  CHECK_FALSE(is_valid_sandbox_id("a b"));
  CHECK_FALSE(is_valid_sandbox_id("a/b"));
}

TEST_CASE("request: is_reserved_dockerd_flag") {
  for (const char* f : {"-H", "-H=unix:///x", "--host", "--host=tcp://0.0.0.0:2375", "-G", "--group=docker",
                        "--iptables", "--iptables=true", "--ip6tables=true", "-b", "--bridge=docker0",
                        "--bip=10.0.0.1/24", "--data-root", "--data-root=/x", "--exec-root=/x", "-p",
                        "--pidfile=/x", "-g", "--graph=/x", "--userns-remap=default", "-DH", "-Dp"}) {
    INFO("flag: " << f);
    CHECK(is_reserved_dockerd_flag(f));
  }
  for (const char* f : {"--debug", "-D", "--log-level=debug", "-l", "--storage-driver=vfs", "--mtu=1400",
                        "--hosts", "--host-gateway-ip=1.2.3.4", "--experimental", "unix:///x", "-", ""}) {
    INFO("flag: " << f);
    CHECK_FALSE(is_reserved_dockerd_flag(f));
  }
}

TEST_CASE("request: a request naming a pool carries only the claim's fields") {
  auto pol = policy();
  auto r = parse_launch_request(R"({"pool":"small","id":"job-1","labels":{"a":"b"},"ttl_ms":5000,"socket_owner":{"uid":1,"gid":2}})", pol);
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  CHECK(r->pool == "small");
  CHECK(r->id == "job-1");
  CHECK(r->ttl_ms == 5000u);
  CHECK(r->rootfs.empty());
  for (auto [text, field] : {std::pair{R"({"pool":"small","rootfs":"/x"})", "/rootfs"},
                             std::pair{R"({"pool":"small","docker":{"enabled":true}})", "/docker"},
                             std::pair{R"({"pool":"","id":"x"})", "/pool"},
                             std::pair{R"({"pool":"a b"})", "/pool"},
                             std::pair{R"({"pool":"small","id":"-bad"})", "/id"}}) {
    auto bad = parse_launch_request(text, pol);
    INFO(text);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().field == field);
  }
  CHECK(is_valid_pool_name("docker-small.v2"));
  CHECK_FALSE(is_valid_pool_name(std::string(33, 'a')));
  CHECK_FALSE(is_valid_pool_name(".hidden"));
}
