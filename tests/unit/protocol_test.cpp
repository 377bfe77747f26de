// The socket protocol: parsing NDJSON request lines and formatting replies (agent/protocol.hpp).
#include <doctest/doctest.h>
#include <simdjson.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <variant>
#include <vector>

#include "protocol.hpp"

namespace fs = std::filesystem;
using namespace sandbox_agent;
using namespace sandbox_agent::protocol;

namespace {

// A canonical scratch directory holding images/rootfs, the allowed prefix.
struct Scratch {
  std::string base, rootfs;
  Scratch() {
    std::string tmpl = (fs::temp_directory_path() / "protocol_test.XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    base = fs::canonical(tmpl).string();
    rootfs = base + "/images/rootfs";
    fs::create_directories(rootfs);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }
};

const Scratch& scratch() {
  static Scratch s;
  return s;
}

RequestPolicy policy() {
  RequestPolicy p;
  p.allowed_host_prefixes = {scratch().base + "/images"};
  return p;
}

std::string request_json() { return R"({"rootfs":")" + scratch().rootfs + R"("})"; }

Message parse_ok(const std::string& line) {
  INFO("line: " << line);
  auto r = parse_line(line, policy());
  if (auto* e = std::get_if<ParseError>(&r)) FAIL("unexpected error: " << e->error.describe());
  return std::get<Message>(r);
}

ParseError parse_err(const std::string& line) {
  INFO("line: " << line);
  auto r = parse_line(line, policy());
  REQUIRE_MESSAGE(std::holds_alternative<ParseError>(r), "the line was accepted");
  return std::get<ParseError>(r);
}

std::string code(const Error& e) { return std::string(to_string(e.code)); }

void check_err(const std::string& line, const std::string& expected_code, const std::string& field,
               const std::string& message = {}) {
  INFO("line: " << line);
  auto e = parse_err(line);
  INFO("got: " << e.error.describe());
  CHECK(code(e.error) == expected_code);
  CHECK(e.error.field == field);
  if (!message.empty()) CHECK(e.error.message.find(message) != std::string::npos);
}

bool tag_is(const Tag& t, const std::string& s) {
  auto* v = std::get_if<std::string>(&t);
  return v && *v == s;
}
bool tag_is(const Tag& t, std::int64_t n) {
  auto* v = std::get_if<std::int64_t>(&t);
  return v && *v == n;
}
bool no_tag(const Tag& t) { return std::holds_alternative<std::monostate>(t); }

// A reply line parsed back.
struct Reply {
  std::string text;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  explicit Reply(std::string line) : text(std::move(line)) {
    REQUIRE_MESSAGE(!text.empty(), "empty reply");
    CHECK(text.back() == '\n');
    CHECK(text.find('\n') == text.size() - 1);  // exactly one line
    auto err = parser.parse(text).get(root);
    REQUIRE_MESSAGE(!err, "reply is not JSON: " << text);
    simdjson::dom::object obj;
    REQUIRE_MESSAGE(!root.get_object().get(obj), "reply is not an object: " << text);
  }
  bool has(const std::string& p) const {
    simdjson::dom::element e;
    return !root.at_pointer(p).get(e);
  }
  simdjson::dom::element at(const std::string& p) const {
    simdjson::dom::element e;
    REQUIRE_MESSAGE(!root.at_pointer(p).get(e), "no " << p << " in " << text);
    return e;
  }
  std::string str(const std::string& p) const {
    std::string_view s;
    REQUIRE_MESSAGE(!at(p).get_string().get(s), p << " is not a string in " << text);
    return std::string(s);
  }
  std::int64_t num(const std::string& p) const {
    std::int64_t n = 0;
    REQUIRE_MESSAGE(!at(p).get_int64().get(n), p << " is not an integer in " << text);
    return n;
  }
  double dbl(const std::string& p) const {
    double d = 0;
    REQUIRE_MESSAGE(!at(p).get_double().get(d), p << " is not a number in " << text);
    return d;
  }
  bool boolean(const std::string& p) const {
    bool b = false;
    REQUIRE_MESSAGE(!at(p).get_bool().get(b), p << " is not a boolean in " << text);
    return b;
  }
  std::size_t size(const std::string& p) const {
    simdjson::dom::array a;
    REQUIRE_MESSAGE(!at(p).get_array().get(a), p << " is not an array in " << text);
    return a.size();
  }
};

SandboxStatus sample_status(const std::string& id, SandboxState state) {
  SandboxStatus s;
  s.id = id;
  s.state = state;
  s.labels = {{"batch-job", "1234"}};
  s.created_at_us = 1795942069123456;
  return s;
}

}  // namespace

// ---- parse_line: each op and its arguments ----

TEST_CASE("protocol: launch") {
  auto m = parse_ok(R"({"op":"launch","request":)" + request_json() + "}");
  CHECK(m.op == Op::launch);
  CHECK(m.request.rootfs == scratch().rootfs);
  CHECK_FALSE(m.wait_ready);
  CHECK(no_tag(m.tag));

  auto w = parse_ok(R"({"op":"launch","wait":"ready","request":)" + request_json() + "}");
  CHECK(w.op == Op::launch);
  CHECK(w.wait_ready);

  // The embedded request gets the full validation and the policy.
  auto full = parse_ok(R"({"op":"launch","request":{"id":"job-1","rootfs":")" + scratch().base +
                       R"(/images/rootfs","args":["/bin/true"],"docker":{"enabled":true,"cgroup":"userns"}}})");
  CHECK(full.request.id == "job-1");
  CHECK(full.request.args == std::vector<std::string>{"/bin/true"});
  CHECK(full.request.docker.enabled);
  CHECK(full.request.docker.cgroup == CgroupStrategy::userns);
}

