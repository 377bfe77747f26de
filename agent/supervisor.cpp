#include "supervisor.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "json_in.hpp"
#include "log.hpp"
#include "log_quota.hpp"
#include "paths.hpp"
#include "ping.hpp"
#include "sandbox_agent/spec.hpp"
#include "store.hpp"

namespace sandbox_agent {

namespace {

constexpr std::size_t kLogTailBytes = 2048;
constexpr std::string_view kInitExitMarker = "init.exit";
constexpr std::string_view kDockerdExitMarker = "dockerd.exit";
constexpr Millis kRewatchEvery{1000};  // an unwatched sandbox (no descriptor to spare) is looked at again

// Reads {"exit_code":N} from a marker sandbox-init wrote; nullopt when absent or garbled.
// `unread`: it may be there but could not be read now (out of descriptors, say).
std::optional<int> read_exit_marker(const std::string& path, bool& unread) {
  std::string text;
  errno = 0;
  if (!paths::read_untrusted_file(path, text, 4096)) {
    if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) unread = true;
    return std::nullopt;
  }
  std::optional<int> code;
  auto s = json::parse_object_document(json::thread_parser(), text, [&](json::value root) {
    return json::for_each_member(root, json::Ptr{}, [&](std::string_view k, json::value v, const json::Ptr& p) -> Status {
      if (k != "exit_code") return Ok{};
      std::int64_t x = 0;
      auto st = json::read_int(v, p, x, -1, 65535);
      if (st) code = static_cast<int>(x);
      return st;
    });
  });
  return s ? code : std::nullopt;
}

std::string last_lines(const std::string& path) { return paths::tail_file(path, kLogTailBytes); }

}  // namespace

Supervisor::Supervisor(asio::any_io_executor ex, const Config& config, const RuntimeInfo& runtime,
                       EventBus& events, DurableWriter& writer, DirWatcher& dirs, PidWatcher& pids)
    : ex_(ex), config_(config), runtime_(runtime), layout_{config.root}, events_(events), writer_(writer),
      dirs_(dirs), pids_(pids),
      runsc_(ex, config.runsc, runtime, layout_.runsc_root(), config.runsc_concurrency(), metrics_),
      policy_(config.request_policy()),
      networks_(ex, config.network, policy_, paths::join(config.root, "network")),
      execs_(ex, runsc_, config.limits.max_execs),
      rng_(std::random_device{}()) {}

Capabilities Supervisor::capabilities_for(const LaunchRequest& request) const {
  return {runtime_.version, runtime_.platform, request.docker.enabled && runtime_.nested_containers};
}

// ---------------------------------------------------------------------------------------
// Requests from the intakes

awaitable<Result<std::string>> Supervisor::launch(LaunchRequest request, std::string origin) {
  if (!request.pool.empty()) co_return co_await launch_from_pool(std::move(request), std::move(origin));
  PoolTag none;  // named: a temporary in a co_await expression is destroyed twice by g++ 12
  co_return co_await launch_sandbox(std::move(request), std::move(origin), std::move(none));
}

awaitable<Result<std::string>> Supervisor::launch_sandbox(LaunchRequest request, std::string origin, PoolTag tag) {
  if (shutting_down_) co_return make_error(ErrorCode::overloaded, "the agent is shutting down");
  if (request.id.empty()) request.id = new_sandbox_id();
  if (auto it = sandboxes_.find(request.id); it != sandboxes_.end()) {
    const auto& old = *it->second;
    if (!old.finished)
      co_return make_error(ErrorCode::exists,
                           "sandbox " + request.id + " exists (state " + std::string(to_string(old.state)) + ")",
                           "/id");
    if (old.runsc_created)
      co_return make_error(ErrorCode::exists,
                           "sandbox " + request.id + " ended, but runsc has not deleted it yet (retried)", "/id");
    // A finished sandbox's id may be reused; its logs are kept. Its record goes (a sandbox
    // from a pool has it under another name, which the new one would not overwrite).
    if (old.dir != request.id) paths::remove_file_and_staging(layout_.state_file(old.dir));
    sandboxes_.erase(it);
    std::erase(finished_order_, request.id);
  }
  // A pool member keeps its directories (and record) under its pool name once claimed under
  // the caller's id: that name must not become a new sandbox's, whose launch would take over
  // the claimed sandbox's bundle, sockets, logs and record. Only pool names can clash.
  if (request.id.starts_with("pool-"))
    for (const auto& [id, other] : sandboxes_)
      if (other->dir == request.id && id != request.id)
        co_return make_error(ErrorCode::exists,
                             "the id " + request.id + " names the directories of sandbox " + id +
                                 " (taken from pool " + other->pool + ")",
                             "/id");
  if (request.network == NetworkMode::bridge && !networks_.available())
    co_return make_error(ErrorCode::invalid_request,
                         "bridge is not available on this agent: " + networks_.unavailable_reason(), "/network");
  if (pending_launches_ >= config_.limits.max_pending_launches)
    co_return make_error(ErrorCode::overloaded, "too many launches in progress (limits.max_pending_launches = " +
                                                    std::to_string(config_.limits.max_pending_launches) + ")");
  if (sandboxes_.size() >= config_.limits.max_sandboxes && !evict_one_finished())
    co_return make_error(ErrorCode::overloaded, "too many sandboxes (limits.max_sandboxes = " +
                                                    std::to_string(config_.limits.max_sandboxes) + ")");

  auto sb = std::make_shared<Sandbox>(ex_);
  sb->id = request.id;
  sb->dir = request.id;
  sb->runsc_id = new_runsc_id();
  // A port clash is this request's error, told at once; the claim lasts until DEL.
  if (auto s = networks_.reserve_ports(sb->runsc_id, request.ports, /*check_host=*/true); !s) co_return s.error();
  sb->request = std::move(request);
  sb->origin = std::move(origin);
  sb->pool = std::move(tag.pool);
  sb->pool_start = tag.start;
  sb->pool_template = tag.template_hash;
  sb->created_at_us = now_unix_us();
  sb->accepted_at = Clock::now();
  // Without a bridge network nothing is learnt between this record and runsc create, so this
  // one says runsc may hold it: recovery tells "never called" from runsc.log, exactly as for
  // a `creating` record, and a launch costs one durable write fewer.
  if (sb->request.network != NetworkMode::bridge) {
    sb->runsc_promised = true;
    sb->capabilities = capabilities_for(sb->request);
  }
  sandboxes_[sb->id] = sb;
  sb->pending = true;
  ++pending_launches_;
  ++counters_.accepted;

  // Intent first: the record exists before anyone is told the sandbox was accepted.
  if (!co_await persist_now(sb)) {
    sandboxes_.erase(sb->id);
    networks_.release_ports(sb->runsc_id);
    sb->pending = false;
    --pending_launches_;
    --counters_.accepted;
    co_return make_error(ErrorCode::internal, "cannot record the sandbox in " + layout_.state_dir() +
                                                  ": " + sb->log_tail);
  }
  spdlog::info("{} accepted from {} ({})", sb->id, sb->origin,
               sb->request.docker.enabled ? "docker, cgroup " + std::string(to_string(sb->request.docker.cgroup))
                                          : std::string("plain"));
  events_.publish({sb->id, SandboxState::accepted, {}, now_unix_us(), {}}, *sb);
  asio::co_spawn(ex_, lifecycle(sb), asio::detached);
  co_return sb->id;
}

