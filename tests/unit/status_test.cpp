// Sandbox states, the STATUS record and times (sandbox_agent/status.hpp).
#include <doctest/doctest.h>
#include <simdjson.h>

#include <chrono>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "sandbox_agent/status.hpp"

using namespace sandbox_agent;

namespace {

const std::vector<SandboxState> kAllStates = {
    SandboxState::accepted, SandboxState::creating, SandboxState::starting, SandboxState::probing,
    SandboxState::ready,    SandboxState::stopping, SandboxState::stopped,  SandboxState::failed};

struct Json {
  std::string text;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  explicit Json(std::string t) : text(std::move(t)) {
    auto err = parser.parse(text).get(root);
    REQUIRE_MESSAGE(!err, "not JSON: " << text);
  }
  std::set<std::string> keys(const std::string& pointer = "") const {
    simdjson::dom::element e;
    REQUIRE(!root.at_pointer(pointer).get(e));
    simdjson::dom::object obj;
    REQUIRE_MESSAGE(!e.get_object().get(obj), pointer << " is not an object in " << text);
    std::set<std::string> out;
    for (auto field : obj) out.emplace(field.key);
    return out;
  }
  bool has(const std::string& p) const {
    simdjson::dom::element e;
    return !root.at_pointer(p).get(e);
  }
  std::string str(const std::string& p) const {
    std::string_view s;
    REQUIRE_MESSAGE(!root.at_pointer(p).get_string().get(s), p << " is not a string in " << text);
    return std::string(s);
  }
  std::int64_t num(const std::string& p) const {
    std::int64_t n = 0;
    REQUIRE_MESSAGE(!root.at_pointer(p).get_int64().get(n), p << " is not an integer in " << text);
    return n;
  }
  bool boolean(const std::string& p) const {
    bool b = false;
    REQUIRE_MESSAGE(!root.at_pointer(p).get_bool().get(b), p << " is not a boolean in " << text);
    return b;
  }
};

const std::regex kRfc3339Micro(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$)");

}  // namespace

TEST_CASE("status: states round-trip through their names") {
  std::set<std::string> names;
  for (auto s : kAllStates) {
    auto name = std::string(to_string(s));
    INFO("state: " << name);
    names.insert(name);
    auto back = parse_state(name);
    REQUIRE(back.has_value());
    CHECK(*back == s);
  }
  CHECK(names == std::set<std::string>{"accepted", "creating", "starting", "probing", "ready", "stopping",
                                       "stopped", "failed"});
  CHECK_FALSE(parse_state("").has_value());
  CHECK_FALSE(parse_state("Ready").has_value());
  CHECK_FALSE(parse_state("running").has_value());
  CHECK_FALSE(parse_state("ready ").has_value());
}

TEST_CASE("status: only stopped and failed are terminal") {
  for (auto s : kAllStates) {
    INFO("state: " << std::string(to_string(s)));
    CHECK(is_terminal(s) == (s == SandboxState::stopped || s == SandboxState::failed));
  }
}

TEST_CASE("status: format_time is RFC 3339 UTC with microseconds") {
  CHECK(format_time(0) == "1970-01-01T00:00:00.000000Z");
  CHECK(format_time(1) == "1970-01-01T00:00:00.000001Z");
  CHECK(format_time(1795942069123456) == "2026-11-29T08:47:49.123456Z");  // the contract's example
  CHECK(format_time(1795942069000000) == "2026-11-29T08:47:49.000000Z");
  CHECK(format_time(951868799999999) == "2000-02-29T23:59:59.999999Z");
  CHECK(format_time(253402300799000000) == "9999-12-31T23:59:59.000000Z");
  auto now = format_time(now_unix_us());
  INFO("now: " << now);
  CHECK(std::regex_match(now, kRfc3339Micro));
}

TEST_CASE("status: format_time before 1970") {
  // Seconds round down, so times before 1970 print correctly too.
  CHECK(format_time(-1) == "1969-12-31T23:59:59.999999Z");
  CHECK(format_time(-1500000) == "1969-12-31T23:59:58.500000Z");
}

TEST_CASE("status: now_unix_us is the system clock in microseconds") {
  auto before = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto now = now_unix_us();
  auto after = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  CHECK(before <= now);
  CHECK(now <= after);
}