TEST_CASE("protocol: launch argument errors") {
  check_err(R"({"op":"launch"})", "invalid_request", "/request", "is required");
  check_err(R"({"op":"launch","wait":"ready"})", "invalid_request", "/request", "is required");
  check_err(R"({"op":"launch","wait":"started","request":)" + request_json() + "}", "invalid_request", "/wait",
            "must be \"ready\"");
  check_err(R"({"op":"launch","wait":true,"request":)" + request_json() + "}", "invalid_request", "/wait");
}

TEST_CASE("protocol: errors inside the embedded request point into the request") {
  // As for a spool file: pointers are relative to the request object (protocol.cpp's choice;
  // the reply's field is "/rootfs", not "/request/rootfs").
  check_err(R"({"op":"launch","request":{"rootfs":"relative"}})", "invalid_request", "/rootfs", "absolute path");
  check_err(R"({"op":"launch","request":{"rootfs":"/"}})", "invalid_request", "/rootfs", "allowed host prefix");
  check_err(R"({"op":"launch","request":{"rootfs":"/x","bogus":1}})", "invalid_request", "/bogus", "unknown field");
  check_err(R"({"op":"launch","request":{"rootfs":"/x","docker":{"enabled":true,"cgroup":"cgroupfs"}}})",
            "invalid_request", "/docker/cgroup", "must be one of auto, sandbox, userns, host-bind, none");
  check_err(R"({"op":"launch","request":{"args":["/bin/true"]}})", "invalid_request", "/rootfs", "is required");
  // The request itself not being an object is an error of the line's member.
  check_err(R"({"op":"launch","request":"job.json"})", "invalid_request", "/request", "must be an object");
  check_err(R"({"op":"launch","request":[]})", "invalid_request", "/request", "must be an object");
}

TEST_CASE("protocol: the request size limit applies to a request on the socket too") {
  auto pol = policy();
  pol.max_request_bytes = 1024;
  std::string big = R"({"op":"launch","request":{"rootfs":")" + scratch().rootfs + R"(","args":[")" +
                    std::string(2000, 'a') + R"("]}})";
  auto r = parse_line(big, pol);
  REQUIRE(std::holds_alternative<ParseError>(r));
  CHECK(code(std::get<ParseError>(r).error) == "too_large");
}