Result<SandboxState> Supervisor::stop(const std::string& id, unsigned timeout_ms) {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return make_error(ErrorCode::not_found, "no sandbox " + id, "/id");
  auto& sb = *it->second;
  if (is_terminal(sb.state) || sb.stop_requested) return sb.state;  // idempotent
  sb.stop_requested = true;
  sb.stop_timeout_ms = timeout_ms;
  sb.wake.notify();
  sb.slot_wait.now();  // still queued for runsc: it need not wait for a turn to be stopped
  spdlog::info("{} stop requested (timeout {} ms)", id, timeout_ms);
  return SandboxState::stopping;
}

Result<std::int64_t> Supervisor::extend(const std::string& id, std::uint64_t ttl_ms) {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return make_error(ErrorCode::not_found, "no sandbox " + id, "/id");
  auto& sb = *it->second;
  if (is_terminal(sb.state) || sb.stop_requested)
    return make_error(ErrorCode::invalid_request,
                      "sandbox " + id + " is " + std::string(to_string(sb.state)) + (sb.stop_requested ? " (stopping)" : ""),
                      "/id");
  sb.ttl_deadline_us = now_unix_us() + static_cast<std::int64_t>(ttl_ms) * 1000;
  spdlog::info("{} deadline set to {} ({} ms from now)", id, format_time(*sb.ttl_deadline_us), ttl_ms);
  persist(sb);
  sb.wake.notify();  // its lifecycle waits for the deadline it knew
  return *sb.ttl_deadline_us;
}

Result<std::string> Supervisor::log_path(const std::string& id, const std::string& source) const {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return make_error(ErrorCode::not_found, "no sandbox " + id, "/id");
  const auto& sb = *it->second;
  if (source == "dockerd" && !sb.request.docker.enabled)
    return make_error(ErrorCode::invalid_request, "sandbox " + id + " runs no dockerd", "/source");
  // Until then logs/ID is not this sandbox's: it may hold an earlier one's of the same id.
  if (!sb.host_prepared)
    return make_error(ErrorCode::not_found,
                      "no " + source + " log for " + id +
                          (is_terminal(sb.state) ? ": it never reached runsc" : " yet: it is waiting for its turn with runsc"),
                      "/id");
  // The main process writes to the sandbox's console, which is runsc.log.
  return paths::join(layout_.logs_dir(sb.dir), source == "dockerd" ? "dockerd.log" : "runsc.log");
}

const Sandbox* Supervisor::find(const std::string& id) const {
  auto it = sandboxes_.find(id);
  return it == sandboxes_.end() ? nullptr : it->second.get();
}

std::vector<std::string> Supervisor::ids_with_origin(const std::string& origin) const {
  std::vector<std::string> ids;
  for (const auto& [id, sb] : sandboxes_)
    if (sb->origin == origin) ids.push_back(id);
  return ids;
}

std::vector<SandboxStatus> Supervisor::list() const {
  std::vector<SandboxStatus> out;
  out.reserve(sandboxes_.size());
  for (const auto& [id, sb] : sandboxes_) out.push_back(sb->status());
  return out;
}

std::size_t Supervisor::active() const {
  std::size_t n = 0;
  for (const auto& [id, sb] : sandboxes_) n += !sb->finished;
  return n;
}

Stats Supervisor::stats() const {
  Stats s = counters_;
  s.in_flight = 0;
  for (const auto& [id, sb] : sandboxes_) s.in_flight += !is_terminal(sb->state);
  s.runsc_queued = runsc_.queued();
  s.records_unwritten = unwritten_records_.size();
  std::vector<double> v(ready_samples_);
  s.samples = v.size();
  if (!v.empty()) {
    // Three selections, not a sort: O(n) for up to 10,000 samples on every poll.
    auto at = [&](double q) {
      auto k = v.begin() + static_cast<std::ptrdiff_t>(std::min(v.size() - 1, static_cast<std::size_t>(q * v.size())));
      std::nth_element(v.begin(), k, v.end());
      return *k;
    };
    s.p50 = at(0.50);
    s.p90 = at(0.90);
    s.p99 = at(0.99);
    s.max = *std::max_element(v.begin(), v.end());
  }
  return s;
}

