#include "runsc.hpp"

#include <asio/posix/stream_descriptor.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "paths.hpp"
#include "log.hpp"
#include "sandbox_agent/status.hpp"

namespace sandbox_agent {

namespace {

constexpr off_t kRotateBytes = 4 << 20;
constexpr std::size_t kExcerptBytes = 4096;
constexpr std::size_t kMaxStdout = 64 << 20;  // `list` of many sandboxes

// Opens runsc.log for appending, rotating it first when it has grown too large; `size` is
// its size when opened.
int open_log(const std::string& path, off_t& size) {
  if (path.empty()) return -1;
  // O_NOFOLLOW: logs/ID is writable from inside the sandbox; a symlink planted there must
  // not make us append to some other file. Read-write: we read the excerpt back.
  auto open_it = [&] {
    return ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0640);
  };
  int fd = open_it();
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) return fd;
  size = st.st_size;
  if (!S_ISREG(st.st_mode) || st.st_size <= kRotateBytes) return fd;
  ::close(fd);
  ::rename(path.c_str(), (path + ".1").c_str());
  size = 0;
  return open_it();
}

// The last kExcerptBytes of `text`, without its trailing newlines and spaces.
std::string excerpt_of(std::string text) {
  if (text.size() > kExcerptBytes) text.erase(0, text.size() - kExcerptBytes);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// Whether `args` are a call recovery looks for in runsc.log (runsc_create_was_run): one
// starting with the verb of kCreateCallHead or kRunCallHead.
bool creates_a_sandbox(const std::vector<std::string>& args) {
  for (std::string_view head : {kCreateCallHead, kRunCallHead})
    if (!args.empty() && args.front() == head.substr(0, head.find(' '))) return true;
  return false;
}

// The words of `head` (kCreateCallHead, …), then `rest`.
std::vector<std::string> with_head(std::string_view head, std::vector<std::string> rest) {
  std::vector<std::string> args;
  for (std::size_t i = 0; i < head.size();) {
    auto end = std::min(head.find(' ', i), head.size());
    args.emplace_back(head.substr(i, end - i));
    i = end + 1;
  }
  args.insert(args.end(), std::make_move_iterator(rest.begin()), std::make_move_iterator(rest.end()));
  return args;
}

std::string read_from(int fd, off_t from) {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || st.st_size <= from) return {};
  off_t start = std::max<off_t>(from, st.st_size - static_cast<off_t>(kExcerptBytes));
  std::string out(static_cast<std::size_t>(st.st_size - start), '\0');
  ssize_t n = ::pread(fd, out.data(), out.size(), start);
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return excerpt_of(std::move(out));
}

}  // namespace

std::string RunscResult::describe() const {
  std::string s;
  if (!spawn_error.empty()) s = spawn_error;
  else if (timed_out) s = "timed out and was killed";
  else s = status.describe();
  if (!log_excerpt.empty()) s += ": " + log_excerpt;
  return s;
}

Runsc::Runsc(asio::any_io_executor ex, const RunscConfig& config, const RuntimeInfo& runtime,
             std::string state_root, unsigned max_concurrent, Metrics& metrics)
    : ex_(ex), config_(config), runtime_(runtime), state_root_(std::move(state_root)),
      max_concurrent_(max_concurrent), metrics_(metrics), slots_(ex, max_concurrent) {}

std::vector<std::string> Runsc::base_argv(std::optional<NetworkMode> network, bool docker, bool host_cgroup) const {
  std::vector<std::string> argv{config_.path, "--root", state_root_};
  // The request's network mode decides runsc's --network; the configured flag is the default
  // (none) for every other call.
  bool own_network = network && *network != NetworkMode::none;
  for (const auto& f : config_.flags) {
    if (own_network && flag_name(f) == "network") continue;
    argv.push_back(f);
  }
  argv.insert(argv.end(), runtime_.common_flags.begin(), runtime_.common_flags.end());
  if (docker) argv.insert(argv.end(), runtime_.docker_flags.begin(), runtime_.docker_flags.end());
  if (!host_cgroup) argv.insert(argv.end(), runtime_.no_cgroup_flags.begin(), runtime_.no_cgroup_flags.end());
  if (own_network) argv.push_back(*network == NetworkMode::host ? "--network=host" : "--network=sandbox");
  return argv;
}

awaitable<Runsc::Slot> Runsc::reserve(AsyncSemaphore::Abandon* abandon) {
  // Named, not `co_return Slot(…)` beside a co_await in a condition: g++ 12 miscompiles that
  // (SIGILL at run time).
  bool granted = co_await slots_.acquire(abandon);
  Slot slot(granted ? &slots_ : nullptr);
  co_return slot;
}