TEST_CASE("protocol: status and stop") {
  auto s = parse_ok(R"({"op":"status","id":"job-42"})");
  CHECK(s.op == Op::status);
  CHECK(s.id == "job-42");

  auto stop = parse_ok(R"({"op":"stop","id":"job-42"})");
  CHECK(stop.op == Op::stop);
  CHECK(stop.id == "job-42");
  CHECK(stop.timeout_ms == 10000u);  // the contract's default
  CHECK(parse_ok(R"({"op":"stop","id":"job-42","timeout_ms":2500})").timeout_ms == 2500u);
  CHECK(parse_ok(R"({"op":"stop","timeout_ms":0,"id":"j"})").timeout_ms == 0u);

  check_err(R"({"op":"status"})", "invalid_request", "/id", "is required");
  check_err(R"({"op":"stop","timeout_ms":5})", "invalid_request", "/id", "is required");
  check_err(R"({"op":"status","id":"bad id"})", "invalid_request", "/id", "not a valid sandbox id");
  check_err(R"({"op":"status","id":""})", "invalid_request", "/id", "not a valid sandbox id");
  check_err(R"({"op":"stop","id":"-x"})", "invalid_request", "/id", "not a valid sandbox id");
  check_err(R"({"op":"status","id":")" + std::string(64, 'a') + "\"}", "invalid_request", "/id");
  check_err(R"({"op":"status","id":42})", "invalid_request", "/id", "must be a string");
  check_err(R"({"op":"stop","id":"j","timeout_ms":"5"})", "invalid_request", "/timeout_ms", "must be an integer");
  check_err(R"({"op":"stop","id":"j","timeout_ms":-1})", "invalid_request", "/timeout_ms");
  check_err(R"({"op":"stop","id":"j","timeout_ms":3600001})", "invalid_request", "/timeout_ms");
}

TEST_CASE("protocol: extend") {
  auto e = parse_ok(R"({"op":"extend","id":"job-42","ttl_ms":60000})");
  CHECK(e.op == Op::extend);
  CHECK(e.id == "job-42");
  CHECK(e.ttl_ms == 60000u);
  check_err(R"({"op":"extend","id":"j"})", "invalid_request", "/ttl_ms", "is required");
  check_err(R"({"op":"extend","ttl_ms":5})", "invalid_request", "/id", "is required");
  check_err(R"({"op":"extend","id":"j","ttl_ms":0})", "invalid_request", "/ttl_ms");
  check_err(R"({"op":"extend","id":"j","ttl_ms":5,"timeout_ms":1})", "invalid_request", "/timeout_ms",
            "is not an argument of this op");
  Reply r(reply_extend("j", 1795942069123456, Tag{std::string("E")}));
  CHECK(r.boolean("/ok"));
  CHECK(r.str("/id") == "j");
  CHECK(r.str("/ttl_deadline") == format_time(1795942069123456));
  CHECK(r.str("/tag") == "E");
}