std::map<SandboxState, std::uint64_t> Supervisor::count_by_state() const {
  std::map<SandboxState, std::uint64_t> by;
  for (const auto& [id, sb] : sandboxes_) ++by[sb->state];
  return by;
}

void Supervisor::note_ready_time(std::int64_t ms) {
  constexpr std::size_t kSamples = 10000;
  if (ready_samples_.size() < kSamples) ready_samples_.push_back(static_cast<double>(ms));
  else ready_samples_[ready_next_++ % kSamples] = static_cast<double>(ms);
}

// ---------------------------------------------------------------------------------------
// The lifecycle: one coroutine per sandbox, top to bottom.

awaitable<void> Supervisor::lifecycle(SandboxPtr sb) {
  bool torn_down = false;
  try {
    if (!sb->adopted) co_await bring_up(sb);
    else if (sb->state == SandboxState::creating) co_await start(sb);  // created before a restart
    else if (sb->state == SandboxState::probing) co_await probe_docker(sb);
    if (!is_terminal(sb->state)) co_await supervise(sb);
    co_await tear_down(sb);
    torn_down = true;
  } catch (const std::exception& e) {
    if (!is_terminal(sb->state)) fail(*sb, reason::host_error, std::string("internal error: ") + e.what());
  }
  if (!torn_down) {  // (no co_await inside a handler) what it holds must not outlive it
    try {
      co_await tear_down(sb);
    } catch (const std::exception& e) {
      spdlog::error("{} tear-down after an internal error failed: {}", sb->id, e.what());
    }
  }
  sb->finished = true;
  finished_order_.push_back(sb->id);
  persist(*sb);
  if (sb->runsc_created) asio::co_spawn(ex_, retry_tear_down(sb), asio::detached);
}

// Its end is told and it counts as finished, but its record says runsc may still hold it (and
// keeps its bundle, network and log mount): the delete is tried again until runsc lets go, the
// agent stops (the next start deletes it), or its id is launched anew (then the runsc sandbox
// has no record: an orphan, deleted at the next start).
awaitable<void> Supervisor::retry_tear_down(SandboxPtr sb) {
  asio::steady_timer pause(ex_);
  for (Millis wait{1000}; sb->runsc_created; wait = std::min(wait * 2, Millis(60000))) {
    pause.expires_after(wait);
    co_await pause.async_wait(use_nothrow);
    if (shutting_down_ || find(sb->id) != sb.get()) co_return;
    co_await tear_down(sb);
  }
  spdlog::info("{} runsc let go of it on a later try; torn down", sb->id);
  persist(*sb);
}

awaitable<void> Supervisor::bring_up(SandboxPtr sb) {
  if (sb->stop_requested) co_return;
  // `accepted` until runsc can take it: a sandbox only waiting for its turn has not reached
  // runsc, so a restart launches it again instead of giving it up. It holds nothing on the
  // host meanwhile: its directories, log quota and spec are made once it has its turn, so a
  // burst is accepted at the intake's pace and a thousand queued launches are not a thousand
  // mounts. A bridge sandbox attaches its network before its turn, overlapping others' runsc
  // calls; that needs its directories (cni.log) first.
  const bool bridge = sb->request.network == NetworkMode::bridge;
  Runsc::Slot slot;
  if (!bridge) {
    slot = co_await runsc_.reserve(&sb->slot_wait);
    if (sb->stop_requested) co_return;
  }
  if (auto s = prepare_host_dirs(*sb); !s) {
    fail(*sb, reason::host_error, s.error().message);
    co_return;
  }
  watch_sandbox(sb);
  if (bridge) {
    if (!co_await attach_network(sb) || sb->stop_requested) co_return;
    slot = co_await runsc_.reserve(&sb->slot_wait);
    if (sb->stop_requested) co_return;
  }
  sb->capabilities = capabilities_for(sb->request);  // what this runtime gives it
  transition(*sb, SandboxState::creating);  // recorded just below, unless the intent said so
  // Never a runsc sandbox without a record that says so.
  sb->runsc_created = true;
  if (!sb->runsc_promised && !co_await persist_now(sb)) {
    sb->runsc_created = false;
    fail(*sb, reason::host_error, "cannot record the sandbox: " + sb->log_tail);
    co_return;
  }
  if (sb->stop_requested) {  // asked while the record was written: runsc is not called at all
    sb->runsc_created = false;
    co_return;
  }
  if (config_.runsc.one_call_launch()) {
    co_await run(sb, std::move(slot));
    co_return;
  }
  auto logs = paths::join(layout_.logs_dir(sb->dir), "runsc.log");
  auto pid_file = paths::join(layout_.bundle_dir(sb->dir), "sandbox.pid");
  auto t0 = Clock::now();
  auto created = co_await runsc_.create(sb->runsc_id, layout_.bundle_dir(sb->dir), pid_file, logs,
                                        sb->request.network, sb->request.docker.enabled, wants_host_cgroup(*sb),
                                        std::move(slot));
  sb->timings.create_ms = ms_between(t0, Clock::now());
  if (!created.ok()) {
    fail(*sb, created.timed_out ? reason::runsc_timeout : reason::runsc_create_failed,
         "runsc create: " + created.describe());
    co_return;
  }
  if (int pid = paths::read_pid_file(pid_file); pid > 0) sb->pid = pid;
  watch_pid(sb);
  co_await start(sb);
}

