#include "spawn_helper.hpp"

#include <asio/posix/stream_descriptor.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <tuple>

#include "unique_fd.hpp"

#include "fd_passing.hpp"
#include "paths.hpp"
#include "spawn_helper_wire.hpp"

namespace sandbox_agent {

using spawn_wire::Reply;
using spawn_wire::Request;
static_assert(spawn_wire::kMaxFds <= static_cast<int>(kMaxFdsPerMessage));

struct SpawnLink {
  explicit SpawnLink(const asio::any_io_executor& ex) : sock(ex), hello(ex) {}
  asio::posix::stream_descriptor sock;
  Wake hello;  // the helper said it is up, or it went before that
  bool up = false;
  bool closing = false;  // the agent closes it: no more news expected
  pid_t pid = -1;
  std::string lost_reason;
  std::uint64_t next_seq = 1;
  std::unordered_map<std::uint64_t, RemoteChild*> waiting;
};

namespace {

// Never waits for the helper (fd_passing sends with MSG_DONTWAIT): a full socket fails it.
bool send_request(SpawnLink& link, const void* data, std::size_t size, const int* fds, std::size_t nfds) {
  if (!link.sock.is_open()) {
    errno = EPIPE;
    return false;
  }
  for (;;) {
    ssize_t n = send_with_fds(link.sock.native_handle(), {static_cast<const char*>(data), size}, fds, nfds);
    if (n == static_cast<ssize_t>(size)) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n >= 0) errno = EMSGSIZE;
    return false;
  }
}

// A kill that could not be sent (the socket full, no buffer memory) is tried again until it
// is, or the helper is gone: a deadline's SIGKILL, or a dropped Child's, must land. Not tied to
// the Child, which may be gone already; the helper ignores a kill whose child it has reaped.
awaitable<void> retry_kill(std::weak_ptr<SpawnLink> weak, Request q) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (;;) {
    t.expires_after(Millis(5));
    co_await t.async_wait(use_nothrow);
    auto link = weak.lock();
    if (!link || link->closing || !link->up) co_return;
    if (send_request(*link, &q, sizeof q, nullptr, 0)) co_return;
  }
}

void send_kill(const std::shared_ptr<SpawnLink>& link, std::uint64_t seq, int sig) {
  Request q;
  q.kind = spawn_wire::kKill;
  q.seq = seq;
  q.signal = sig;
  if (send_request(*link, &q, sizeof q, nullptr, 0)) return;
  // EPIPE/ECONNRESET: the helper is gone, which its reader reports; anything else is retried.
  spdlog::debug("spawn helper: kill {} of call {} not sent yet: {}", sig, seq, paths::errno_text());
  asio::co_spawn(link->sock.get_executor(), retry_kill(link, q), asio::detached);
}

}  // namespace

RemoteChild::~RemoteChild() {
  auto l = link.lock();
  if (!l) return;
  // Dropped before it ended: killed, as a Child of the agent's own would be (the helper reaps).
  if (!ended && !l->closing) send_kill(l, seq, SIGKILL);
  l->waiting.erase(seq);
}

awaitable<ExitStatus> wait_remote(RemoteChild& child) {
  while (!child.ended) co_await child.woken.wait();
  co_return child.status;
}

void kill_remote(RemoteChild& child, int sig) {
  if (child.ended) return;
  if (auto l = child.link.lock(); l && !l->closing) send_kill(l, child.seq, sig);
}

SpawnHelper::SpawnHelper(asio::any_io_executor ex) : ex_(std::move(ex)) {
  on_lost_ = [](const std::string& reason) {
    spdlog::critical("the spawn helper has gone ({}): the ends of the runsc calls in flight are unknown; exiting "
                     "so that the next start recovers them (docs/durability.md)", reason);
    spdlog::shutdown();
    std::_Exit(70);
  };
}

SpawnHelper::~SpawnHelper() {
  if (!link_) return;
  // The agent is going (its runsc calls' frames are destroyed after this): unlike the agent's
  // own children, the helper's are not killed mid-call (a `runsc run` half done would leave a
  // sandbox for recovery to judge `agent_restart`); they run to their end, orphaned, and the
  // next start waits for them (Runsc::wait_for_strays). The helper itself is killed by
  // process_'s destructor; its children do not depend on it.
  link_->closing = true;
  std::error_code ec;
  link_->sock.close(ec);
  link_.reset();  // with the io_context still there to take its socket and timers
}

void SpawnHelper::on_lost(std::function<void(const std::string&)> f) { on_lost_ = std::move(f); }

bool SpawnHelper::up() const { return link_ && link_->up; }
pid_t SpawnHelper::pid() const { return link_ ? link_->pid : -1; }

