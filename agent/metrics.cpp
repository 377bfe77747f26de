#include "metrics.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <span>

#include "paths.hpp"

namespace sandbox_agent {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[static_cast<std::size_t>(bucket)];
  ++count_;
  sum_ += value;
}

std::uint64_t Histogram::cumulative(std::size_t bucket) const {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i <= bucket && i < counts_.size(); ++i) n += counts_[i];
  return n;
}

std::vector<double> ready_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::vector<double> runsc_buckets() { return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}; }

void Metrics::count(std::map<std::string, std::uint64_t, std::less<>>& by, std::string_view reason) {
  auto it = by.find(reason);
  if (it == by.end()) it = by.emplace(std::string(reason), 0).first;
  ++it->second;
}

void Metrics::observe_runsc(std::string_view verb, double seconds) {
  auto it = runsc_calls.find(verb);
  if (it == runsc_calls.end()) it = runsc_calls.emplace(std::string(verb), Histogram(runsc_buckets())).first;
  it->second.observe(seconds);
}

// ---------------------------------------------------------------------------------------
// The text format

namespace {

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

// The text format escapes backslash and newline, and in label values the double quote too.
enum class Escape { help, label_value };
void append_escaped(std::string& out, std::string_view v, Escape what) {
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"' && what == Escape::label_value) out += "\\\"";
    else out += c;
  }
}

}  // namespace

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  append_escaped(out_, help, Escape::help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void Exposition::labels(Labels labels, std::string_view le) {
  if (labels.size() == 0 && le.empty()) return;
  out_ += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out_ += ',';
    first = false;
    out_ += k;
    out_ += "=\"";
    append_escaped(out_, v, Escape::label_value);
    out_ += '"';
  }
  if (!le.empty()) {
    if (!first) out_ += ',';
    out_ += "le=\"";
    out_ += le;
    out_ += '"';
  }
  out_ += '}';
}

void Exposition::sample(std::string_view name, double value, Labels l) {
  out_ += name;
  labels(l);
  out_ += ' ';
  out_ += number(value);
  out_ += '\n';
}

void Exposition::histogram(std::string_view name, const Histogram& h, Labels l) {
  std::string bucket = std::string(name) + "_bucket";
  for (std::size_t i = 0; i <= h.bounds().size(); ++i) {
    out_ += bucket;
    labels(l, i < h.bounds().size() ? number(h.bounds()[i]) : "+Inf");
    out_ += ' ';
    out_ += std::to_string(i < h.bounds().size() ? h.cumulative(i) : h.count());
    out_ += '\n';
  }
  sample(std::string(name) + "_sum", h.sum(), l);
  sample(std::string(name) + "_count", static_cast<double>(h.count()), l);
}

// ---------------------------------------------------------------------------------------
// The agent's metrics

namespace {

// Every reason a sandbox can fail or stop for, so that a series exists (at 0) before the
// first one happens: rate() and alerts need it.
constexpr std::string_view kFailureReasons[] = {
    reason::runsc_create_failed, reason::runsc_start_failed, reason::runsc_timeout, reason::ready_timeout,
    reason::dockerd_exited,      reason::exited,             reason::host_error,    reason::network_setup_failed};
constexpr std::string_view kStopReasons[] = {reason::stop_requested, reason::ttl_expired, reason::exited,
                                             reason::agent_restart};
constexpr std::string_view kRunscVerbs[] = {"run", "create", "start", "state", "kill", "delete"};
constexpr SandboxState kStates[] = {SandboxState::accepted, SandboxState::creating, SandboxState::starting,
                                    SandboxState::probing,  SandboxState::ready,    SandboxState::stopping,
                                    SandboxState::stopped,  SandboxState::failed};

void by_reason(Exposition& e, std::string_view name, const std::map<std::string, std::uint64_t, std::less<>>& counted,
               std::span<const std::string_view> known) {
  std::map<std::string_view, std::uint64_t> all;
  for (auto r : known) all[r] = 0;
  for (const auto& [r, n] : counted) all[r] = n;
  for (const auto& [r, n] : all) e.sample(name, static_cast<double>(n), {{"reason", r}});
}

}  // namespace

