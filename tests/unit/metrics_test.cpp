// Prometheus metrics: histograms, the text format's escaping, the agent's families, and the
// metrics.listen syntax and how its HTTP requests are judged (agent/metrics.hpp).
#include <doctest/doctest.h>

#include <string>

#include "metrics.hpp"

using namespace sandbox_agent;

namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.starts_with(line + "\n");
}

}  // namespace

TEST_CASE("metrics: a histogram's buckets are cumulative, with the bound itself inside") {
  Histogram h({0.1, 1});
  h.observe(0.05);
  h.observe(0.1);  // le="0.1" includes 0.1
  h.observe(0.5);
  h.observe(7);
  CHECK(h.cumulative(0) == 2);
  CHECK(h.cumulative(1) == 3);
  CHECK(h.count() == 4);
  CHECK(h.sum() == doctest::Approx(7.65));
  Exposition e;
  e.histogram("x_seconds", h, {{"verb", "create"}});
  CHECK(e.text().starts_with(
        "x_seconds_bucket{verb=\"create\",le=\"0.1\"} 2\n"
        "x_seconds_bucket{verb=\"create\",le=\"1\"} 3\n"
        "x_seconds_bucket{verb=\"create\",le=\"+Inf\"} 4\n"
        "x_seconds_sum{verb=\"create\"} 7.6"));
  CHECK(e.text().ends_with("\nx_seconds_count{verb=\"create\"} 4\n"));
}

TEST_CASE("metrics: label values and help text are escaped") {
  Exposition e;
  e.family("a_total", "counter", "back\\slash and\nnewline");
  e.sample("a_total", 3, {{"pool", "we\"ird\\name\n"}});
  CHECK(e.text() ==
        "# HELP a_total back\\\\slash and\\nnewline\n"
        "# TYPE a_total counter\n"
        "a_total{pool=\"we\\\"ird\\\\name\\n\"} 3\n");
}

TEST_CASE("metrics: the agent's families, with every known reason and state present at 0") {
  Metrics m;
  m.count(m.failures, "ready_timeout");
  m.count(m.failures, "ready_timeout");
  m.count(m.stops, "ttl_expired");
  m.count(m.pool_claims, "small");
  m.time_to_ready.observe(0.003);
  m.observe_runsc("create", 0.08);
  m.probe_attempts = 12;
  m.runsc_forked_here = 2;
  MetricsSnapshot s;
  s.counted = &m;
  s.stats.accepted = 5;
  s.stats.ready = 3;
  s.sandboxes[SandboxState::ready] = 2;
  s.version = "0.1.0";
  s.runtime_version = "release-1";
  s.platform = "systrap";
  s.connections = 1;
  s.connections_total = 9;
  s.durable_writes = 40;
  s.durable_flushes = 80;
  s.pools.push_back({"small", 2, 1, 1, 0});
  auto text = render_metrics(s);
  CHECK(has_line(text, "sandbox_agent_info{version=\"0.1.0\",runtime_version=\"release-1\",platform=\"systrap\"} 1"));
  CHECK(has_line(text, "sandbox_agent_sandboxes{state=\"ready\"} 2"));
  CHECK(has_line(text, "sandbox_agent_sandboxes{state=\"probing\"} 0"));
  CHECK(has_line(text, "sandbox_agent_launches_total 5"));
  CHECK(has_line(text, "sandbox_agent_ready_total 3"));
  CHECK(has_line(text, "sandbox_agent_failures_total{reason=\"ready_timeout\"} 2"));
  CHECK(has_line(text, "sandbox_agent_failures_total{reason=\"runsc_create_failed\"} 0"));
  CHECK(has_line(text, "sandbox_agent_stops_total{reason=\"ttl_expired\"} 1"));
  CHECK(has_line(text, "sandbox_agent_time_to_ready_seconds_bucket{le=\"0.0025\"} 0"));
  CHECK(has_line(text, "sandbox_agent_time_to_ready_seconds_bucket{le=\"0.005\"} 1"));
  CHECK(has_line(text, "sandbox_agent_runsc_call_duration_seconds_count{verb=\"create\"} 1"));
  CHECK(has_line(text, "sandbox_agent_runsc_call_duration_seconds_count{verb=\"delete\"} 0"));
  CHECK(has_line(text, "sandbox_agent_probe_attempts_total 12"));
  CHECK(has_line(text, "sandbox_agent_runsc_forked_by_agent_total 2"));
  CHECK(has_line(text, "sandbox_agent_durable_writes_total 40"));
  CHECK(has_line(text, "sandbox_agent_durable_flushes_total 80"));
  CHECK(has_line(text, "sandbox_agent_connections_open 1"));
  CHECK(has_line(text, "sandbox_agent_connections_total 9"));
  CHECK(has_line(text, "sandbox_agent_pool_ready{pool=\"small\"} 1"));
  CHECK(has_line(text, "sandbox_agent_pool_claims_total{pool=\"small\"} 1"));
  CHECK(has_line(text, "# TYPE sandbox_agent_time_to_ready_seconds histogram"));
  // Every sample's family is declared once, before its samples.
  CHECK(text.find("# TYPE sandbox_agent_failures_total counter") < text.find("sandbox_agent_failures_total{"));
}

