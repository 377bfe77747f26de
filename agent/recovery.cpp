// Start-up recovery: what state/ and runsc say is still there becomes the supervisor's again
// (docs/durability.md). The supervisor's own job, in a file of its own.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include <simdjson.h>

#include "log.hpp"
#include "paths.hpp"
#include "store.hpp"
#include "supervisor.hpp"

namespace sandbox_agent {

namespace {

struct RunscEntry {
  std::string status;
  pid_t pid = -1;
};

// `runsc list --format=json`: [{"id":…,"status":…,"pid":…,…},…] (null when empty). Nothing
// when the text is neither: the agent cannot tell what runsc holds.
std::optional<std::map<std::string, RunscEntry>> parse_runsc_list(const std::string& text) {
  std::map<std::string, RunscEntry> out;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(text).get(root)) return std::nullopt;
  if (root.is_null()) return out;
  simdjson::dom::array arr;
  if (root.get_array().get(arr)) return std::nullopt;
  for (auto item : arr) {
    std::string_view id, status;
    int64_t pid = -1;
    if (item["id"].get_string().get(id)) continue;
    if (item["status"].get_string().get(status)) status = "unknown";
    if (item["pid"].get_int64().get(pid)) pid = -1;
    out[std::string(id)] = {std::string(status), static_cast<pid_t>(pid)};
  }
  return out;
}

}  // namespace