TEST_CASE("protocol: exec") {
  auto e = parse_ok(R"({"op":"exec","id":"j","args":["sh","-c","x"],"env":["A=1"],"cwd":"/w","user":{"uid":5,"gid":6},"tty":true,"timeout_ms":900})");
  CHECK(e.op == Op::exec);
  CHECK(e.exec.args == std::vector<std::string>{"sh", "-c", "x"});
  CHECK(e.exec.env == std::vector<std::string>{"A=1"});
  CHECK(e.exec.cwd == "/w");
  REQUIRE(e.exec.user);
  CHECK((e.exec.user->uid == 5 && e.exec.user->gid == 6));
  CHECK(e.exec.tty);
  CHECK(e.exec.timeout_ms == 900u);
  CHECK(passed_fds(Op::exec) == 3);
  auto plain = parse_ok(R"({"op":"exec","id":"j","args":["true"]})");
  CHECK((plain.exec.cwd.empty() && !plain.exec.user && !plain.exec.tty && plain.exec.timeout_ms == 0));
  check_err(R"({"op":"exec","args":["true"]})", "invalid_request", "/id", "is required");
  check_err(R"({"op":"exec","id":"j"})", "invalid_request", "/args", "is required");
  check_err(R"({"op":"exec","id":"j","args":[]})", "invalid_request", "/args", "is required");
  check_err(R"({"op":"exec","id":"j","args":[""]})", "invalid_request", "/args/0", "must not be empty");
  check_err(R"({"op":"exec","id":"j","args":["a"],"env":["=x"]})", "invalid_request", "/env/0", "NAME=VALUE");
  check_err(R"({"op":"exec","id":"j","args":["a"],"cwd":"/a/../b"})", "invalid_request", "/cwd");
  check_err(R"({"op":"exec","id":"j","args":["a"],"user":{"uid":1}})", "invalid_request", "/user/gid");
  check_err(R"({"op":"exec","id":"j","args":["a"],"timeout_ms":0})", "invalid_request", "/timeout_ms");
  check_err(R"({"op":"exec","id":"j","args":["a"],"source":"main"})", "invalid_request", "/source",
            "is not an argument of this op");
  check_err(R"({"op":"exec","id":"j","args":["a\u0000b"]})", "invalid_request", "/args/0", "NUL");
  Reply started(reply_exec_started("exec-1", Tag{std::int64_t{3}}));
  CHECK(started.str("/exec_id") == "exec-1");
  ExecOutcome killed{137, 9, "timeout"};
  Reply ended(reply_exec_ended("exec-1", killed, Tag{}));
  CHECK(ended.num("/exit_code") == 137);
  CHECK(ended.num("/signal") == 9);
  CHECK(ended.str("/reason") == "timeout");
  Reply own(reply_exec_ended("exec-2", ExecOutcome{3, 0, ""}, Tag{}));
  CHECK(own.num("/exit_code") == 3);
  CHECK_FALSE(own.has("/signal"));
  CHECK_FALSE(own.has("/reason"));
}

TEST_CASE("protocol: cp") {
  auto in = parse_ok(R"({"op":"cp","id":"j","direction":"in","path":"/data/f","mode":384,"timeout_ms":5})");
  CHECK(in.op == Op::cp);
  CHECK(in.copy.direction == CopyDirection::in);
  CHECK(in.copy.path == "/data/f");
  CHECK(in.copy.mode == 0600u);
  CHECK(in.copy.timeout_ms == 5u);
  CHECK(passed_fds(Op::cp) == 1);
  auto out = parse_ok(R"({"op":"cp","id":"j","direction":"out","path":"/f"})");
  CHECK(out.copy.direction == CopyDirection::out);
  CHECK(out.copy.timeout_ms == 600000u);
  check_err(R"({"op":"cp","id":"j","path":"/f"})", "invalid_request", "/direction", "is required");
  check_err(R"({"op":"cp","id":"j","direction":"sideways","path":"/f"})", "invalid_request", "/direction");
  check_err(R"({"op":"cp","id":"j","direction":"in"})", "invalid_request", "/path", "is required");
  for (auto bad : {"relative", "/", "/a/./b", "/proc/1/mem", "/dev/sda", "/.sandbox-agent/init", "/sys"})
    check_err(std::string(R"({"op":"cp","id":"j","direction":"in","path":")") + bad + "\"}", "invalid_request", "/path");
  check_err(R"({"op":"cp","id":"j","direction":"out","path":"/f","mode":420})", "invalid_request", "/mode");
  check_err(R"({"op":"cp","id":"j","direction":"in","path":"/f","mode":4096})", "invalid_request", "/mode");
  Reply copied(reply_copied("j", 1u << 31, Tag{}));
  CHECK(copied.num("/bytes") == (1ll << 31));
  CHECK(passed_fds(Op::status) == 0);
}