// Create and start in one `runsc run --detach`. runsc writes the pid file as the last step of
// its create half, so the file's mtime is when that half ended: `starting` is published when
// run returns, stamped with that moment, and a failure after it is a start failure.
awaitable<void> Supervisor::run(SandboxPtr sb, Runsc::Slot slot) {
  auto logs = paths::join(layout_.logs_dir(sb->dir), "runsc.log");
  auto pid_file = paths::join(layout_.bundle_dir(sb->dir), "sandbox.pid");
  auto began_us = now_unix_us();
  auto ran = co_await runsc_.run(sb->runsc_id, layout_.bundle_dir(sb->dir), pid_file, logs, sb->request.network,
                                 sb->request.docker.enabled, wants_host_cgroup(*sb), std::move(slot));
  auto ended_us = now_unix_us();
  std::int64_t pid_file_us = 0;
  int pid = paths::read_pid_file(pid_file, &pid_file_us);  // the bundle is new: no older pid file
  bool created = pid > 0;
  // Without a pid file the whole call counts as create: runsc never got past it (or, if it
  // succeeded, it wrote none).
  auto halves = split_run(began_us, ended_us, created ? pid_file_us : ended_us);
  sb->timings.create_ms = halves.create_ms;
  if (created) {
    sb->timings.start_ms = halves.start_ms;
    transition(*sb, SandboxState::starting, {}, halves.created_at_us);
  }
  if (!ran.ok()) {
    fail(*sb, ran.timed_out ? reason::runsc_timeout : created ? reason::runsc_start_failed : reason::runsc_create_failed,
         "runsc run: " + ran.describe());
    co_return;
  }
  if (created) sb->pid = pid;
  else transition(*sb, SandboxState::starting);  // no pid file: runsc said it is started
  watch_pid(sb);
  co_await started(sb);
}

// From a created sandbox (runsc create, or one found created after a restart): runsc start.
awaitable<void> Supervisor::start(SandboxPtr sb) {
  if (sb->stop_requested || sb->ended()) co_return;
  auto logs = paths::join(layout_.logs_dir(sb->dir), "runsc.log");
  transition(*sb, SandboxState::starting);
  auto t0 = Clock::now();
  auto result = co_await runsc_.start(sb->runsc_id, logs, sb->request.network, wants_host_cgroup(*sb));
  sb->timings.start_ms = ms_between(t0, Clock::now());
  if (!result.ok()) {
    fail(*sb, result.timed_out ? reason::runsc_timeout : reason::runsc_start_failed,
         "runsc start: " + result.describe());
    co_return;
  }
  co_await started(sb);
}

// runsc started it: ready now, or (Docker) once dockerd answers.
awaitable<void> Supervisor::started(SandboxPtr sb) {
  if (sb->stop_requested || sb->ended()) co_return;
  if (!sb->request.docker.enabled) {
    transition(*sb, SandboxState::ready);
    co_return;
  }
  transition(*sb, SandboxState::probing);
  co_await probe_docker(sb);
}

// Asks dockerd through the host-visible socket until it answers, the deadline passes, or
// the sandbox ends. Woken at once when the socket appears (inotify) or something dies.
awaitable<void> Supervisor::probe_docker(SandboxPtr sb) {
  const auto& pc = config_.probe;
  auto timeout = Millis(sb->request.docker.ready_timeout_ms.value_or(config_.docker.ready_timeout_ms));
  auto deadline = Clock::now() + timeout;
  auto socket_path = paths::join(layout_.sockets_dir(sb->dir), std::string(kDockerSocketName));
  // Two clocks: `absent` paces the fallback checks while the socket does not exist yet
  // (inotify wakes us as it appears), `delay` the retries once it does. Kept apart so a slow
  // boot does not leave a refused first connect (the relay binds before it listens) waiting
  // the longest backoff: that made ready land up to 250 ms after dockerd answered.
  double absent = pc.initial_ms;
  double delay = pc.initial_ms;
  std::string last_error = "the socket never appeared";
  std::uniform_real_distribution<double> jitter(1.0 - pc.jitter, 1.0 + pc.jitter);
  unsigned attempts = 0;

  for (;;) {
    if (sb->stop_requested || sb->ended()) co_return;
    double next = 0;
    // The socket's appearance wakes us (inotify); checking here also covers a missed event.
    if (prepare_docker_socket(*sb)) {
      auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      auto attempt = std::min(Millis(pc.attempt_timeout_ms), std::max(left, Millis(1)));
      ++attempts;
      ++metrics_.probe_attempts;
      auto ping = co_await ping_docker(socket_path, attempt);
      if (ping.ok) {
        // Owner and mode once more, now that dockerd answers: gVisor's gofer can set the
        // socket back to root:root after the relay bound it (seen under Slurm: the job user
        // was refused a socket the agent had already given it).
        sb->socket_prepared = false;
        prepare_docker_socket(*sb);
        sb->docker_socket = socket_path;
        spdlog::debug("{} dockerd answered after {} attempt(s)", sb->id, attempts);
        transition(*sb, SandboxState::ready);
        co_return;
      }
      // An attempt the deadline cut short says less than what the previous one saw
      // (e.g. "HTTP 500"): keep that one.
      bool cut_short = ping.timed_out && attempt < Millis(pc.attempt_timeout_ms) && attempts > 1;
      if (!cut_short) last_error = ping.error;
      spdlog::debug("{} probe attempt {} failed: {}", sb->id, attempts, ping.error);
      if (sb->stop_requested || sb->ended()) co_return;
      next = delay;
      delay = std::min(delay * pc.factor, static_cast<double>(pc.max_ms));
    } else {
      next = absent;
      absent = std::min(absent * pc.factor, static_cast<double>(pc.max_ms));
    }
    auto now = Clock::now();
    if (now >= deadline) {
      fail(*sb, reason::ready_timeout,
           "dockerd did not answer within " + std::to_string(timeout.count()) + " ms (" +
               std::to_string(attempts) + " attempts; last: " + last_error + ")");
      co_return;
    }
    auto wait = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double, std::milli>(next * jitter(rng_)));
    co_await sb->wake.wait_until(std::min(now + wait, deadline));
  }
}