// Reconciles state/ with what runsc has (docs/durability.md):
// - finished records are kept for status queries;
// - a record that never reached runsc is launched again (it never ran: at-least-once is safe);
// - a sandbox runsc still runs is adopted: watched again, re-probed if it was not ready;
// - a sandbox runsc created but never started is started (nothing of it ran yet);
// - a record whose sandbox is gone or stopped ends failed (agent_restart): it may have
//   run, so it is not run again (at-most-once);
// - a runsc sandbox under our runsc root with no record is an orphan: killed and deleted.
awaitable<Status> Supervisor::recover() {
  networks_.init(runtime_);
  std::vector<Record> records;
  if (DIR* d = ::opendir(layout_.state_dir().c_str())) {
    while (auto* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.starts_with(".") || !name.ends_with(".json")) continue;
      auto path = paths::join(layout_.state_dir(), name);
      std::string text;
      auto rec = paths::read_file(path, text, 4 << 20) ? parse_record(text)
                                                       : Result<Record>(make_error(ErrorCode::internal, paths::errno_text()));
      if (!rec) {
        spdlog::error("state record {} is unreadable ({}); moved aside to {}.bad", path, rec.error().message, path);
        ::rename(path.c_str(), (path + ".bad").c_str());
        continue;
      }
      records.push_back(std::move(rec.value()));
    }
    ::closedir(d);
  }
  // runsc calls a previous agent started may still be running (they outlive it): let them
  // finish, so that `runsc list` shows what they did.
  co_await runsc_.wait_for_strays();
  recovered_ = true;  // the root is ours (locked) and its runsc state is now in our hands
  if (auto n = runsc_.release_pinned_netns())
    spdlog::info("released runsc's pinned gofer network namespace ({} mount{})", n, n == 1 ? "" : "s");
  // What runsc holds decides every record's fate: a sandbox missing from the list is taken
  // as gone and torn down. A list that fails is asked again; if it never answers, the agent
  // must not guess (every running sandbox would be failed and deleted): it stops here.
  std::optional<std::map<std::string, RunscEntry>> listing;
  std::string list_error;
  asio::steady_timer pause(ex_);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto listed = co_await runsc_.list();
    if (listed.ok()) listing = parse_runsc_list(listed.output);
    if (listing) break;
    list_error = listed.ok() ? "its output is not a JSON list: " + listed.output.substr(0, 200) : listed.describe();
    spdlog::warn("runsc list failed (attempt {} of 3): {}", attempt, list_error);
    if (attempt < 3) {
      pause.expires_after(Millis(500 * attempt));
      co_await pause.async_wait(use_nothrow);
    }
  }
  if (!listing) {
    bool depends = std::any_of(records.begin(), records.end(), [](const Record& r) { return !r.finished; });
    if (depends)
      co_return make_error(ErrorCode::internal,
                           "runsc list failed 3 times (" + list_error +
                               "): cannot tell which sandboxes still run, so none is adopted or torn down; fix "
                               "runsc and start the agent again");
    spdlog::warn("runsc list failed; no record depends on it, so only orphans in runsc's root go unnoticed");
    listing.emplace();
  }
  auto& in_runsc = *listing;
  std::sort(records.begin(), records.end(),
            [](const Record& a, const Record& b) { return a.created_at_us < b.created_at_us; });

  std::size_t adopted = 0, relaunched = 0, lost = 0;
  std::set<std::string> network_keys;    // namespaces a record accounts for
  std::vector<SandboxEgress> live_egress;  // the firewall rules of sandboxes that live on
  // Started once the network is reconciled, so no launch races the firewall's reset.
  std::vector<SandboxPtr> to_run, to_keep_logs;
  for (auto& rec : records) {
    auto sb = std::make_shared<Sandbox>(ex_);
    sb->id = rec.id;
    sb->dir = rec.dir;
    sb->pool = rec.pool;
    sb->pool_start = rec.pool_start;
    sb->pool_template = rec.pool_template;
    sb->runsc_id = rec.runsc_id;
    sb->recorded = true;
    sb->host_prepared = true;  // but not for one launched again (below)
    sb->request = std::move(rec.request);
    sb->origin = rec.origin;
    sb->state = rec.state;
    sb->reason = rec.reason;
    sb->exit_code = rec.exit_code;
    sb->created_at_us = rec.created_at_us;
    sb->ready_at_us = rec.ready_at_us;
    sb->accepted_at = Clock::now() - std::chrono::microseconds(std::max<std::int64_t>(0, now_unix_us() - rec.created_at_us));
    sb->timings = rec.timings;
    sb->pid = rec.pid;
    sb->docker_socket = rec.docker_socket;
    sb->log_tail = rec.log_tail;
    sb->capabilities = rec.capabilities;
    sb->stop_requested = rec.stop_requested;
    if (rec.stop_requested && rec.reason == reason::ttl_expired) sb->stop_reason = rec.reason;
    sb->ttl_deadline_us = rec.ttl_deadline_us;
    sb->runsc_created = rec.runsc_created;
    sb->network_intent = rec.network_intent;
    sb->network = std::move(rec.network);
    sandboxes_[sb->id] = sb;
    if (sb->network_intent) network_keys.insert(sb->runsc_id);
    if (!rec.finished && !is_terminal(sb->state))  // theirs until DEL, as before the restart
      (void)networks_.reserve_ports(sb->runsc_id, sb->request.ports, /*check_host=*/false);
    // Taken out of the map: whatever is left there afterwards has no record (an orphan).
    std::optional<RunscEntry> listed_entry;
    // A finished record's runsc sandbox is left in the map, an orphan: an agent before this
    // one could finish a record whose delete runsc had refused.
    if (auto found = in_runsc.find(sb->runsc_id); found != in_runsc.end() && !rec.finished) {
      listed_entry = std::move(found->second);
      in_runsc.erase(found);
    }
    bool known_to_runsc = listed_entry.has_value();

    if (rec.finished || (is_terminal(sb->state) && !known_to_runsc)) {
      sb->finished = true;
      finished_order_.push_back(sb->id);
      if (!rec.finished) {  // crashed between the end and the last record
        sb->runsc_created = false;
        clean_after_restart(*sb);
      }
      to_keep_logs.push_back(sb);  // a crash before its logs left their tmpfs (and its network's DEL)
      continue;
    }
    // Only a record from before runsc's call: one that says ready or probing has run, and a
    // lost runsc.log must not make it run twice.
    if (sb->runsc_created && !known_to_runsc &&
        (sb->state == SandboxState::accepted || sb->state == SandboxState::creating) && !runsc_create_was_run(*sb)) {
      // The record promised it might exist, but runsc was never asked (the agent died
      // between the record and the call): it never ran either.
      sb->runsc_created = false;
    }
    if (!sb->runsc_created) {  // never reached runsc: launch it again
      ++relaunched;
      // A record on disk that already says runsc may hold it keeps that promise: no
      // `creating` record is needed before runsc create, as for a first launch.
      if (rec.runsc_created && sb->request.network != NetworkMode::bridge) sb->runsc_promised = true;
      sb->state = SandboxState::accepted;
      sb->host_prepared = false;  // made again when its turn comes
      sb->pending = true;
      ++pending_launches_;
      spdlog::info("{} recovered: never reached runsc, launching again", sb->id);
      to_run.push_back(sb);
      continue;
    }
    sb->adopted = true;
    auto runsc_status = known_to_runsc ? listed_entry->status : std::string("absent");
    bool alive = runsc_status == "running" || (runsc_status == "created" && !sb->stop_requested);
    if (alive && !is_terminal(sb->state)) {
      ++adopted;
      if (listed_entry->pid > 0) sb->pid = listed_entry->pid;
      else if (sb->pid <= 0) sb->pid = paths::read_pid_file(paths::join(layout_.bundle_dir(sb->dir), "sandbox.pid"));
      watch_sandbox(sb);
      watch_pid(sb);
      read_markers(*sb);
      if (runsc_status == "created") {
        // Created, never started: nothing of it has run yet, so it is started now.
        sb->state = SandboxState::creating;
      } else if (sb->state == SandboxState::accepted || sb->state == SandboxState::creating ||
                 sb->state == SandboxState::starting) {
        transition(*sb, sb->request.docker.enabled ? SandboxState::probing : SandboxState::ready);
      }
      spdlog::info("{} adopted after a restart ({} in runsc, {}, sandbox pid {})", sb->id, runsc_status,
                   to_string(sb->state), sb->pid);
      execs_.end_left_behind(exec_target(*sb));
      if (sb->network_intent && sb->network)
        live_egress.push_back(networks_.egress_for(sb->runsc_id, sb->network->ip, sb->request));
    } else if (!is_terminal(sb->state)) {
      ++lost;
      // A stop was asked for and runsc no longer runs the sandbox (gone, or killed and not
      // yet deleted when the agent died): that is the stop, not a loss.
      if (sb->stop_requested && (!known_to_runsc || runsc_status == "stopped" || runsc_status == "created")) {
        transition(*sb, SandboxState::stopped, sb->stop_reason);  // stop_requested, or its TTL's
      } else {
        fail(*sb, reason::agent_restart,
             known_to_runsc ? "found " + runsc_status + " in runsc after the agent restarted"
                            : "the sandbox was gone when the agent restarted");
      }
    }
    to_run.push_back(sb);
  }

  // Before any launch: the firewall holds exactly the living sandboxes' rules, and namespaces
  // no record claims (a crash between creating one and recording it cannot happen: intent
  // is recorded first; but a record can be lost to a bad disk) are torn down.
  co_await networks_.reconcile(std::move(live_egress), std::move(network_keys));
  // One clean-up per finished record, in order: DEL writes cni.log, which keep_logs moves.
  for (auto& sb : to_keep_logs)
    asio::co_spawn(ex_, [this, sb]() -> awaitable<void> {
      if (sb->network_intent) co_await detach_network(sb);
      co_await keep_logs(sb);
    }, asio::detached);
  for (auto& sb : to_run) asio::co_spawn(ex_, lifecycle(sb), asio::detached);

  std::size_t orphans = 0;
  for (const auto& [runsc_id, entry] : in_runsc) {
    ++orphans;
    if (!config_.clean_orphans) {
      spdlog::warn("runsc sandbox {} ({}) has no record; leaving it (clean_orphans is off)", runsc_id, entry.status);
      continue;
    }
    spdlog::warn("runsc sandbox {} ({}) has no record: removing it", runsc_id, entry.status);
    asio::co_spawn(ex_, [this, runsc_id]() -> awaitable<void> {
      co_await runsc_.kill(runsc_id, "KILL", "");
      co_await runsc_.remove(runsc_id, "");
    }, asio::detached);
  }
  if (!records.empty() || orphans)
    spdlog::info("recovered {} records: {} adopted, {} launched again, {} lost, {} orphans", records.size(),
                 adopted, relaunched, lost, orphans);
  co_return Ok{};
}