TEST_CASE("protocol: pools reply") {
  CHECK(parse_ok(R"({"op":"pools"})").op == Op::pools);
  check_err(R"({"op":"pools","id":"x"})", "invalid_request", "/id", "is not an argument of this op");
  std::vector<PoolInfo> all{{"small", 4, 3, 1, 0, std::nullopt, ""},
                            {"broken", 2, 0, 1, 3, 1795942069123456, "pool-broken-1 failed (start_failed): x"}};
  Reply r(reply_pools(all, Tag{}));
  CHECK(r.str("/pools/0/name") == "small");
  CHECK(r.num("/pools/0/size") == 4);
  CHECK(r.num("/pools/0/ready") == 3);
  CHECK(r.num("/pools/0/warming") == 1);
  CHECK_FALSE(r.has("/pools/0/retry_at"));
  CHECK(r.num("/pools/1/failed_in_a_row") == 3);
  CHECK(r.str("/pools/1/retry_at") == format_time(1795942069123456));
  CHECK(r.str("/pools/1/last_error").find("start_failed") != std::string::npos);
}

TEST_CASE("protocol: ops without arguments") {
  CHECK(parse_ok(R"({"op":"list"})").op == Op::list);
  CHECK(parse_ok(R"({"op":"watch"})").op == Op::watch);
  CHECK(parse_ok(R"({"op":"stats"})").op == Op::stats);
  CHECK(parse_ok(R"({"op":"version"})").op == Op::version);
  CHECK(parse_ok(R"(  {"tag":"t","op":"list"}  )").op == Op::list);  // member order and spaces
}

TEST_CASE("protocol: missing and unknown ops") {
  check_err(R"({})", "invalid_request", "/op", "is required");
  check_err(R"({"id":"job-1"})", "invalid_request", "/op", "is required");
  check_err(R"({"op":"frobnicate"})", "unknown_op", "/op", "frobnicate");
  check_err(R"({"op":"LIST"})", "unknown_op", "/op");
  check_err(R"({"op":"frobnicate","id":"x"})", "unknown_op", "/op");
  check_err(R"({"op":1})", "invalid_request", "/op", "must be a string");
  check_err(R"({"op":null})", "invalid_request", "/op");
}

TEST_CASE("protocol: arguments that do not belong to the op") {
  check_err(R"({"op":"list","id":"job-1"})", "invalid_request", "/id", "not an argument of this op");
  check_err(R"({"op":"version","request":)" + request_json() + "}", "invalid_request", "/request",
            "not an argument of this op");
  check_err(R"({"op":"watch","wait":"ready"})", "invalid_request", "/wait", "not an argument of this op");
  check_err(R"({"op":"stats","timeout_ms":5})", "invalid_request", "/timeout_ms", "not an argument of this op");
  check_err(R"({"op":"status","id":"j","timeout_ms":5})", "invalid_request", "/timeout_ms",
            "not an argument of this op");
  check_err(R"({"op":"stop","id":"j","wait":"ready"})", "invalid_request", "/wait", "not an argument of this op");
  check_err(R"({"op":"launch","id":"j","request":)" + request_json() + "}", "invalid_request", "/id",
            "not an argument of this op");
  check_err(R"({"op":"list","bogus":1})", "invalid_request", "/bogus", "unknown field");
  check_err(R"({"op":"list","op":"stats"})", "invalid_request", "/op", "duplicate key");
}

TEST_CASE("protocol: lines that are not one JSON object") {
  check_err("", "invalid_json", "");
  check_err("hello", "invalid_json", "");
  check_err(R"({"op":"list"} {"op":"list"})", "invalid_json", "");
  check_err(R"({"op":"list")", "invalid_json", "");
  check_err(R"(["list"])", "invalid_request", "", "must be a JSON object");
}

// ---- Tags ----