awaitable<RunscResult> Runsc::invoke(std::vector<std::string> args, std::string log_path,
                                     Output output, std::optional<NetworkMode> network, bool docker,
                                     bool host_cgroup, Slot slot) {
  if (!slot) slot = co_await reserve();

  RunscResult result;
  auto argv = base_argv(network, docker, host_cgroup);
  argv.insert(argv.end(), args.begin(), args.end());

  off_t log_start = 0;
  int log_fd = open_log(log_path, log_start);
  struct CloseFd {
    int fd;
    ~CloseFd() { if (fd >= 0) ::close(fd); }
  } close_log{log_fd};
  bool recorded = false;
  if (log_fd >= 0) {
    std::string header = format_time(now_unix_us()) + " runsc";
    for (std::size_t i = 1; i < argv.size(); ++i) header += " " + argv[i];
    header += "\n";
    // What runsc writes starts after the header (the excerpt of a failure is read from there);
    // with O_APPEND the offset is the end of what we wrote, even if the sandbox's console
    // (the same file) appended meanwhile.
    recorded = paths::write_all(log_fd, header);
    if (recorded)
      if (off_t end = ::lseek(log_fd, 0, SEEK_CUR); end >= 0) log_start = end;
  }
  // After a crash, recovery tells whether a sandbox reached runsc by this line
  // (runsc_create_was_run): without it, runsc must not be asked to create one.
  if (!recorded && !log_path.empty() && creates_a_sandbox(args)) {
    result.spawn_error = "cannot write the call to " + log_path + ": " + paths::errno_text();
    co_return result;
  }

  if (log_fd < 0 && log_path.empty()) {
    // A call with no log of its own (list, state): its stderr goes to memory, so that a
    // failure can say what runsc said.
    log_fd = close_log.fd = ::memfd_create("runsc-stderr", MFD_CLOEXEC);
    log_start = 0;
  }
  const bool capture = output != Output::log;
  int pipe_fds[2] = {-1, -1};
  if (capture && ::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    result.spawn_error = "pipe: " + paths::errno_text();
    co_return result;
  }
  SpawnSpec spec{argv, capture ? pipe_fds[1] : log_fd, output == Output::runsc_only ? pipe_fds[1] : log_fd};
  auto began = std::chrono::steady_clock::now();
  // The helper where it can take the call; the agent's own clone otherwise (its queue full).
  auto child = helper_ ? helper_->spawn(spec) : spawn(spec);
  if (!child && helper_) {
    spdlog::debug("{}; forking runsc {} here", child.error().message, args.empty() ? "" : args.front());
    ++metrics_.runsc_forked_here;
    child = spawn(spec);
  }
  if (pipe_fds[1] >= 0) ::close(pipe_fds[1]);
  if (!child) {
    if (pipe_fds[0] >= 0) ::close(pipe_fds[0]);
    result.spawn_error = child.error().message;
    co_return result;
  }

  // The deadline kills the child; the handler owns what it touches, so it is safe to run
  // after this coroutine is gone.
  auto proc = std::make_shared<Child>(std::move(child.value()));
  auto timed_out = std::make_shared<bool>(false);
  std::shared_ptr<asio::posix::stream_descriptor> out;
  if (capture) out = std::make_shared<asio::posix::stream_descriptor>(ex_, pipe_fds[0]);
  asio::steady_timer deadline(ex_, Millis(config_.timeout_ms));
  deadline.async_wait([proc, timed_out, out](std::error_code ec) {
    if (!ec) {
      *timed_out = true;
      proc->kill(SIGKILL);
      // Something runsc started may still hold the pipe: stop reading too.
      if (out) out->cancel(ec);
    }
  });

  if (out) {
    char buf[16384];
    for (;;) {
      auto [ec, n] = co_await out->async_read_some(asio::buffer(buf), use_nothrow);
      if (ec) break;  // EOF once runsc (and anything holding the pipe) is gone, or the deadline
      if (result.output.size() + n <= kMaxStdout) result.output.append(buf, n);
    }
  }
  result.status = co_await proc->wait();
  deadline.cancel();
  if (result.status.exec_errno) result.spawn_error = exec_error_text(argv[0], result.status.exec_errno);
  metrics_.observe_runsc(args.empty() ? "" : args.front(),
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
  result.timed_out = *timed_out;
  if (output != Output::runsc_only) {
    if (!result.ok()) result.log_excerpt = read_from(log_fd, log_start);  // only a failure is described
    co_return result;
  }
  if (log_fd >= 0) paths::write_all(log_fd, result.output);  // into the log as if written there (O_APPEND)
  result.log_excerpt = excerpt_of(std::move(result.output));
  result.output.clear();
  co_return result;
}

namespace {

// Processes whose command line starts with `prefix` (our runsc invocations: runsc's own
// sandbox and gofer processes rename themselves, so they do not match).
std::vector<pid_t> processes_with_argv_prefix(const std::vector<std::string>& prefix) {
  std::vector<pid_t> found;
  DIR* d = ::opendir("/proc");
  if (!d) return found;
  while (auto* e = ::readdir(d)) {
    pid_t pid = std::atoi(e->d_name);
    if (pid <= 0 || pid == ::getpid()) continue;
    std::string cmdline;
    if (!paths::read_file("/proc/" + std::string(e->d_name) + "/cmdline", cmdline, 65536)) continue;
    std::size_t pos = 0;
    bool match = true;
    for (const auto& arg : prefix) {
      if (cmdline.compare(pos, arg.size() + 1, arg + '\0') != 0) {
        match = false;
        break;
      }
      pos += arg.size() + 1;
    }
    // An exec outlives the agent that started it (a client's stream): not a stray call.
    if (match && cmdline.find(std::string("\0exec\0", 6)) != std::string::npos) match = false;
    if (match) found.push_back(pid);
  }
  ::closedir(d);
  return found;
}

}  // namespace

awaitable<void> Runsc::wait_for_strays() {
  std::vector<std::string> prefix{config_.path, "--root", state_root_};
  auto deadline = Clock::now() + Millis(config_.timeout_ms);
  asio::steady_timer t(ex_);
  bool logged = false;
  for (;;) {
    auto strays = processes_with_argv_prefix(prefix);
    if (strays.empty()) co_return;
    if (Clock::now() >= deadline) {
      spdlog::warn("killing {} runsc call(s) left by a previous agent", strays.size());
      for (pid_t p : strays) ::kill(p, SIGKILL);
      deadline = Clock::now() + Millis(1000);
    } else if (!logged) {
      spdlog::info("waiting for {} runsc call(s) a previous agent started", strays.size());
      logged = true;
    }
    t.expires_after(Millis(10));
    co_await t.async_wait(use_nothrow);
  }
}

unsigned Runsc::release_pinned_netns() {
  auto pin = paths::join(state_root_, "null-netns");
  unsigned n = 0;
  while (n < 4096 && ::umount2(pin.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) ++n;
  return n;
}

awaitable<RunscResult> Runsc::create(const std::string& id, const std::string& bundle,
                                     const std::string& pid_file, const std::string& log_path,
                                     NetworkMode network, bool docker, bool host_cgroup, Slot slot) {
  return invoke(with_head(kCreateCallHead, {bundle, "--pid-file", pid_file, id}), log_path, Output::log, network,
                docker, host_cgroup, std::move(slot));
}

RunHalves split_run(std::int64_t began_us, std::int64_t ended_us, std::int64_t pid_file_us) {
  ended_us = std::max(ended_us, began_us);
  RunHalves h;
  h.created_at_us = std::clamp(pid_file_us, began_us, ended_us);
  h.create_ms = (h.created_at_us - began_us) / 1000;
  h.start_ms = (ended_us - began_us) / 1000 - h.create_ms;
  return h;
}

awaitable<RunscResult> Runsc::run(const std::string& id, const std::string& bundle,
                                  const std::string& pid_file, const std::string& log_path,
                                  NetworkMode network, bool docker, bool host_cgroup, Slot slot) {
  return invoke(with_head(kRunCallHead, {bundle, "--pid-file", pid_file, id}), log_path, Output::log,
                network, docker, host_cgroup, std::move(slot));
}

awaitable<RunscResult> Runsc::start(const std::string& id, const std::string& log_path, NetworkMode network,
                                    bool host_cgroup) {
  // Current runsc sets up the sandbox's network at start, from start's own --network.
  return invoke({"start", id}, log_path, Output::log, network, false, host_cgroup);
}

awaitable<RunscResult> Runsc::kill(const std::string& id, const char* signal, const std::string& log_path) {
  return invoke({"kill", id, signal}, log_path, Output::log);
}

awaitable<RunscResult> Runsc::remove(const std::string& id, const std::string& log_path) {
  return invoke({"delete", "--force", id}, log_path, Output::runsc_only);
}

awaitable<RunscResult> Runsc::kill_process(const std::string& id, long pid, const char* signal,
                                           const std::string& log_path) {
  return invoke({"kill", "--pid=" + std::to_string(pid), id, signal}, log_path, Output::log);
}

std::vector<std::string> Runsc::exec_argv(const std::string& id, const std::vector<std::string>& args,
                                          const std::vector<std::string>& env, const std::string& cwd,
                                          const std::string& user, const std::string& internal_pid_file) const {
  auto argv = base_argv(std::nullopt, false);
  argv.push_back("--log-fd=3");
  argv.push_back("exec");
  argv.push_back("--internal-pid-file=" + internal_pid_file);
  if (!cwd.empty()) argv.push_back("--cwd=" + cwd);
  if (!user.empty()) argv.push_back("--user=" + user);
  for (const auto& e : env) argv.push_back("--env=" + e);
  argv.push_back(id);  // flags end here: what follows is the command, dashes and all
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

awaitable<RunscResult> Runsc::state(const std::string& id) { return invoke({"state", id}, "", Output::capture_stdout); }

awaitable<RunscResult> Runsc::list() { return invoke({"list", "--format=json"}, "", Output::capture_stdout); }

}  // namespace sandbox_agent