// Whether `runsc create` (or `runsc run`, its create and start in one) was ever started for
// this sandbox: the driver writes each call's command line to runsc.log just before it runs it.
bool Supervisor::runsc_create_was_run(const Sandbox& sb) const {
  // The agent writes each runsc call into runsc.log before making it. The sandbox's console
  // shares the file (up to its log quota, however large), so it is searched line by line,
  // never read whole. Past 4 MiB the next runsc call rotated the create line into runsc.log.1.
  const std::string tail = " " + sb.runsc_id;
  const std::string calls[] = {" " + std::string(kCreateCallHead) + " ", " " + std::string(kRunCallHead) + " "};
  auto is_create_call = [&](std::string_view line) {
    if (line.size() < tail.size() || line.substr(line.size() - tail.size()) != tail) return false;
    for (const std::string& call : calls)
      if (line.find(call) != std::string_view::npos) return true;
    return false;
  };
  constexpr std::size_t kMaxCallLine = 1 << 20;  // a call line is argv: paths and flags
  auto path = paths::join(layout_.logs_dir(sb.dir), "runsc.log");
  for (const std::string& file : {path, path + ".1"}) {
    int found = paths::find_untrusted_line(file, kMaxCallLine, is_create_call);
    if (found > 0) return true;
    if (found < 0 && errno != ENOENT) return true;  // unsure: assume it was
  }
  return false;
}

// Finishes the tear-down of a sandbox that ended (and left runsc) before the agent stopped.
void Supervisor::clean_after_restart(Sandbox& sb) {
  paths::remove_tree(layout_.bundle_dir(sb.dir));
  paths::remove_tree(layout_.sockets_dir(sb.dir));
  persist(sb);
}

}  // namespace sandbox_agent