awaitable<void> Supervisor::supervise(SandboxPtr sb) {
  while (!sb->stop_requested && !sb->ended()) {
    // Not watched (its pid file or pidfd could not be opened, out of descriptors): look again
    // every second, so that its end is never missed.
    auto recheck = Clock::time_point::max();
    if (!sb->pid_token || sb->markers_unread) {
      rewatch(sb);
      if (sb->ended()) break;
      if (!sb->pid_token || sb->markers_unread) recheck = Clock::now() + kRewatchEvery;
    }
    if (!sb->ttl_deadline_us) {
      co_await sb->wake.wait_until(recheck);
      continue;
    }
    // The deadline is wall-clock (it is in the record, and survives restarts); woken early by
    // extend, a stop or an end.
    auto left = std::chrono::microseconds(*sb->ttl_deadline_us - now_unix_us());
    if (left.count() <= 0) {
      spdlog::info("{} reached its deadline: stopping", sb->id);
      sb->stop_requested = true;
      sb->stop_reason = std::string(reason::ttl_expired);
      break;
    }
    co_await sb->wake.wait_until(std::min(recheck, Clock::now() + std::chrono::duration_cast<Clock::duration>(left)));
  }
  if (sb->stop_requested) {
    co_await stop_flow(sb);
    co_return;
  }
  resolve_end(*sb);
}

// The sandbox ended on its own: say why, from the markers sandbox-init left.
void Supervisor::resolve_end(Sandbox& sb) {
  read_markers(sb);
  auto logs = layout_.logs_dir(sb.dir);
  if (sb.dockerd_exited && sb.request.docker.enabled && !sb.init_exited) {
    // dockerd's own words; when it never got to say anything, sandbox-init's account.
    auto tail = last_lines(paths::join(logs, "dockerd.log"));
    if (tail.empty()) tail = last_lines(paths::join(logs, "init.log"));
    fail(sb, reason::dockerd_exited, tail);
    return;
  }
  sb.exit_code = sb.init_exit_code;
  std::string detail = sb.init_exit_code ? "exit code " + std::to_string(*sb.init_exit_code)
                                         : "the sandbox process ended without an exit status";
  auto tail = last_lines(paths::join(logs, "runsc.log"));
  fail(sb, reason::exited, tail.empty() ? detail : detail + "\n" + tail);
}

awaitable<void> Supervisor::stop_flow(SandboxPtr sb) {
  execs_.end_sandbox(sb->id, "sandbox_stopped");
  transition(*sb, SandboxState::stopping, sb->stop_reason);
  if (!co_await persist_now(sb)) retry_record(sb->id);  // its only record: transition leaves it to us
  auto logs = paths::join(layout_.logs_dir(sb->dir), "runsc.log");
  if (sb->runsc_created && !sb->ended()) {
    auto term = co_await runsc_.kill(sb->runsc_id, "TERM", logs);
    if (term.ok()) {
      auto deadline = Clock::now() + Millis(sb->stop_timeout_ms);
      while (!sb->ended() && Clock::now() < deadline) co_await sb->wake.wait_until(deadline);
    }
    if (!sb->ended()) {
      spdlog::info("{} did not stop within {} ms: killing", sb->id, sb->stop_timeout_ms);
      co_await runsc_.kill(sb->runsc_id, "KILL", logs);
    }
  }
  co_await tear_down(sb);
  read_markers(*sb);
  sb->exit_code = sb->init_exit_code;
  transition(*sb, SandboxState::stopped, sb->stop_reason);
}

// Removes everything but the logs. Idempotent.
awaitable<void> Supervisor::tear_down(SandboxPtr sb) {
  execs_.end_sandbox(sb->id, "sandbox_stopped");  // it ended on its own: they go with it
  unwatch_sandbox(*sb);
  if (sb->runsc_created) {
    auto logs = paths::join(layout_.logs_dir(sb->dir), "runsc.log");
    auto removed = co_await runsc_.remove(sb->runsc_id, logs);
    // "does not exist": it never got that far, or is gone already.
    if (removed.ok() || removed.log_excerpt.find("does not exist") != std::string::npos)
      sb->runsc_created = false;
    else
      spdlog::warn("{} runsc delete failed: {}", sb->id, removed.describe());
  }
  if (!sb->runsc_created) {
    paths::remove_tree(layout_.bundle_dir(sb->dir));
    paths::remove_tree(layout_.sockets_dir(sb->dir));
    sb->docker_socket.clear();  // it is gone
    // Only once runsc let go of it: the namespace must outlive the sandbox that uses it.
    if (sb->network_intent) co_await detach_network(sb);
    else networks_.release_ports(sb->runsc_id);  // reserved at launch, and no namespace holds them
    co_await keep_logs(sb);  // last: DEL wrote cni.log
  }
}