std::string render_metrics(const MetricsSnapshot& s) {
  static const Metrics kNothing;
  const Metrics& m = s.counted ? *s.counted : kNothing;
  Exposition e;
  auto gauge = [&](std::string_view name, std::string_view help, double v) {
    e.family(name, "gauge", help);
    e.sample(name, v);
  };
  auto counter = [&](std::string_view name, std::string_view help, double v) {
    e.family(name, "counter", help);
    e.sample(name, v);
  };

  e.family("sandbox_agent_info", "gauge", "The agent's version and the runtime it drives (always 1).");
  e.sample("sandbox_agent_info", 1,
           {{"version", s.version}, {"runtime_version", s.runtime_version}, {"platform", s.platform}});

  e.family("sandbox_agent_sandboxes", "gauge", "Sandboxes the agent holds, by state.");
  for (auto st : kStates) {
    auto it = s.sandboxes.find(st);
    e.sample("sandbox_agent_sandboxes", it == s.sandboxes.end() ? 0.0 : static_cast<double>(it->second),
             {{"state", to_string(st)}});
  }
  counter("sandbox_agent_launches_total", "Launches accepted (socket, spool, pools, embedders).",
          static_cast<double>(s.stats.accepted));
  counter("sandbox_agent_ready_total", "Sandboxes that became ready.", static_cast<double>(s.stats.ready));
  e.family("sandbox_agent_failures_total", "counter", "Sandboxes that failed, by reason.");
  by_reason(e, "sandbox_agent_failures_total", m.failures, kFailureReasons);
  e.family("sandbox_agent_stops_total", "counter", "Sandboxes that stopped, by reason.");
  by_reason(e, "sandbox_agent_stops_total", m.stops, kStopReasons);
  e.family("sandbox_agent_time_to_ready_seconds", "histogram",
           "From accepted to ready, launches that started a sandbox (pool members too; not warm claims, "
           "not sandboxes adopted after a restart).");
  e.histogram("sandbox_agent_time_to_ready_seconds", m.time_to_ready);

  e.family("sandbox_agent_runsc_call_duration_seconds", "histogram", "runsc invocations, by verb.");
  std::map<std::string_view, const Histogram*> verbs;
  static const Histogram kEmpty(runsc_buckets());
  for (auto v : kRunscVerbs) verbs[v] = &kEmpty;
  for (const auto& [v, h] : m.runsc_calls) verbs[v] = &h;
  for (const auto& [v, h] : verbs) e.histogram("sandbox_agent_runsc_call_duration_seconds", *h, {{"verb", v}});
  gauge("sandbox_agent_runsc_queued", "Launches waiting for a runsc slot (runsc.max_concurrent).",
        static_cast<double>(s.stats.runsc_queued));
  counter("sandbox_agent_probe_attempts_total", "GET /_ping requests sent to dockerd.",
          static_cast<double>(m.probe_attempts));
  counter("sandbox_agent_runsc_forked_by_agent_total",
          "runsc calls the agent forked itself because its spawn helper could not take them.",
          static_cast<double>(m.runsc_forked_here));
  counter("sandbox_agent_durable_writes_total",
          "Files written durably (state records, spool statuses): a staging file, a flush, a swap.",
          static_cast<double>(s.durable_writes));
  counter("sandbox_agent_durable_flushes_total", "fsyncs those writes took (none on a tmpfs root).",
          static_cast<double>(s.durable_flushes));
  gauge("sandbox_agent_records_unwritten", "State records that failed to write and are being retried.",
        static_cast<double>(s.stats.records_unwritten));
  gauge("sandbox_agent_spool_files_in_progress", "Spool files claimed whose sandboxes have not ended.",
        static_cast<double>(s.spool_in_progress));
  gauge("sandbox_agent_connections_open", "Socket clients connected now.", static_cast<double>(s.connections));
  counter("sandbox_agent_connections_total", "Socket clients accepted.", static_cast<double>(s.connections_total));
  gauge("sandbox_agent_execs_running", "exec and cp processes running (limits.max_execs).",
        static_cast<double>(s.execs_running));

  if (!s.pools.empty()) {
    auto per_pool = [&](std::string_view name, std::string_view help, auto field) {
      e.family(name, "gauge", help);
      for (const auto& p : s.pools) e.sample(name, static_cast<double>(p.*field), {{"pool", p.name}});
    };
    per_pool("sandbox_agent_pool_size", "Sandboxes a pool keeps ready (its configured size).", &PoolGauges::size);
    per_pool("sandbox_agent_pool_ready", "Pool members ready to be claimed.", &PoolGauges::ready);
    per_pool("sandbox_agent_pool_warming", "Pool members launching.", &PoolGauges::warming);
    e.family("sandbox_agent_pool_claims_total", "counter", "Launches served by a ready pool member, by pool.");
    for (const auto& p : s.pools) {
      auto it = m.pool_claims.find(p.name);
      e.sample("sandbox_agent_pool_claims_total", it == m.pool_claims.end() ? 0.0 : static_cast<double>(it->second),
               {{"pool", p.name}});
    }
    e.family("sandbox_agent_pool_claim_seconds", "histogram",
             "A launch served by a ready pool member, from its request to its ready reply (every pool).");
    e.histogram("sandbox_agent_pool_claim_seconds", m.pool_claim);
    per_pool("sandbox_agent_pool_failures_in_a_row", "Pool members that failed since the last one became ready.",
             &PoolGauges::failed_in_a_row);
  }

  counter("process_cpu_seconds_total", "User and system CPU time spent by the agent.", s.cpu_seconds);
  gauge("process_resident_memory_bytes", "The agent's resident memory.", static_cast<double>(s.resident_bytes));
  gauge("process_open_fds", "The agent's open file descriptors.", static_cast<double>(s.open_fds));
  gauge("process_max_fds", "The agent's descriptor limit.", static_cast<double>(s.max_fds));
  gauge("process_start_time_seconds", "When the agent started (Unix time).", s.start_time_seconds);
  return e.text();
}