awaitable<Status> SpawnHelper::start(std::string program, Millis timeout) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    co_return make_error(ErrorCode::internal, "socketpair: " + paths::errno_text());
  UniqueFd ours(sv[0]), theirs(sv[1]);
  SpawnSpec spec;
  spec.argv = {program, spawn_wire::kHelperFlag};
  spec.stderr_fd = STDERR_FILENO;  // what it has to say goes where the agent's log goes
  spec.fd3 = theirs.get();
  auto child = sandbox_agent::spawn(spec);
  theirs.reset();
  if (!child) co_return child.error();
  process_ = std::move(child.value());
  link_ = std::make_shared<SpawnLink>(ex_);
  link_->sock.assign(ours.release());
  asio::co_spawn(ex_, read_loop(link_), asio::detached);
  co_await link_->hello.wait_until(Clock::now() + timeout);
  if (link_->up) co_return Ok{};
  std::string why = link_->lost_reason.empty() ? "it did not say it was up within " + std::to_string(timeout.count()) + " ms"
                                               : link_->lost_reason;
  link_->closing = true;
  std::error_code ec;
  link_->sock.close(ec);
  link_.reset();
  process_ = Child();  // killed and reaped
  co_return make_error(ErrorCode::internal, "spawn helper " + program + ": " + why);
}

Result<Child> SpawnHelper::spawn(const SpawnSpec& spec) {
  if (!up()) return make_error(ErrorCode::internal, "the spawn helper is not running");
  if (spec.argv.empty()) return make_error(ErrorCode::internal, "spawn: empty argv");
  Request q;
  q.seq = link_->next_seq++;
  q.flags = (spec.new_session ? std::uint32_t{spawn_wire::kNewSession} : 0u) |
            (spec.env ? std::uint32_t{spawn_wire::kOwnEnv} : 0u);
  q.nargs = static_cast<std::uint32_t>(spec.argv.size());
  q.nenv = spec.env ? static_cast<std::uint32_t>(spec.env->size()) : 0;
  std::string body(sizeof q, '\0');
  for (const auto& a : spec.argv) body.append(a.c_str(), a.size() + 1);
  if (spec.env)
    for (const auto& e : *spec.env) body.append(e.c_str(), e.size() + 1);
  if (body.size() > spawn_wire::kMaxRequest) return make_error(ErrorCode::internal, "spawn helper: request too large");
  int fds[spawn_wire::kMaxFds];
  std::size_t nfds = 0;
  const int sources[spawn_wire::kMaxFds] = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd, spec.fd3};
  for (int target = 0; target < spawn_wire::kMaxFds; ++target)
    if (sources[target] >= 0) {
      q.fds |= 1u << target;
      fds[nfds++] = sources[target];
    }
  std::memcpy(body.data(), &q, sizeof q);
  if (!send_request(*link_, body.data(), body.size(), fds, nfds))
    return make_error(ErrorCode::internal, "spawn helper: " + paths::errno_text());
  auto child = std::make_shared<RemoteChild>(ex_, link_, q.seq);
  link_->waiting[q.seq] = child.get();
  return Child(std::move(child));
}

awaitable<void> SpawnHelper::read_loop(std::weak_ptr<SpawnLink> weak) {
  auto lost = [](SpawnLink* link, std::string reason) {
    link->up = false;
    link->lost_reason = std::move(reason);
    link->hello.notify();
    for (auto& [seq, child] : link->waiting) {  // nobody will hear of them again
      child->ended = true;
      child->woken.notify();
    }
    link->waiting.clear();
  };
  for (;;) {
    // The link (its socket and timers) belongs to the SpawnHelper: this frame must not keep
    // it, nor destroy it, when the io_context tears the frame down after the helper is gone.
    std::error_code ec;
    if (auto link = weak.lock(); !link || link->closing) {
      co_return;
    } else {
      auto& sock = link->sock;
      link.reset();
      std::tie(ec) = co_await sock.async_wait(asio::posix::descriptor_base::wait_read, use_nothrow);
    }
    auto link = weak.lock();
    if (!link || link->closing) co_return;
    std::string gone;
    while (!ec && gone.empty()) {
      Reply r;
      ssize_t n = ::recv(link->sock.native_handle(), &r, sizeof r, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) gone = paths::errno_text();
      else if (n == 0) gone = "it exited";
      else if (n != static_cast<ssize_t>(sizeof r)) continue;
      else if (r.seq == 0) {
        link->pid = r.pid;
        link->up = true;
        link->hello.notify();
      } else if (auto it = link->waiting.find(r.seq); it != link->waiting.end()) {
        RemoteChild* child = it->second;
        link->waiting.erase(it);
        child->status.code = r.code;
        child->status.signal = r.signal;
        child->status.exec_errno = r.exec_errno;
        child->ended = true;
        child->woken.notify();
      }
    }
    if (ec) gone = ec.message();
    if (gone.empty()) continue;
    bool was_up = link->up;  // else start() reports it
    lost(link.get(), gone);
    if (was_up) on_lost_(gone);
    co_return;
  }
}

}  // namespace sandbox_agent