// The logs leave the sandbox's tmpfs for the disk. Idempotent: nothing to do once the tmpfs
// is gone.
awaitable<void> Supervisor::keep_logs(SandboxPtr sb) {
  if (auto kept = co_await log_quota::unmount_keeping(layout_.logs_dir(sb->dir)); !kept)
    spdlog::warn("{} logs: {}", sb->id, kept.error().message);
}

// Intent first: the record says "attached" before the namespace exists, so a crash at any
// point leaves something recovery can DEL.
awaitable<bool> Supervisor::attach_network(SandboxPtr sb) {
  if (sb->network_intent) co_await detach_network(sb);  // what a previous attempt left
  sb->network_intent = true;
  if (!co_await persist_now(sb)) {
    fail(*sb, reason::host_error, "cannot record the sandbox: " + sb->log_tail);
    co_return false;
  }
  auto t0 = Clock::now();
  auto att = co_await networks_.attach(sb->runsc_id, sb->request, paths::join(layout_.logs_dir(sb->dir), "cni.log"));
  sb->timings.network_ms = ms_between(t0, Clock::now());
  if (!att) {
    // attach undid its own work; nothing is left to DEL.
    sb->network_intent = false;
    fail(*sb, reason::network_setup_failed, att.error().message);
    co_return false;
  }
  sb->network = std::move(att.value());
  spdlog::info("{} network attached: {} in {} ms", sb->id, sb->network->cidr, *sb->timings.network_ms);
  persist(*sb);
  co_return true;
}

awaitable<void> Supervisor::detach_network(SandboxPtr sb) {
  auto done = co_await networks_.detach(sb->runsc_id, sb->network, sb->request.ports,
                                        paths::join(layout_.logs_dir(sb->dir), "cni.log"));
  if (!done) {
    spdlog::warn("{} network tear-down failed (retried at the next start): {}", sb->id, done.error().message);
    co_return;
  }
  sb->network_intent = false;
  persist(*sb);
}

// ---------------------------------------------------------------------------------------
// State changes

void Supervisor::transition(Sandbox& sb, SandboxState to, std::string_view why, std::int64_t at_unix_us) {
  auto from = sb.state;
  sb.state = to;
  if (!why.empty()) sb.reason = why;
  auto elapsed = ms_between(sb.accepted_at, Clock::now());
  if (sb.pending && (to == SandboxState::probing || to == SandboxState::ready || is_terminal(to))) {
    sb.pending = false;
    --pending_launches_;
  }
  if (to == SandboxState::ready) {
    sb.ready_at_us = now_unix_us();
    if (sb.request.ttl_ms && !sb.ttl_deadline_us)
      sb.ttl_deadline_us = *sb.ready_at_us + static_cast<std::int64_t>(*sb.request.ttl_ms) * 1000;
    sb.timings.ready_ms = elapsed;
    ++counters_.ready;
    note_ready_time(elapsed);
    // Not for a sandbox adopted after a restart: its accepted time is rebuilt from its record,
    // and the agent's downtime is not time anyone waited for it to become ready.
    if (!sb.adopted) metrics_.time_to_ready.observe(std::chrono::duration<double>(Clock::now() - sb.accepted_at).count());
  } else if (to == SandboxState::failed) {
    ++counters_.failed;
    metrics_.count(metrics_.failures, sb.reason);
  } else if (to == SandboxState::stopped) {
    ++counters_.stopped;
    metrics_.count(metrics_.stops, sb.reason);
  }
  auto level = to == SandboxState::failed ? spdlog::level::warn : spdlog::level::info;
  spdlog::log(level, "{} {} -> {}{}{} after {} ms", sb.id, to_string(from), to_string(to),
              why.empty() ? "" : " reason=", why, elapsed);
  events_.publish({sb.id, to, sb.reason, at_unix_us ? at_unix_us : now_unix_us(), sb.exit_code}, sb);
  // `starting` and `probing` get no record of their own: after a crash, recovery derives them
  // exactly from the last record that says runsc_created (the intent, or bridge sandboxes'
  // `creating`) and what runsc says (created: start it; running: probe it). `creating` is
  // recorded by bring_up itself, awaited, when the intent did not already promise runsc, and
  // `stopping` by stop_flow, awaited before the kill it announces. `stopped` comes once the
  // sandbox is torn down, and the lifecycle records it finished at once: until then the
  // record says `stopping`, which recovery resolves to `stopped` exactly.
  if (to != SandboxState::creating && to != SandboxState::starting && to != SandboxState::probing &&
      to != SandboxState::stopping && to != SandboxState::stopped)
    persist(sb);
}

void Supervisor::fail(Sandbox& sb, std::string_view why, std::string detail) {
  if (is_terminal(sb.state)) return;
  if (detail.size() > kLogTailBytes) detail.erase(0, detail.size() - kLogTailBytes);
  sb.log_tail = std::move(detail);
  auto first_line = sb.log_tail.substr(0, sb.log_tail.find('\n'));
  spdlog::warn("{} failing ({}): {}", sb.id, why, first_line);
  transition(sb, SandboxState::failed, why);
}

// A finished sandbox's record is not rewritten (it is read, then evicted): no staging copy.
// Nor is there anything to swap with on the first write: a plain rename, not an exchange
// that fails. Writes to one path are applied in order, so the next one finds it there.
DurableWriter::Spare Supervisor::record_spare(Sandbox& sb) {
  bool first = !std::exchange(sb.recorded, true);
  return sb.finished || first ? DurableWriter::Spare::drop : DurableWriter::Spare::keep;
}