TEST_CASE("protocol: tags are echoed as given, strings and integers") {
  CHECK(tag_is(parse_ok(R"({"op":"version","tag":"abc"})").tag, std::string("abc")));
  CHECK(tag_is(parse_ok(R"({"op":"version","tag":""})").tag, std::string("")));
  CHECK(tag_is(parse_ok(R"({"tag":42,"op":"list"})").tag, std::int64_t{42}));
  CHECK(tag_is(parse_ok(R"({"op":"list","tag":-7})").tag, std::int64_t{-7}));
  CHECK(tag_is(parse_ok(R"({"op":"list","tag":9007199254740993})").tag, std::int64_t{9007199254740993}));
  CHECK(no_tag(parse_ok(R"({"op":"list"})").tag));
  check_err(R"({"op":"list","tag":1.5})", "invalid_request", "/tag", "string or an integer");
  check_err(R"({"op":"list","tag":{"a":1}})", "invalid_request", "/tag", "string or an integer");
  check_err(R"({"op":"list","tag":["a"]})", "invalid_request", "/tag");
  check_err(R"({"op":"list","tag":null})", "invalid_request", "/tag");
}

TEST_CASE("protocol: error replies carry the tag whether it comes before or after the error") {
  SUBCASE("tag before the error") {
    auto e = parse_err(R"({"tag":"t1","op":"nope"})");
    CHECK(code(e.error) == "unknown_op");
    CHECK(tag_is(e.tag, std::string("t1")));
  }
  SUBCASE("tag after the error") {
    auto e = parse_err(R"({"op":"nope","tag":"t2"})");
    CHECK(code(e.error) == "unknown_op");
    CHECK(tag_is(e.tag, std::string("t2")));
  }
  SUBCASE("integer tag after a request error") {
    auto e = parse_err(R"({"op":"launch","request":{"rootfs":"rel"},"tag":9})");
    CHECK(code(e.error) == "invalid_request");
    CHECK(tag_is(e.tag, std::int64_t{9}));
  }
  SUBCASE("integer tag before a request error") {
    auto e = parse_err(R"({"tag":-3,"op":"launch","request":{"rootfs":"rel"}})");
    CHECK(tag_is(e.tag, std::int64_t{-3}));
  }
  SUBCASE("tag with a semantic error found after parsing") {
    auto e = parse_err(R"({"op":"status","tag":"t3"})");
    CHECK(e.error.field == "/id");
    CHECK(tag_is(e.tag, std::string("t3")));
    auto m = parse_err(R"({"tag":"t4","id":"x"})");
    CHECK(m.error.field == "/op");
    CHECK(tag_is(m.tag, std::string("t4")));
  }
  SUBCASE("tag after an argument error") {
    auto e = parse_err(R"({"op":"list","id":"x","tag":"t5"})");
    CHECK(e.error.field == "/id");
    CHECK(tag_is(e.tag, std::string("t5")));
  }
  SUBCASE("a line cut short after its tag still echoes the tag") {
    auto e = parse_err(R"({"op":"list","tag":"t6")");
    CHECK(code(e.error) == "invalid_json");
    CHECK(tag_is(e.tag, std::string("t6")));
  }
  SUBCASE("no tag when the line is not JSON") {
    auto e = parse_err(R"(op=list tag="t7")");
    CHECK(code(e.error) == "invalid_json");
    CHECK(no_tag(e.tag));
  }
  SUBCASE("no tag when the tag itself is bad") {
    auto e = parse_err(R"({"op":"list","tag":2.5})");
    CHECK(no_tag(e.tag));
  }
  SUBCASE("no tag when there is none") {
    CHECK(no_tag(parse_err(R"({"op":"nope"})").tag));
  }
}

// ---- Replies ----

