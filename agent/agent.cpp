// The Agent facade: builds the modules and wires them in the one direction data flows:
// intakes → supervisor (spec → runtime → probe → store) → events → intakes' replies.
#include "sandbox_agent/agent.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/post.hpp>

#include "durable_writer.hpp"
#include "events.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "metrics_server.hpp"
#include "paths.hpp"
#include "reactor.hpp"
#include "runtime_probe.hpp"
#include "pools.hpp"
#include "socket_server.hpp"
#include "spawn_helper.hpp"
#include "spool.hpp"
#include "supervisor.hpp"
#include "watchers.hpp"

namespace sandbox_agent {

namespace {

// Each sandbox in flight holds a few descriptors (pidfd, probe socket): use what we may.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlimit want = rl;
  want.rlim_max = std::max<rlim_t>(rl.rlim_max, 1 << 20);
  want.rlim_cur = want.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &want) != 0) {
    want = rl;
    want.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &want);
  }
}

Status make_layout(const Config& c) {
  struct Dir {
    std::string path;
    unsigned mode;
  };
  // sockets/ is traversable so that a socket_owner can reach its own sockets/ID/ (0700).
  for (const auto& d : {Dir{c.root, 0755}, Dir{paths::join(c.root, "state"), 0700},
                        Dir{paths::join(c.root, "bundles"), 0700}, Dir{paths::join(c.root, "sockets"), 0711},
                        Dir{paths::join(c.root, "logs"), 0750}, Dir{paths::join(c.root, "runsc"), 0700}}) {
    if (!paths::make_dirs(d.path, d.mode))
      return make_error(ErrorCode::internal, "creating " + d.path + ": " + paths::errno_text());
  }
  ::chmod(paths::join(c.root, "sockets").c_str(), 0711);
  return Ok{};
}

// One agent per root: an exclusive lock on ROOT/agent.lock, taken before anything under the
// root is read or written (recovery would otherwise adopt, or launch again, the sandboxes of
// an agent that is alive). Held until the process exits; the kernel drops it on any death.
Result<int> lock_root(const std::string& root) {
  if (!paths::make_dirs(root, 0755))
    return make_error(ErrorCode::internal, "creating " + root + ": " + paths::errno_text());
  auto path = paths::join(root, "agent.lock");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return make_error(ErrorCode::internal, "opening " + path + ": " + paths::errno_text());
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char pid[32] = {};
    ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      std::string holder = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "?";
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      return make_error(ErrorCode::internal, "another agent (pid " + holder + ") is running with root " + root);
    }
    errno = err;
    return make_error(ErrorCode::internal, "locking " + path + ": " + paths::errno_text());
  }
  auto text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) < 0) { /* the pid is informative only */ }
  return fd;
}

}  // namespace

struct Agent::Impl {
  Impl(asio::io_context& io, Config cfg, AgentOptions opts)
      : ex(io.get_executor()), config(std::move(cfg)), options(std::move(opts)), helper(ex), writer(ex), dirs(ex), pids(ex),
        supervisor(ex, config, runtime, events, writer, dirs, pids),
        pools(ex, config, supervisor, events),
        socket(ex, config, supervisor, events, pools),
        spool(ex, config, supervisor, events, dirs, writer),
        metrics_http(ex, [this] { return metrics_text(); }) {
    socket.set_metrics([this] { return metrics_text(); });
  }

  // Everything counted, and what is read now: rendered whenever scraped (a few µs per
  // sandbox held, for the states; no I/O but /proc/self).
  std::string metrics_text() const {
    MetricsSnapshot s;
    s.counted = &supervisor.metrics();
    s.stats = supervisor.stats();
    s.sandboxes = supervisor.count_by_state();
    s.version = SANDBOX_AGENT_VERSION;
    s.runtime_version = runtime.version;
    s.platform = runtime.platform;
    s.connections = socket.connections();
    s.connections_total = socket.connections_total();
    s.spool_in_progress = spool.in_progress();
    s.execs_running = supervisor.execs_running();
    s.durable_writes = writer.writes();
    s.durable_flushes = writer.flushes();
    for (const auto& p : pools.info()) s.pools.push_back({p.name, p.size, p.ready, p.warming, p.failed_in_a_row});
    read_process_metrics(s);
    return render_metrics(s);
  }

  ~Impl() {
    if (lock_fd >= 0) ::close(lock_fd);
  }

