// Prometheus metrics: what the agent counts as it happens (Metrics), a snapshot of the rest
// read when scraped (MetricsSnapshot), and the text exposition format
// (https://prometheus.io/docs/instrumenting/exposition_formats/). Pure code: the modules
// count into Metrics; agent.cpp takes the snapshot for the `metrics` op and GET /metrics.
// Labels are only states, reasons, runsc verbs and pool names: bounded, never sandbox ids.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sandbox_agent/error.hpp"
#include "sandbox_agent/status.hpp"

namespace sandbox_agent {

// Fixed buckets (upper bounds, ascending); +Inf is implied.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  const std::vector<double>& bounds() const { return bounds_; }
  std::uint64_t cumulative(std::size_t bucket) const;  // observations <= bounds()[bucket]
  std::uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;  // per bucket, not cumulative; the last one is +Inf
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

// Time to ready: a warm claim takes milliseconds, a cold Docker sandbox about a second, a
// slow host tens of seconds.
std::vector<double> ready_buckets();
// One runsc call: `state` takes milliseconds, `create` of a Docker sandbox a fraction of a second.
std::vector<double> runsc_buckets();

struct Metrics {
  std::map<std::string, std::uint64_t, std::less<>> failures;  // by reason
  std::map<std::string, std::uint64_t, std::less<>> stops;     // by reason
  Histogram time_to_ready{ready_buckets()};                    // seconds; cold launches
  Histogram pool_claim{ready_buckets()};                       // seconds; a warm claim, asked → ready
  std::map<std::string, Histogram, std::less<>> runsc_calls;    // by verb, seconds
  std::map<std::string, std::uint64_t, std::less<>> pool_claims;  // warm, by pool
  std::uint64_t probe_attempts = 0;                             // GET /_ping sent
  std::uint64_t runsc_forked_here = 0;  // runsc calls the spawn helper could not take

  void count(std::map<std::string, std::uint64_t, std::less<>>& by, std::string_view reason);
  void observe_runsc(std::string_view verb, double seconds);
};

struct PoolGauges {
  std::string name;
  unsigned size = 0, ready = 0, warming = 0, failed_in_a_row = 0;
};

// What is read, not counted, when scraped.
struct MetricsSnapshot {
  const Metrics* counted = nullptr;
  Stats stats;  // accepted, ready, failed, stopped, runsc_queued, records_unwritten
  std::map<SandboxState, std::uint64_t> sandboxes;  // by state (terminal ones still held)
  std::string version, runtime_version, platform;
  std::uint64_t connections = 0, connections_total = 0, spool_in_progress = 0, execs_running = 0;
  std::uint64_t durable_writes = 0, durable_flushes = 0;  // state records and spool statuses
  std::vector<PoolGauges> pools;
  // The process (the conventional process_* names).
  double cpu_seconds = 0, start_time_seconds = 0;
  std::uint64_t resident_bytes = 0, open_fds = 0, max_fds = 0;
};

std::string render_metrics(const MetricsSnapshot& s);

// The agent's own process: CPU, RSS, descriptors, start time (from /proc/self; cheap, no I/O).
void read_process_metrics(MetricsSnapshot& s);

// The text format's writer: a family's # HELP and # TYPE, then its samples.
class Exposition {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, double value, Labels labels = {});
  void histogram(std::string_view name, const Histogram& h, Labels labels = {});
  const std::string& text() const { return out_; }

 private:
  void labels(Labels labels, std::string_view le = {});
  std::string out_;
};

// metrics.listen: "" (off), "unix:/ABS/PATH" or "127.0.0.1:PORT" (a loopback address: the
// endpoint has no authentication).
struct MetricsEndpoint {
  enum Kind { off, unix_socket, tcp } kind = off;
  std::string path;     // unix
  std::string address;  // tcp: 127.0.0.1 (any 127.0.0.0/8) or ::1
  std::uint16_t port = 0;
};
Result<MetricsEndpoint> parse_metrics_listen(std::string_view listen);

// What metrics.listen's server answers `head`, an HTTP request head (`complete`: its blank
// line arrived): GET /metrics → 200 with the text; anything else → an error status.
struct HttpAnswer {
  int status = 0;  // 0: not a complete head yet
  std::string_view reason;
  bool body = false;  // the metrics text follows
};
HttpAnswer answer_metrics_request(std::string_view head, bool complete);

}  // namespace sandbox_agent