void Supervisor::persist(Sandbox& sb) {
  // A sandbox evicted, or replaced by a new launch of its id, no longer owns the record's
  // file: a late clean-up of it (a network's DEL) must not write it back over the new one.
  if (find(sb.id) != &sb) return;
  writer_.write(layout_.state_file(sb.dir), record_to_json(sb), [this, id = sb.id](int err) {
    if (!err) return;
    spdlog::error("{} cannot write its state record: {}; retrying until the disk takes it", id, std::strerror(err));
    retry_record(id);
  }, record_spare(sb));
}

// A record the disk refused (full, read-only, I/O error) is written again, newest content,
// with backoff, until it is on disk: the record must end up saying what the sandbox is.
void Supervisor::retry_record(const std::string& id) {
  unwritten_records_.insert(id);
  if (retrying_records_) return;
  retrying_records_ = true;
  asio::co_spawn(ex_, [this]() -> awaitable<void> {
    asio::steady_timer t(ex_);
    unsigned attempts = 0;
    for (Millis wait{100}; !unwritten_records_.empty(); wait = std::min(wait * 2, Millis(5000))) {
      t.expires_after(wait);
      co_await t.async_wait(use_nothrow);
      auto ids = unwritten_records_;
      ++attempts;
      for (const auto& id : ids) {
        auto it = sandboxes_.find(id);
        if (it == sandboxes_.end()) {  // forgotten meanwhile (evicted): nothing to record
          unwritten_records_.erase(id);
          continue;
        }
        auto sb = it->second;
        if (co_await writer_.write_async(layout_.state_file(sb->dir), record_to_json(*sb), record_spare(*sb)) == 0) {
          unwritten_records_.erase(id);
          spdlog::info("{} state record written (state {}) after {} retr{}", id, to_string(sb->state), attempts,
                       attempts == 1 ? "y" : "ies");
        }
      }
    }
    retrying_records_ = false;
  }, asio::detached);
}

awaitable<bool> Supervisor::persist_now(SandboxPtr sb) {
  int err = co_await writer_.write_async(layout_.state_file(sb->dir), record_to_json(*sb), record_spare(*sb));
  if (err) {
    sb->log_tail = "writing " + layout_.state_file(sb->dir) + ": " + std::strerror(err);
    spdlog::error("{} {}", sb->id, sb->log_tail);
  }
  co_return err == 0;
}

// ---------------------------------------------------------------------------------------
// Host side of a sandbox