TEST_CASE("protocol: error replies") {
  {
    Reply r(reply_error(make_error(ErrorCode::invalid_request, "must be one of auto, sandbox, userns, host-bind, none",
                                   "/docker/cgroup"),
                        Tag{std::string("t1")}));
    CHECK_FALSE(r.boolean("/ok"));
    CHECK(r.str("/error/code") == "invalid_request");
    CHECK(r.str("/error/message") == "must be one of auto, sandbox, userns, host-bind, none");
    CHECK(r.str("/error/field") == "/docker/cgroup");
    CHECK(r.str("/tag") == "t1");
  }
  {
    Reply r(reply_error(make_error(ErrorCode::too_large, "line too long"), Tag{std::int64_t{7}}));
    CHECK_FALSE(r.boolean("/ok"));
    CHECK(r.str("/error/code") == "too_large");
    CHECK_FALSE(r.has("/error/field"));  // optional: absent when no field is at fault
    CHECK(r.num("/tag") == 7);
  }
  {
    Reply r(reply_error(make_error(ErrorCode::not_found, "no sandbox \"x\"\nsecond line\t\x01"), {}));
    CHECK(r.str("/error/code") == "not_found");
    CHECK(r.str("/error/message") == "no sandbox \"x\"\nsecond line\t\x01");
    CHECK_FALSE(r.has("/tag"));
  }
  {
    Reply r(reply_error(make_error(ErrorCode::internal, "bad bytes \xff\xfe here"), {}));
    CHECK(r.str("/error/message").find("here") != std::string::npos);  // still valid JSON (sanitised)
  }
  for (auto c : {ErrorCode::invalid_json, ErrorCode::invalid_request, ErrorCode::unknown_op, ErrorCode::not_found,
                 ErrorCode::exists, ErrorCode::forbidden, ErrorCode::too_large, ErrorCode::overloaded,
                 ErrorCode::internal}) {
    Reply r(reply_error(make_error(c, "m"), {}));
    CHECK(r.str("/error/code") == std::string(to_string(c)));
  }
}

TEST_CASE("protocol: an error reply for a parse error, end to end") {
  auto e = parse_err(R"({"op":"launch","request":{"rootfs":"rel"},"tag":"abc"})");
  Reply r(reply_error(e.error, e.tag));
  CHECK_FALSE(r.boolean("/ok"));
  CHECK(r.str("/error/code") == "invalid_request");
  CHECK(r.str("/error/field").ends_with("/rootfs"));
  CHECK(r.str("/tag") == "abc");
}

TEST_CASE("protocol: launch, stop, ok and version replies") {
  {
    Reply r(reply_launched("job-42", SandboxState::accepted, Tag{std::string("L")}));
    CHECK(r.boolean("/ok"));
    CHECK(r.str("/id") == "job-42");
    CHECK(r.str("/state") == "accepted");
    CHECK(r.str("/tag") == "L");
  }
  {
    Reply r(reply_stop("job-42", SandboxState::stopping, {}));
    CHECK(r.boolean("/ok"));
    CHECK(r.str("/id") == "job-42");
    CHECK(r.str("/state") == "stopping");
    CHECK_FALSE(r.has("/tag"));
  }
  {
    CHECK(reply_ok({}) == "{\"ok\":true}\n");
    Reply r(reply_ok(Tag{std::int64_t{3}}));
    CHECK(r.boolean("/ok"));
    CHECK(r.num("/tag") == 3);
  }
  {
    Reply r(reply_version("0.1.0", {}));
    CHECK(r.boolean("/ok"));
    CHECK(r.str("/version") == "0.1.0");
  }
}