void read_process_metrics(MetricsSnapshot& s) {
  rusage ru{};
  if (::getrusage(RUSAGE_SELF, &ru) == 0)
    s.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) s.max_fds = rl.rlim_cur;
  long page = ::sysconf(_SC_PAGESIZE);
  std::string text;
  if (paths::read_file("/proc/self/statm", text, 4096)) {
    unsigned long size = 0, resident = 0;
    if (std::sscanf(text.c_str(), "%lu %lu", &size, &resident) == 2) s.resident_bytes = resident * static_cast<unsigned long>(page);
  }
  // Field 22 of /proc/self/stat is the start time in clock ticks after boot; the comm
  // field (2) may hold spaces, so count from the last ')'.
  if (paths::read_file("/proc/self/stat", text, 4096)) {
    auto close = text.rfind(')');
    if (close != std::string::npos) {
      const char* p = text.c_str() + close + 2;
      unsigned long long start_ticks = 0;
      for (int field = 3; field < 22 && *p; ++field) p = std::strchr(p, ' ') ? std::strchr(p, ' ') + 1 : "";
      start_ticks = std::strtoull(p, nullptr, 10);
      std::string uptime;
      if (start_ticks && paths::read_file("/proc/uptime", uptime, 256)) {
        double up = std::strtod(uptime.c_str(), nullptr);
        double now = static_cast<double>(now_unix_us()) / 1e6;
        s.start_time_seconds = std::floor(now - up + static_cast<double>(start_ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK)));
      }
    }
  }
  s.open_fds = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (auto* e = ::readdir(d)) s.open_fds += e->d_name[0] != '.';
    ::closedir(d);
    if (s.open_fds) --s.open_fds;  // the directory's own descriptor
  }
}

HttpAnswer answer_metrics_request(std::string_view head, bool complete) {
  if (!complete) return {};
  auto line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || !line.substr(sp2 + 1).starts_with("HTTP/1.")) return {400, "Bad Request"};
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") return {404, "Not Found"};
  if (method != "GET") return {405, "Method Not Allowed"};
  return {200, "OK", true};
}

Result<MetricsEndpoint> parse_metrics_listen(std::string_view listen) {
  MetricsEndpoint ep;
  auto bad = [&](std::string why) {
    return make_error(ErrorCode::invalid_request, std::move(why), "/metrics/listen");
  };
  if (listen.empty()) return ep;
  if (listen.starts_with("unix:")) {
    ep.kind = MetricsEndpoint::unix_socket;
    ep.path = std::string(listen.substr(5));
    if (ep.path.empty() || ep.path[0] != '/') return bad("unix:PATH needs an absolute path");
    if (ep.path.size() > 107) return bad("the socket path is longer than 107 bytes");
    return ep;
  }
  auto colon = listen.rfind(':');
  if (colon == std::string_view::npos)
    return bad("must be unix:PATH or 127.0.0.1:PORT (got \"" + std::string(listen) + "\")");
  std::string_view host = listen.substr(0, colon), port = listen.substr(colon + 1);
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535)
    return bad("the port must be a number from 1 to 65535");
  ep.port = static_cast<std::uint16_t>(p);
  std::string address(host);
  if (address.size() > 2 && address.front() == '[' && address.back() == ']') address = address.substr(1, address.size() - 2);
  in_addr v4{};
  in6_addr v6{};
  if (!host.empty() && host.front() != '[' && ::inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    if ((ntohl(v4.s_addr) >> 24) != 127)
      return bad("the address must be on loopback (127.0.0.0/8 or [::1]): the endpoint has no authentication");
  } else if (host.size() > 2 && host.front() == '[' && ::inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&v6))
      return bad("the address must be on loopback (127.0.0.0/8 or [::1]): the endpoint has no authentication");
  } else {
    return bad("the address must be a loopback IP address, 127.0.0.1 or [::1] (got \"" + std::string(host) + "\")");
  }
  ep.address = address;
  ep.kind = MetricsEndpoint::tcp;
  return ep;
}

}  // namespace sandbox_agent