Status Supervisor::prepare_host_dirs(Sandbox& sb) {
  auto bundle = layout_.bundle_dir(sb.dir);
  auto sockets = layout_.sockets_dir(sb.dir);
  auto logs = layout_.logs_dir(sb.dir);
  auto fail = [](const std::string& what) {
    return make_error(ErrorCode::internal, what + ": " + paths::errno_text());
  };
  // Leftovers of an earlier sandbox with this id would be mistaken for this one's.
  auto fresh_dir = [](const std::string& dir, unsigned mode) {
    if (::mkdir(dir.c_str(), mode) == 0) return true;  // nearly always: nothing to remove
    if (errno == EEXIST) paths::remove_tree(dir);
    return paths::make_dirs(dir, mode);
  };
  if (!fresh_dir(bundle, 0700)) return fail("creating " + bundle);
  // Kept from before a restart (its quota may still be mounted), or new (then it is not).
  bool logs_new = ::mkdir(logs.c_str(), 0750) == 0;
  if (!logs_new && !paths::make_dirs(logs, 0750)) return fail("creating " + logs);
  // The quota first: nothing of this sandbox's is written to logs/ID before it is in place.
  if (auto quota = config_.logs.max_bytes_per_sandbox; quota && (logs_new || !log_quota::mounted(logs)))
    if (auto s = log_quota::mount(logs, quota); !s) return s;
  if (!fresh_dir(sockets, 0700)) return fail("creating " + sockets);
  if (auto& o = sb.request.socket_owner; o && ::chown(sockets.c_str(), o->uid, o->gid) != 0)
    return fail("chown " + sockets);
  SpecContext ctx{config_.sandbox_init, sockets, logs, config_.docker.dockerd_path, runtime_.dockerd_flags, {}, {},
                  config_.docker.containerd_path};
  if (sb.request.network == NetworkMode::bridge) {
    ctx.netns_path = networks_.netns_path(sb.runsc_id);
    ctx.resolv_conf = networks_.resolv_conf();
  }
  auto spec = render_spec(sb.request, ctx, /*indented=*/false);
  auto config_json = paths::join(bundle, "config.json");
  // Not fsync'ed: a crash before runsc create is recovered by launching again.
  int fd = ::open(config_json.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail("creating " + config_json);
  bool ok = ::write(fd, spec.data(), spec.size()) == static_cast<ssize_t>(spec.size());
  int err = errno;
  ::close(fd);
  if (!ok) {
    errno = err ? err : ENOSPC;
    return fail("writing " + config_json);
  }
  sb.host_prepared = true;
  return Ok{};
}

void Supervisor::watch_sandbox(SandboxPtr sb) {
  auto wd = dirs_.watch(layout_.sockets_dir(sb->dir), IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE,
                        [this, weak = std::weak_ptr<Sandbox>(sb)](std::string_view name, std::uint32_t) {
                          auto s = weak.lock();
                          if (!s) return;
                          if (name.empty()) {  // overflow: look at everything again
                            read_markers(*s);
                          } else if (name == kDockerSocketName) {
                            // the probe loop checks it and pings at once
                          } else if (name == kInitExitMarker || name == kDockerdExitMarker) {
                            read_markers(*s);
                          } else {
                            return;
                          }
                          s->wake.notify();
                        });
  if (wd) sb->watch_wd = *wd;
  else spdlog::warn("{} cannot watch its socket directory ({}): falling back to polling", sb->id, wd.error().message);
}

void Supervisor::watch_pid(SandboxPtr sb) {
  if (sb->pid <= 0) return;
  sb->pid_token = pids_.watch(sb->pid, [this, weak = std::weak_ptr<Sandbox>(sb)] {
    if (auto s = weak.lock()) {
      s->pid_token = 0;
      read_markers(*s);  // an exit marker explains the end better than the pid alone
      s->process_gone = true;
      s->wake.notify();
    }
  });
}

// What watch_pid could not do at the time: the pid file read, the pidfd opened; and the
// markers, whose inotify event may have come when they could not be read.
void Supervisor::rewatch(SandboxPtr sb) {
  read_markers(*sb);
  if (sb->ended() || sb->pid_token) return;
  if (sb->pid <= 0) sb->pid = paths::read_pid_file(paths::join(layout_.bundle_dir(sb->dir), "sandbox.pid"));
  watch_pid(sb);
}

void Supervisor::unwatch_sandbox(Sandbox& sb) {
  if (sb.watch_wd >= 0) dirs_.unwatch(sb.watch_wd);
  sb.watch_wd = -1;
  if (sb.pid_token) pids_.cancel(sb.pid_token);
  sb.pid_token = 0;
}

void Supervisor::read_markers(Sandbox& sb) {
  auto dir = layout_.sockets_dir(sb.dir);
  sb.markers_unread = false;
  if (!sb.init_exited) {
    if (auto code = read_exit_marker(paths::join(dir, std::string(kInitExitMarker)), sb.markers_unread)) {
      sb.init_exited = true;
      sb.init_exit_code = code;
    }
  }
  if (!sb.dockerd_exited && ::access(paths::join(dir, std::string(kDockerdExitMarker)).c_str(), F_OK) == 0)
    sb.dockerd_exited = true;
}

// Whether sockets/ID/docker.sock is a socket (not a symlink or anything else a sandbox could
// plant there), and if so gives it its owner. sandbox-init cannot chmod/chown a socket in a
// host-bound directory (EPERM inside gVisor): the host side does it, never following links.
// By path: the sandbox can only change what is inside sockets/ID (its bind mount), not the
// directories above it, so only the last component needs AT_SYMLINK_NOFOLLOW.
bool Supervisor::prepare_docker_socket(Sandbox& sb) {
  auto path = paths::join(layout_.sockets_dir(sb.dir), std::string(kDockerSocketName));
  struct stat st {};
  auto owner = sb.request.socket_owner.value_or(Owner{0, 0});
  // Not there yet (most checks while dockerd boots), or already right (the check once dockerd
  // answers, mostly): one system call, nothing to change.
  if (::lstat(path.c_str(), &st) != 0) return false;
  if (!S_ISSOCK(st.st_mode)) {
    spdlog::warn("{} {} is not a socket; ignoring it", sb.id, path);
    return false;
  }
  if (!sb.socket_prepared && (st.st_uid != owner.uid || st.st_gid != owner.gid || (st.st_mode & 07777) != 0660)) {
    // Swapped for something else since the lstat? Then the sandbox's own file gets the owner
    // and mode a socket would: nothing outside sockets/ID is touched either way.
    if (::fchownat(AT_FDCWD, path.c_str(), owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) != 0 ||
        paths::chmod_at_nofollow(AT_FDCWD, path.c_str(), 0660) != 0)
      spdlog::warn("{} cannot set the owner of {}: {}", sb.id, path, paths::errno_text());
  }
  sb.socket_prepared = true;
  return true;
}

// 64 random bits: a collision with a sandbox in flight is as good as impossible (and
// runsc create would refuse it, failing that one launch).
std::string Supervisor::new_runsc_id() {
  char buf[24];
  std::snprintf(buf, sizeof buf, "sa%016llx", static_cast<unsigned long long>(rng_()));
  return buf;
}

std::string Supervisor::new_sandbox_id() {
  for (;;) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "sb-%012llx", static_cast<unsigned long long>(rng_() & 0xffffffffffffull));
    if (!sandboxes_.count(buf)) return buf;
  }
}

bool Supervisor::evict_one_finished() {
  for (auto n = finished_order_.size(); n > 0 && !finished_order_.empty(); --n) {
    auto id = finished_order_.front();
    finished_order_.pop_front();
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end() || !it->second->finished) continue;
    if (it->second->runsc_created) {  // its record must stay until runsc lets go
      finished_order_.push_back(id);
      continue;
    }
    paths::remove_file_and_staging(layout_.state_file(it->second->dir));
    sandboxes_.erase(it);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// Shutdown (start-up, recover(), is in recovery.cpp)

awaitable<void> Supervisor::shutdown(bool stop_all) {
  shutting_down_ = true;
  // Their clients lose the agent's connection: like a client gone, they end.
  co_await execs_.end_all("agent_shutdown", Millis(5000));
  if (stop_all) {
    for (auto& [id, sb] : sandboxes_)
      if (!sb->finished) stop(id, 10000);
    asio::steady_timer t(ex_);
    while (active() > 0) {
      t.expires_after(Millis(10));
      co_await t.async_wait(use_nothrow);
    }
  }
  co_await writer_.drain();
  // Nothing of ours stays mounted once no runsc call can be using the pin.
  if (recovered_ && runsc_.idle()) runsc_.release_pinned_netns();
}

}  // namespace sandbox_agent