  awaitable<void> start(std::function<void(const Status&)> done) {
    auto fail = [&](const Status& s) { done(s); };
    auto lock = lock_root(config.root);
    if (!lock) co_return fail(lock.error());
    lock_fd = *lock;
    if (auto s = make_layout(config); !s) co_return fail(s);
    if (options.spool)  // before recovery: a spool another agent uses stops us touching anything
      if (auto s = spool.open(); !s) co_return fail(s);
    if (auto s = writer.open(); !s) co_return fail(s);
    if (auto s = dirs.open(); !s) co_return fail(s);
    if (!options.spawn_helper.empty() && config.runsc.spawn_helper) {
      // Before recovery, which calls runsc too. Without it the agent forks runsc itself.
      if (auto s = co_await helper.start(options.spawn_helper); !s) {
        spdlog::warn("{}; the agent forks runsc itself", s.error().message);
      } else {
        supervisor.use_spawn_helper(&helper);
        spdlog::info("spawn helper up (pid {}): runsc calls are forked there", helper.pid());
      }
    }
    runtime = co_await probe_runtime(config);
    spdlog::info("{}", runtime.summary());
    for (const auto& w : runtime.warnings) spdlog::warn("runtime: {}", w);
    if (auto s = co_await supervisor.recover(); !s) co_return fail(s);
    pools.start();
    if (options.socket) {
      if (auto s = socket.listen(options.inherited_socket); !s) co_return fail(s);
      socket.start();
    }
    if (options.spool) spool.start();
    if (auto ep = parse_metrics_listen(config.metrics.listen); !ep) {
      co_return fail(ep.error());
    } else if (ep->kind != MetricsEndpoint::off) {
      unsigned group = config.socket.allowed_gids.empty() ? 0 : config.socket.allowed_gids.front();
      if (auto s = metrics_http.listen(*ep, group); !s) co_return fail(s);
      metrics_http.start();
    }
    done(Ok{});
  }

  awaitable<void> stop_all(std::function<void()> done) {
    pools.stop();
    socket.close();
    spool.close();
    metrics_http.close();
    co_await supervisor.shutdown(config.stop_sandboxes_on_exit);
    dirs.close();
    co_await socket.wait_closed(Millis(2000));
    co_await metrics_http.wait_closed(Millis(2000));
    done();
  }

  asio::any_io_executor ex;
  Config config;
  AgentOptions options;
  int lock_fd = -1;
  SpawnHelper helper;    // before the supervisor, whose runsc calls it serves until the end
  RuntimeInfo runtime;  // before the supervisor, which holds a reference
  EventBus events;
  DurableWriter writer;
  DirWatcher dirs;
  PidWatcher pids;
  Supervisor supervisor;
  Pools pools;
  SocketServer socket;
  SpoolIntake spool;
  MetricsServer metrics_http;
};

Agent::Agent(asio::io_context& io, Config config, AgentOptions options)
    : impl_(std::make_unique<Impl>(io, std::move(config), std::move(options))) {
  raise_fd_limit();
}

Agent::~Agent() = default;

void Agent::start(std::function<void(const Status&)> done) {
  asio::co_spawn(impl_->ex, impl_->start(std::move(done)), asio::detached);
}

void Agent::launch(LaunchRequest request, std::function<void(Result<std::string>)> done) {
  asio::co_spawn(impl_->ex, [this, request = std::move(request), done = std::move(done)]() mutable -> awaitable<void> {
    const auto& policy = impl_->supervisor.policy();
    if (auto s = validate_request(request); !s) co_return done(s.error());
    if (auto s = apply_policy(request, policy); !s) co_return done(s.error());
    done(co_await impl_->supervisor.launch(std::move(request), "api"));
  }, asio::detached);
}

Result<SandboxState> Agent::stop(const std::string& id, unsigned timeout_ms) {
  return impl_->supervisor.stop(id, timeout_ms);
}

Result<std::int64_t> Agent::extend(const std::string& id, std::uint64_t ttl_ms) {
  return impl_->supervisor.extend(id, ttl_ms);
}

std::optional<SandboxStatus> Agent::status(const std::string& id) const {
  if (auto* sb = impl_->supervisor.find(id)) return sb->status();
  return std::nullopt;
}

std::vector<SandboxStatus> Agent::list() const { return impl_->supervisor.list(); }
Stats Agent::stats() const { return impl_->supervisor.stats(); }
std::string Agent::metrics() const { return impl_->metrics_text(); }

std::uint64_t Agent::subscribe(EventHandler handler) {
  return impl_->events.subscribe([h = std::move(handler)](const StateEvent& e, const Sandbox& sb) { h(e, sb.status()); });
}

void Agent::unsubscribe(std::uint64_t token) { impl_->events.unsubscribe(token); }

void Agent::shutdown(std::function<void()> done) {
  // Posted: when called from an event handler, the transition being published is recorded
  // after the handler returns; shutting down first would not wait for that record.
  asio::post(impl_->ex, [this, done = std::move(done)]() mutable {
    asio::co_spawn(impl_->ex, impl_->stop_all(std::move(done)), asio::detached);
  });
}

const Config& Agent::config() const { return impl_->config; }
const RuntimeInfo& Agent::runtime() const { return impl_->runtime; }
std::size_t Agent::connections() const { return impl_->socket.connections(); }

}  // namespace sandbox_agent