TEST_CASE("protocol: status, list and final launch replies") {
  auto ready = sample_status("job-42", SandboxState::ready);
  ready.ready_at_us = ready.created_at_us + 900000;
  ready.docker_socket = "/var/lib/sandbox-agent/sockets/job-42/docker.sock";
  ready.timings.create_ms = 131;
  ready.timings.start_ms = 41;
  ready.timings.ready_ms = 900;
  {
    Reply r(reply_status(ready, Tag{std::string("s")}));
    CHECK(r.boolean("/ok"));
    CHECK(r.str("/sandbox/id") == "job-42");
    CHECK(r.str("/sandbox/state") == "ready");
    CHECK(r.str("/sandbox/labels/batch-job") == "1234");
    CHECK(r.str("/sandbox/created_at") == "2026-11-29T08:47:49.123456Z");
    CHECK(r.str("/sandbox/ready_at") == "2026-11-29T08:47:50.023456Z");
    CHECK(r.str("/sandbox/docker_socket") == ready.docker_socket);
    CHECK(r.num("/sandbox/timings/ready_ms") == 900);
    CHECK_FALSE(r.has("/sandbox/reason"));
    CHECK(r.str("/tag") == "s");
  }
  {
    auto failed = sample_status("job-43", SandboxState::failed);
    failed.reason = std::string(reason::exited);
    failed.exit_code = 3;
    Reply r(reply_list({ready, failed}, {}));
    CHECK(r.boolean("/ok"));
    CHECK(r.size("/sandboxes") == 2);
    CHECK(r.str("/sandboxes/0/id") == "job-42");
    CHECK(r.str("/sandboxes/1/state") == "failed");
    CHECK(r.str("/sandboxes/1/reason") == "exited");
    CHECK(r.num("/sandboxes/1/exit_code") == 3);
  }
  {
    Reply r(reply_list({}, Tag{std::int64_t{1}}));
    CHECK(r.size("/sandboxes") == 0);
    CHECK(r.num("/tag") == 1);
  }
  {
    Reply r(reply_launch_final(ready, {}));
    CHECK(r.boolean("/ok"));
    CHECK(r.str("/id") == "job-42");
    CHECK(r.str("/state") == "ready");
    CHECK(r.str("/sandbox/state") == "ready");
    CHECK(r.str("/sandbox/docker_socket") == ready.docker_socket);
  }
}

TEST_CASE("protocol: stats reply") {
  Stats s;
  s.accepted = 10;
  s.ready = 7;
  s.failed = 2;
  s.stopped = 1;
  s.in_flight = 7;
  s.runsc_queued = 3;
  s.samples = 7;
  s.p50 = 850.5;
  s.p90 = 900;
  s.p99 = 1100;
  s.max = 1200;
  Reply r(reply_stats(s, Tag{std::string("st")}));
  CHECK(r.boolean("/ok"));
  CHECK(r.num("/stats/accepted") == 10);
  CHECK(r.num("/stats/ready") == 7);
  CHECK(r.num("/stats/failed") == 2);
  CHECK(r.num("/stats/stopped") == 1);
  CHECK(r.num("/stats/in_flight") == 7);
  CHECK(r.num("/stats/runsc_queued") == 3);
  CHECK(r.num("/stats/time_to_ready_ms/samples") == 7);
  CHECK(r.dbl("/stats/time_to_ready_ms/p50") == doctest::Approx(850.5));
  CHECK(r.dbl("/stats/time_to_ready_ms/p90") == doctest::Approx(900));
  CHECK(r.dbl("/stats/time_to_ready_ms/p99") == doctest::Approx(1100));
  CHECK(r.dbl("/stats/time_to_ready_ms/max") == doctest::Approx(1200));
  CHECK(r.str("/tag") == "st");
}

TEST_CASE("protocol: event lines") {
  StateEvent e;
  e.id = "job-42";
  e.state = SandboxState::failed;
  e.reason = std::string(reason::ready_timeout);
  e.ts_us = 1795942069123456;
  Reply r(event_line(e));
  CHECK(r.str("/event") == "state");
  CHECK(r.str("/id") == "job-42");
  CHECK(r.str("/state") == "failed");
  CHECK(r.str("/reason") == "ready_timeout");
  CHECK(r.str("/ts") == "2026-11-29T08:47:49.123456Z");
  CHECK_FALSE(r.has("/exit_code"));
  CHECK_FALSE(r.has("/ok"));

  e.state = SandboxState::failed;
  e.reason = "exited";
  e.exit_code = 137;
  Reply x(event_line(e));
  CHECK(x.num("/exit_code") == 137);

  StateEvent ready;
  ready.id = "j";
  ready.state = SandboxState::ready;
  Reply y(event_line(ready));
  CHECK(y.str("/state") == "ready");
  CHECK(y.str("/reason").empty());  // the contract's event has "reason" on every line
}