TEST_CASE("metrics: no pools configured, no pool families") {
  MetricsSnapshot s;
  CHECK(render_metrics(s).find("sandbox_agent_pool_") == std::string::npos);
}

TEST_CASE("metrics: the process's own figures are read") {
  MetricsSnapshot s;
  read_process_metrics(s);
  CHECK(s.resident_bytes > 0);
  CHECK(s.open_fds >= 3);
  CHECK(s.max_fds >= s.open_fds);
  CHECK(s.start_time_seconds > 1.7e9);
  CHECK(s.start_time_seconds <= static_cast<double>(now_unix_us()) / 1e6 + 1);
}

TEST_CASE("metrics: metrics.listen takes a Unix socket or a loopback port, and says why not otherwise") {
  CHECK(parse_metrics_listen("")->kind == MetricsEndpoint::off);
  auto u = parse_metrics_listen("unix:/run/sa-metrics.sock");
  REQUIRE(u);
  CHECK(u->kind == MetricsEndpoint::unix_socket);
  CHECK(u->path == "/run/sa-metrics.sock");
  auto t = parse_metrics_listen("127.0.0.1:9464");
  REQUIRE(t);
  CHECK(t->kind == MetricsEndpoint::tcp);
  CHECK(t->address == "127.0.0.1");
  CHECK(t->port == 9464);
  CHECK(parse_metrics_listen("[::1]:9464")->address == "::1");
  auto why = [](std::string_view s) { return parse_metrics_listen(s).error().message; };
  CHECK(parse_metrics_listen("0.0.0.0:9464").error().field == "/metrics/listen");
  CHECK(why("0.0.0.0:9464").find("loopback") != std::string::npos);
  CHECK(why("10.1.2.3:80").find("loopback") != std::string::npos);
  CHECK(why("unix:relative").find("absolute") != std::string::npos);
  CHECK(why("127.0.0.1:0").find("port") != std::string::npos);
  CHECK(why("127.0.0.1:70000").find("port") != std::string::npos);
  CHECK(why("localhost:80").find("address") != std::string::npos);
  CHECK(why("9464").find("unix:PATH") != std::string::npos);
  // Only what the agent can bind: inet_pton's forms, no padding or signs.
  CHECK(why(" 127.0.0.1:80").find("address") != std::string::npos);
  CHECK(why("127.+0.0.1:80").find("address") != std::string::npos);
  CHECK(why("127.0.0.01:80").find("address") != std::string::npos);
  CHECK(why("[::2]:80").find("loopback") != std::string::npos);
  CHECK(why("::1:80").find("address") != std::string::npos);  // IPv6 needs its brackets
  CHECK(parse_metrics_listen("127.1.2.3:80")->address == "127.1.2.3");
  CHECK(why(":80").find("address") != std::string::npos);
  CHECK(why("[127.0.0.1]:80").find("address") != std::string::npos);
}

TEST_CASE("metrics: the HTTP endpoint answers GET /metrics and refuses the rest") {
  CHECK(answer_metrics_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", true).status == 200);
  CHECK(answer_metrics_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", true).body);
  CHECK(answer_metrics_request("GET /metrics?x=1 HTTP/1.0\r\n\r\n", true).status == 200);
  CHECK(answer_metrics_request("GET /metrics HTTP/1.1\r\n", false).status == 0);
  CHECK(answer_metrics_request("POST /metrics HTTP/1.1\r\n\r\n", true).status == 405);
  CHECK(answer_metrics_request("GET / HTTP/1.1\r\n\r\n", true).status == 404);
  CHECK(answer_metrics_request("GET /metrics\r\n\r\n", true).status == 400);
  CHECK(answer_metrics_request("\r\n\r\n", true).status == 400);
  CHECK_FALSE(answer_metrics_request("GET / HTTP/1.1\r\n\r\n", true).body);
}