TEST_CASE("status: to_json with only the required fields") {
  SandboxStatus s;
  s.id = "job-42";
  s.state = SandboxState::accepted;
  s.created_at_us = 1795942069123456;
  const auto text = to_json(s);
  CHECK(text.find('\n') == std::string::npos);  // one line
  Json j(text);
  CHECK(j.keys() == std::set<std::string>{"id", "state", "labels", "created_at", "timings"});
  CHECK(j.str("/id") == "job-42");
  CHECK(j.str("/state") == "accepted");
  CHECK(j.keys("/labels").empty());
  CHECK(j.str("/created_at") == "2026-11-29T08:47:49.123456Z");
  // every timing is there, null until measured
  CHECK(j.keys("/timings") == std::set<std::string>{"create_ms", "start_ms", "ready_ms"});
  CHECK(text.find("\"create_ms\":null") != std::string::npos);
}

TEST_CASE("status: to_json with every field") {
  SandboxStatus s;
  s.id = "job-42";
  s.state = SandboxState::failed;
  s.reason = std::string(reason::dockerd_exited);
  s.exit_code = 1;
  s.labels = {{"batch-job", "1234"}, {"team/owner", "ml"}};
  s.created_at_us = 1795942069123456;
  s.ready_at_us = 1795942070000001;
  s.docker_socket = "/var/lib/sandbox-agent/sockets/job-42/docker.sock";
  s.timings = {131, 41, 900, {}};
  s.log_tail = "failed to start daemon: \"Devices cgroup isn't mounted\"\n";
  s.capabilities = Capabilities{"release-20260831.0", "systrap", true};
  Json j(to_json(s));
  CHECK(j.keys() == std::set<std::string>{"id", "state", "reason", "exit_code", "labels", "created_at",
                                          "ready_at", "docker_socket", "timings", "log_tail", "capabilities"});
  CHECK(j.str("/capabilities/runtime_version") == "release-20260831.0");
  CHECK(j.str("/capabilities/platform") == "systrap");
  CHECK(j.boolean("/capabilities/nested_containers"));
  CHECK(j.str("/state") == "failed");
  CHECK(j.str("/reason") == "dockerd_exited");
  CHECK(j.num("/exit_code") == 1);
  CHECK(j.str("/labels/batch-job") == "1234");
  CHECK(j.str("/labels/team~1owner") == "ml");
  CHECK(j.str("/created_at") == "2026-11-29T08:47:49.123456Z");
  CHECK(j.str("/ready_at") == "2026-11-29T08:47:50.000001Z");
  CHECK(j.str("/docker_socket") == s.docker_socket);
  CHECK(j.keys("/timings") == std::set<std::string>{"create_ms", "start_ms", "ready_ms"});
  CHECK(j.num("/timings/create_ms") == 131);
  CHECK(j.num("/timings/start_ms") == 41);
  CHECK(j.num("/timings/ready_ms") == 900);
  CHECK(j.str("/log_tail") == s.log_tail);
  // Labels keep their order.
  CHECK(j.text.find("\"batch-job\"") < j.text.find("\"team/owner\""));
}

TEST_CASE("status: exit code 0 is present, not mistaken for unset") {
  SandboxStatus s;
  s.id = "j";
  s.state = SandboxState::stopped;
  s.exit_code = 0;
  Json j(to_json(s));
  CHECK(j.has("/exit_code"));
  CHECK(j.num("/exit_code") == 0);
}

TEST_CASE("status: a log tail that is not UTF-8 still gives valid JSON") {
  SandboxStatus s;
  s.id = "j";
  s.state = SandboxState::failed;
  s.log_tail = "runsc: \xff\xfe\x80 broken\n";
  Json j(to_json(s));
  CHECK(j.str("/log_tail").find("broken") != std::string::npos);
}

TEST_CASE("status: timings always carry create_ms, start_ms and ready_ms") {
  // STATUS always has the three timings (null until measured), as the contract shows.
  SandboxStatus s;
  s.id = "j";
  s.state = SandboxState::creating;
  s.timings.create_ms = std::nullopt;
  Json j(to_json(s));
  CHECK(j.keys("/timings") == std::set<std::string>{"create_ms", "start_ms", "ready_ms"});
}

TEST_CASE("status: state events") {
  StateEvent e;
  e.id = "job-42";
  e.state = SandboxState::ready;
  e.ts_us = 1795942069123456;
  Json j(to_json(e));
  CHECK(j.keys() == std::set<std::string>{"event", "id", "state", "reason", "ts"});
  CHECK(j.str("/event") == "state");
  CHECK(j.str("/id") == "job-42");
  CHECK(j.str("/state") == "ready");
  CHECK(j.str("/ts") == "2026-11-29T08:47:49.123456Z");
  e.state = SandboxState::failed;
  e.reason = "exited";
  e.exit_code = 2;
  Json f(to_json(e));
  CHECK(f.str("/reason") == "exited");
  CHECK(f.num("/exit_code") == 2);
}
