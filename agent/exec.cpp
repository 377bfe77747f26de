#include "exec.hpp"

#include <asio/post.hpp>
#include <simdjson.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "log.hpp"
#include "paths.hpp"

namespace sandbox_agent {

namespace {

constexpr std::size_t kMaxReport = 64 * 1024;  // what runsc's errors or cp's report may take
constexpr Millis kKillRetry{20};
constexpr int kKillAttempts = 100;  // ~2 s of retries before runsc's own process is killed

// What is in a pipe now (the writers are gone or done), at most kMaxReport bytes.
std::string drain(const UniqueFd& fd) {
  std::string out;
  if (!fd) return out;
  char buf[16384];
  while (out.size() < kMaxReport) {
    ssize_t n = ::read(fd.get(), buf, std::min(sizeof buf, kMaxReport - out.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

long read_pid(const std::string& path) {
  std::string text;
  if (!paths::read_regular_file(path, text, 64)) return -1;
  char* end = nullptr;
  long pid = std::strtol(text.c_str(), &end, 10);
  return end != text.c_str() && pid > 0 ? pid : -1;
}

// runsc --log-fd writes one JSON object per error ({"msg":…,"level":"error",…}): the messages.
std::string runsc_errors(std::string_view text) {
  std::string out;
  simdjson::dom::parser parser;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty()) continue;
    simdjson::dom::element e;
    std::string_view msg;
    std::string piece = !parser.parse(line.data(), line.size()).get(e) && !e["msg"].get_string().get(msg)
                            ? std::string(msg) : std::string(line);
    out += (out.empty() ? "" : "; ") + piece;
  }
  return out;
}

// A pipe whose read end does not block (drained once its writers are gone).
bool make_pipe(UniqueFd& read_end, UniqueFd& write_end) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return false;
  read_end.reset(p[0]);
  write_end.reset(p[1]);
  return ::fcntl(p[0], F_SETFL, O_NONBLOCK) == 0;
}

}  // namespace

struct Execs::Running {
  std::string id, sandbox_id, runsc_id, pid_file, log_path;
  Child child;
  UniqueFd errors;    // runsc's --log-fd
  UniqueFd captured;  // stderr, when the caller asked to capture it
  Done done;
  std::uint64_t timeout_ms = 0;
  std::string reason;  // set once the agent decided to end it
  bool exited = false;
};

Execs::Execs(asio::any_io_executor ex, Runsc& runsc, unsigned max)
    : ex_(ex), runsc_(runsc), max_(max), changed_(ex) {}

Execs::~Execs() = default;  // a Child still running is killed and reaped by its destructor

Result<std::string> Execs::start(const Target& target, const ExecArgs& args, Stdio stdio, Done done) {
  if (running_.size() >= max_)
    return make_error(ErrorCode::overloaded, std::to_string(max_) + " execs and copies are running (limits.max_execs)");
  auto r = std::make_shared<Running>();
  r->id = "exec-" + std::to_string(++next_id_);
  r->sandbox_id = target.sandbox_id;
  r->runsc_id = target.runsc_id;
  r->log_path = target.log_path;
  r->pid_file = paths::join(target.work_dir, r->id + ".pid");
  r->timeout_ms = args.timeout_ms;
  r->done = std::move(done);
  ::unlink(r->pid_file.c_str());

  UniqueFd errors_w, captured_w;
  if (!make_pipe(r->errors, errors_w) || (stdio.capture_err && !make_pipe(r->captured, captured_w)))
    return make_error(ErrorCode::internal, "pipe: " + paths::errno_text());
  std::string user = args.user ? std::to_string(args.user->uid) + ":" + std::to_string(args.user->gid) : "";
  auto argv = runsc_.exec_argv(target.runsc_id, args.args, args.env, args.cwd, user, r->pid_file);
  SpawnSpec spec{argv, stdio.out.get(), stdio.capture_err ? captured_w.get() : stdio.err.get()};
  spec.stdin_fd = stdio.in.get();
  spec.fd3 = errors_w.get();
  auto child = spawn(spec);
  // Our copies of the client's descriptors and the write ends close here: the client sees
  // EOF when the process is done, and a pipe drained later ends.
  if (!child) return make_error(ErrorCode::internal, "cannot run runsc exec: " + child.error().message);
  r->child = std::move(child.value());
  running_.emplace(r->id, r);
  spdlog::info("exec {} in {}: {} (runsc pid {})", r->id, r->sandbox_id, args.args.front(), r->child.pid());
  // Posted, not run here: `done` must not come before the caller has the id.
  asio::post(ex_, [this, r] { asio::co_spawn(ex_, supervise(r), asio::detached); });
  return r->id;
}

awaitable<void> Execs::supervise(RunningPtr r) {
  asio::steady_timer timeout(ex_);
  if (r->timeout_ms) {
    timeout.expires_after(Millis(r->timeout_ms));
    timeout.async_wait([this, weak = std::weak_ptr<Running>(r)](std::error_code ec) {
      if (auto running = weak.lock(); running && !ec) end(running, "timeout");
    });
  }
  ExitStatus st = co_await r->child.wait();
  r->exited = true;
  timeout.cancel();
  long inner_pid = read_pid(r->pid_file);
  ::unlink(r->pid_file.c_str());
  std::string errors = runsc_errors(drain(r->errors));
  std::string captured = drain(r->captured);
  running_.erase(r->id);
  changed_.notify();

  if (st.exec_errno) {
    std::string why = exec_error_text("runsc exec", st.exec_errno);
    spdlog::warn("exec {} in {}: {}", r->id, r->sandbox_id, why);
    r->done(make_error(ErrorCode::internal, why), captured);
    co_return;
  }
  ExecOutcome o;
  o.exit_code = st.signal ? 128 + st.signal : st.code;
  o.reason = r->reason;
  if (!o.reason.empty() && o.exit_code == 128 + SIGKILL) o.signal = SIGKILL;
  // runsc exits 128 when it could not run the command; then it wrote no internal pid.
  if (o.reason.empty() && !st.signal && st.code == 128 && inner_pid < 0) {
    if (errors.empty()) errors = "runsc exec failed (exit code 128)";
    spdlog::info("exec {} in {} did not start: {}", r->id, r->sandbox_id, errors);
    bool bad_command = errors.find("failed to load") != std::string::npos ||
                       errors.find("no such file") != std::string::npos ||
                       errors.find("permission denied") != std::string::npos;
    Error e = bad_command ? make_error(ErrorCode::invalid_request, "cannot run it: " + errors, "/args/0")
                          : make_error(ErrorCode::internal, "runsc exec failed: " + errors);
    r->done(e, captured);
    co_return;
  }
  spdlog::info("exec {} in {} ended: exit code {}{}", r->id, r->sandbox_id, o.exit_code,
               o.reason.empty() ? "" : " (" + o.reason + ")");
  r->done(o, captured);
}

void Execs::end(const std::string& exec_id, std::string_view reason) {
  if (auto it = running_.find(exec_id); it != running_.end()) end(it->second, reason);
}

void Execs::end_sandbox(const std::string& sandbox_id, std::string_view reason) {
  std::vector<RunningPtr> of;
  for (auto& [id, r] : running_)
    if (r->sandbox_id == sandbox_id) of.push_back(r);
  for (auto& r : of) end(r, reason);
}

void Execs::end(const RunningPtr& r, std::string_view reason) {
  if (r->exited || !r->reason.empty()) return;
  r->reason = std::string(reason);
  spdlog::info("ending exec {} in {}: {}", r->id, r->sandbox_id, r->reason);
  asio::co_spawn(ex_, kill_inside(r), asio::detached);
}

// Killing runsc's process would leave the one inside running: kill that one, by its pid in
// the sandbox, and runsc exec reports it. runsc's own process goes only if it lingers.
awaitable<void> Execs::kill_inside(RunningPtr r) {
  asio::steady_timer pause(ex_);
  for (int attempt = 0; attempt < kKillAttempts && !r->exited; ++attempt) {
    long pid = read_pid(r->pid_file);
    if (pid > 0) {
      auto killed = co_await runsc_.kill_process(r->runsc_id, pid, "KILL", r->log_path);
      if (killed.ok()) {
        for (int wait = 0; wait < kKillAttempts && !r->exited; ++wait) {
          pause.expires_after(kKillRetry);
          co_await pause.async_wait(use_nothrow);
        }
        break;
      }
    }
    pause.expires_after(kKillRetry);
    co_await pause.async_wait(use_nothrow);
  }
  if (!r->exited) {
    spdlog::warn("exec {} in {}: runsc exec did not end; killing it", r->id, r->sandbox_id);
    r->child.kill(SIGKILL);
  }
}

// Read and removed now, during recovery, before any exec of this agent can start: its exec
// ids start again at 1, and a pid file of the same name read later would be its own.
void Execs::end_left_behind(const Target& target) {
  std::vector<long> pids;
  if (DIR* d = ::opendir(target.work_dir.c_str())) {
    while (auto* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      if (!name.starts_with("exec-") || !name.ends_with(".pid")) continue;
      auto file = paths::join(target.work_dir, std::string(name));
      if (long pid = read_pid(file); pid > 0) pids.push_back(pid);
      ::unlink(file.c_str());
    }
    ::closedir(d);
  }
  if (!pids.empty()) asio::co_spawn(ex_, kill_left_behind(target, std::move(pids)), asio::detached);
}

awaitable<void> Execs::kill_left_behind(Target target, std::vector<long> pids) {
  for (long pid : pids) {
    auto killed = co_await runsc_.kill_process(target.runsc_id, pid, "KILL", target.log_path);
    spdlog::info("{}: killed process {} an exec of the previous agent left running{}", target.sandbox_id, pid,
                 killed.ok() ? "" : " (it had ended: " + killed.describe() + ")");
  }
}

awaitable<void> Execs::end_all(std::string_view reason, Millis bound) {
  std::vector<RunningPtr> all;
  for (auto& [id, r] : running_) all.push_back(r);
  for (auto& r : all) end(r, reason);
  auto deadline = Clock::now() + bound;
  while (!running_.empty() && Clock::now() < deadline) co_await changed_.wait_until(deadline);
  if (!running_.empty()) spdlog::warn("{} exec(s) still running at shutdown", running_.size());
}

}  // namespace sandbox_agent
