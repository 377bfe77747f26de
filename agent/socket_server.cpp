#include "socket_server.hpp"

#include <asio/post.hpp>

#include <asio/write.hpp>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "fd_passing.hpp"
#include "log.hpp"
#include "paths.hpp"
#include "protocol.hpp"

namespace sandbox_agent {

using asio::local::stream_protocol;

namespace {
constexpr Millis kForbiddenGrace{1000};
// Reads that brought descriptors and whose line has not been handled yet: a client that
// sends descriptors without lines is not allowed to pile them up.
constexpr std::size_t kMaxPendingPassed = 8;
constexpr Millis kHangUpCheck{200};
constexpr std::uint64_t kLinesPerTurn = 16;  // requests from one client between two turns of the reactor
}  // namespace

namespace {

// A reply line, and a descriptor to pass with it (SCM_RIGHTS), owned until it is sent.
struct Outgoing {
  std::string line;
  int fd = -1;
  Outgoing(std::string l, int f) : line(std::move(l)), fd(f) {}
  Outgoing(Outgoing&& o) noexcept : line(std::move(o.line)), fd(std::exchange(o.fd, -1)) {}
  Outgoing& operator=(Outgoing&& o) noexcept {
    if (this != &o) {
      if (fd >= 0) ::close(fd);
      line = std::move(o.line);
      fd = std::exchange(o.fd, -1);
    }
    return *this;
  }
  ~Outgoing() { if (fd >= 0) ::close(fd); }
};

}  // namespace

// Descriptors that came with the bytes up to stream offset `until` (one recvmsg's worth).
struct SocketServer::Passed {
  std::uint64_t until = 0;
  std::vector<UniqueFd> fds;
  bool truncated = false;  // more than kMaxPassedFds: they were closed
};

struct SocketServer::Connection {
  explicit Connection(stream_protocol::socket s) : socket(std::move(s)), wake(socket.get_executor()) {}
  stream_protocol::socket socket;
  std::deque<Outgoing> out;
  std::size_t queued = 0;
  Wake wake;  // the writer waits here for output
  bool closing = false;
  bool half_closed = false;  // the client sent EOF: it reads its remaining replies, then we close
  std::uint64_t watch_token = 0;
  std::vector<std::uint64_t> waits;  // held launch replies
  std::vector<std::string> execs;    // running execs and copies: they end with the client
  std::deque<Passed> passed;         // descriptors received, oldest first
  std::string peer;
};

SocketServer::SocketServer(asio::any_io_executor ex, const Config& config, Supervisor& supervisor,
                           EventBus& events, const Pools& pools)
    : ex_(ex), config_(config), supervisor_(supervisor), events_(events), pools_(pools), acceptor_(ex),
      all_returned_(ex), running_(std::make_shared<RunningCount>()) {
  running_->all_returned = &all_returned_;
}

struct SocketServer::Running {
  explicit Running(SocketServer& s) : shared(s.running_) { ++shared->count; }
  ~Running() {
    if (--shared->count == 0 && shared->all_returned) shared->all_returned->notify();
  }
  std::shared_ptr<RunningCount> shared;
};

awaitable<void> SocketServer::wait_closed(Millis bound) {
  auto deadline = Clock::now() + bound;
  while (running_->count > 0 && Clock::now() < deadline) co_await all_returned_.wait_until(deadline);
  if (running_->count > 0) spdlog::warn("{} client coroutine(s) still running at shutdown", running_->count);
}

SocketServer::~SocketServer() {
  close();
  running_->all_returned = nullptr;
}

namespace {

// Whether a live agent serves `path`. A connect alone is not proof: the socket of an agent
// killed a moment ago can still accept while the kernel tears its io_uring down. A live
// agent answers `version`. Blocking, with a short timeout: this runs once, at start-up.
bool agent_answers(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), std::min(path.size(), sizeof sa.sun_path - 1));
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  bool answered = false;
  static constexpr std::string_view ask = "{\"op\":\"version\"}\n";
  char buf[256];
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      ::send(fd, ask.data(), ask.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(ask.size()))
    answered = ::recv(fd, buf, sizeof buf, 0) > 0;
  ::close(fd);
  return answered;
}

}  // namespace

Status SocketServer::listen(int inherited_fd) {
  std::error_code ec;
  if (inherited_fd >= 0) {
    acceptor_.assign(stream_protocol(), inherited_fd, ec);
    if (ec) return make_error(ErrorCode::internal, "adopting the inherited socket: " + ec.message());
    spdlog::info("listening on the socket systemd passed (fd {})", inherited_fd);
    return Ok{};
  }
  const auto& path = config_.socket.path;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return make_error(ErrorCode::internal, path + " exists and is not a socket; refusing to replace it");
    if (agent_answers(path)) return make_error(ErrorCode::internal, "another agent is already listening on " + path);
    ::unlink(path.c_str());  // stale, from an agent that did not exit cleanly
  }
  auto dir = path.substr(0, path.rfind('/'));
  if (!dir.empty() && !paths::make_dirs(dir, 0755))
    return make_error(ErrorCode::internal, "creating " + dir + ": " + paths::errno_text());
  acceptor_.open(stream_protocol(), ec);
  if (!ec) acceptor_.bind(stream_protocol::endpoint(path), ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(ErrorCode::internal, "listening on " + path + ": " + ec.message());
  owns_path_ = true;
  gid_t group = config_.socket.allowed_gids.empty() ? 0 : config_.socket.allowed_gids.front();
  if (::chmod(path.c_str(), config_.socket.mode) != 0 || ::chown(path.c_str(), 0, group) != 0)
    spdlog::warn("cannot set the mode/owner of {}: {}", path, paths::errno_text());
  spdlog::info("listening on {} (mode {:04o})", path, config_.socket.mode);
  return Ok{};
}

void SocketServer::start() { asio::co_spawn(ex_, accept_loop(), asio::detached); }

void SocketServer::close() {
  std::error_code ignored;
  if (acceptor_.is_open()) acceptor_.close(ignored);
  if (owns_path_) ::unlink(config_.socket.path.c_str());
  owns_path_ = false;
  auto all = connections_;
  for (auto& c : all) drop(c, {});
}

bool SocketServer::peer_allowed(int fd, std::string& who) const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    who = "unknown peer";
    return false;
  }
  who = "uid " + std::to_string(cred.uid) + " gid " + std::to_string(cred.gid) + " pid " + std::to_string(cred.pid);
  const auto& uids = config_.socket.allowed_uids;
  const auto& gids = config_.socket.allowed_gids;
  if (std::find(uids.begin(), uids.end(), cred.uid) != uids.end()) return true;
  if (gids.empty()) return false;
  if (std::find(gids.begin(), gids.end(), cred.gid) != gids.end()) return true;
  gid_t groups[256];  // supplementary groups of the peer
  len = sizeof groups;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
    for (std::size_t i = 0; i < len / sizeof(gid_t); ++i)
      if (std::find(gids.begin(), gids.end(), groups[i]) != gids.end()) return true;
  return false;
}

awaitable<void> SocketServer::accept_loop() {
  Running running(*this);
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_nothrow);
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
    if (ec) {  // EMFILE and friends: back off briefly instead of spinning
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer t(ex_, Millis(50));
      co_await t.async_wait(use_nothrow);
      continue;
    }
    auto c = std::make_shared<Connection>(std::move(socket));
    connections_.insert(c);
    ++connections_total_;
    asio::co_spawn(ex_, serve(c), asio::detached);
  }
}

awaitable<void> SocketServer::serve(ConnectionPtr c) {
  Running running(*this);
  asio::co_spawn(ex_, write_loop(c), asio::detached);
  // A denied peer is told why at once and closed within kForbiddenGrace, whatever it does;
  // it holds no connection slot meanwhile. What it sends in that moment is read and thrown
  // away, so a client that writes first still reads why instead of a broken pipe.
  if (!peer_allowed(c->socket.native_handle(), c->peer)) {
    spdlog::warn("refused a client: {} is not allowed (socket.allowed_uids/allowed_gids)", c->peer);
    send(c, protocol::reply_error(make_error(ErrorCode::forbidden, "this user may not use the agent (" + c->peer + ")"), {}));
    ++forbidden_;
    asio::steady_timer grace(ex_, kForbiddenGrace);
    grace.async_wait([weak = std::weak_ptr<Connection>(c)](std::error_code ec) {
      std::error_code ignored;
      if (auto conn = weak.lock(); conn && !ec) conn->socket.cancel(ignored);
    });
    char discard[4096];
    for (std::size_t total = 0; total < 65536;) {
      auto [ec, n] = co_await c->socket.async_read_some(asio::buffer(discard), use_nothrow);
      if (ec) break;
      total += n;
    }
    --forbidden_;
    c->closing = true;
    c->wake.notify();
    co_return;
  }
  // A client that never completes a first line is not worth a slot (slowloris, a stuck
  // script): dropped after limits.first_line_timeout_ms. Once it has spoken, silence is
  // fine (a watcher, a held launch).
  auto first_line = std::make_shared<bool>(false);
  asio::steady_timer silent(ex_, Millis(config_.limits.first_line_timeout_ms));
  silent.async_wait([this, weak = std::weak_ptr<Connection>(c), first_line](std::error_code ec) {
    if (ec || *first_line) return;
    if (auto conn = weak.lock())
      drop(conn, "no request line within " + std::to_string(config_.limits.first_line_timeout_ms) + " ms");
  });
  // (Not size - forbidden: a forbidden peer's writer may drop it before its serve counts it
  // out, and the difference would wrap.)
  if (connections_.size() > forbidden_ + config_.limits.max_connections) {
    spdlog::warn("refused a client ({}): {} connections already", c->peer, config_.limits.max_connections);
    send(c, protocol::reply_error(make_error(ErrorCode::overloaded, "too many connections"), {}));
    c->closing = true;
    c->wake.notify();
    co_return;
  }
  const std::size_t max_line = config_.limits.max_request_bytes + 64 * 1024;  // request + envelope
  protocol::LineFramer framer(max_line);
  char chunk[65536];
  bool at_eof = false;
  std::uint64_t received = 0;  // stream offset: which line the descriptors came with
  std::uint64_t handled = 0;
  while (!c->closing && !at_eof) {
    // recvmsg, not a plain read: exec and cp lines carry the client's descriptors.
    auto [wec] = co_await c->socket.async_wait(stream_protocol::socket::wait_read, use_nothrow);
    if (wec) break;
    auto got = receive_with_fds(c->socket.native_handle(), chunk, sizeof chunk);
    if (got.bytes < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      break;
    }
    if (got.bytes == 0) {
      // A half-close ends the requests, not the replies. A last line without its newline
      // is still a request.
      at_eof = true;
      if (framer.buffered() > 0) framer.feed("\n");
    } else {
      received += static_cast<std::uint64_t>(got.bytes);
      if (!got.fds.empty() || got.truncated) {
        if (c->passed.size() >= kMaxPendingPassed) {
          drop(c, "it sends descriptors without request lines");
          break;
        }
        c->passed.push_back({received, std::move(got.fds), got.truncated});
      }
      framer.feed(std::string_view(chunk, static_cast<std::size_t>(got.bytes)));
    }
    std::string_view line;
    while (!c->closing) {
      auto next = framer.next(line);
      if (next == protocol::LineFramer::Next::need_more) break;
      *first_line = true;
      // The descriptors of this line: those that came no later than its end.
      Passed passed;
      while (!c->passed.empty() && c->passed.front().until <= framer.consumed()) {
        passed = std::move(c->passed.front());  // an earlier, unclaimed set is closed here
        c->passed.pop_front();
      }
      if (next == protocol::LineFramer::Next::too_long) {
        send(c, protocol::reply_error(make_error(ErrorCode::too_large, "line longer than " + std::to_string(max_line) + " bytes"), {}));
        c->closing = true;
      } else if (line.find_first_not_of(" \t") != std::string_view::npos) {
        co_await handle_line(c, line, std::move(passed));  // the framer is not fed meanwhile: the view stays valid
        // A chunk can hold thousands of short requests: let the other clients in between.
        if (++handled % kLinesPerTurn == 0) co_await asio::post(ex_, use_nothrow);
      }
    }
  }
  // A client gone with execs running ends them; one that only half-closed gets their
  // replies. Only POLLHUP tells the two apart, and the ring reports a half-close (RDHUP)
  // as readiness too: look, without waiting, a few times a second. The same for a watch or
  // a held `launch … wait`: a client that hung up gives its slot back now, not at the next
  // event the writer fails to send.
  auto pending = [&] { return !c->execs.empty() || !c->waits.empty() || c->watch_token != 0; };
  if (at_eof && !c->closing && pending()) {
    c->half_closed = true;
    c->wake.notify();
    asio::steady_timer tick(ex_);
    while (!c->closing && pending()) {
      pollfd p{c->socket.native_handle(), POLLOUT, 0};
      if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
        drop(c, {});
        break;
      }
      tick.expires_after(kHangUpCheck);
      co_await tick.async_wait(use_nothrow);
    }
    co_return;
  }
  // Half-closed: the writer closes once every reply is out, held `launch … wait` ones too.
  if (at_eof) c->half_closed = true;
  else c->closing = true;
  c->wake.notify();
}

awaitable<void> SocketServer::write_loop(ConnectionPtr c) {
  Running running(*this);
  for (;;) {
    while (!c->out.empty()) {
      // The line being written is this coroutine's own: drop() (a slow reader over its
      // limit) clears the queue while a write is in flight, and must not free its buffer.
      Outgoing item = std::move(c->out.front());
      c->out.pop_front();
      const std::string& line = item.line;
      std::size_t sent = 0;
      std::error_code ec;
      if (item.fd >= 0) {
        // The descriptor rides on the line's first bytes: sendmsg once the socket is writable.
        for (;;) {
          auto [wec] = co_await c->socket.async_wait(stream_protocol::socket::wait_write, use_nothrow);
          if (wec) {
            ec = wec;
            break;
          }
          ssize_t n = send_with_fd(c->socket.native_handle(), line, item.fd);
          if (n >= 0) {
            sent = static_cast<std::size_t>(n);
            break;
          }
          if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            ec = std::error_code(errno, std::system_category());
            break;
          }
        }
      }
      if (!ec && sent < line.size()) {
        auto [wec, n] = co_await asio::async_write(c->socket, asio::buffer(line.data() + sent, line.size() - sent), use_nothrow);
        ec = wec;
      }
      c->queued -= std::min(c->queued, line.size());
      if (ec) {
        c->closing = true;
        break;
      }
    }
    if (c->closing || (c->half_closed && c->waits.empty() && c->execs.empty() && c->out.empty() && !c->watch_token)) break;
    co_await c->wake.wait();
  }
  drop(c, {});
}

void SocketServer::send(const ConnectionPtr& c, std::string line, int fd) {
  Outgoing item(std::move(line), fd);  // owns fd from here, whatever happens
  // The limit is on what waits behind unread replies: one reply (a long `list`) is always
  // taken when nothing waits, however large.
  if (c->queued > 0 && c->queued + item.line.size() > config_.limits.max_output_bytes) {
    drop(c, "it does not read its replies (" + std::to_string(c->queued) + " bytes queued)");
    return;
  }
  c->queued += item.line.size();
  c->out.push_back(std::move(item));
  c->wake.notify();
}

void SocketServer::drop(const ConnectionPtr& c, std::string_view why) {
  if (!connections_.count(c)) return;
  if (!why.empty()) spdlog::warn("disconnecting a client ({}): {}", c->peer, why);
  connections_.erase(c);
  if (c->watch_token) {
    events_.unsubscribe(c->watch_token);
    --watchers_;
    c->watch_token = 0;
  }
  for (auto t : c->waits) events_.unsubscribe(t);
  c->waits.clear();
  auto execs = std::move(c->execs);
  c->execs.clear();
  for (const auto& id : execs) supervisor_.end_exec(id);
  c->passed.clear();
  c->closing = true;
  c->out.clear();
  c->queued = 0;
  // Shut down and cancel, not close: the descriptor must stay ours until the reader and the
  // writer have returned (the Connection's destructor closes it), or a new client's socket
  // could take its number while an operation for it is still queued in the ring.
  std::error_code ignored;
  c->socket.shutdown(stream_protocol::socket::shutdown_both, ignored);
  c->socket.cancel(ignored);
  c->wake.notify();
}

awaitable<void> SocketServer::handle_line(ConnectionPtr c, std::string_view line, Passed passed) {
  auto parsed = protocol::parse_line(line, supervisor_.policy());
  if (auto* e = std::get_if<protocol::ParseError>(&parsed)) {
    send(c, protocol::reply_error(e->error, e->tag));
    co_return;
  }
  auto& m = std::get<protocol::Message>(parsed);
  using protocol::Op;
  if (auto want = protocol::passed_fds(m.op); want > 0 && (passed.truncated || passed.fds.size() != want)) {
    std::string what = m.op == Op::exec ? "3 descriptors (stdin, stdout, stderr)" : "1 descriptor (the file's)";
    std::string got = passed.truncated ? "more than " + std::to_string(kMaxPassedFds) : std::to_string(passed.fds.size());
    send(c, protocol::reply_error(make_error(ErrorCode::invalid_request,
                                             "this op takes " + what + " with its line (SCM_RIGHTS, in the same "
                                             "sendmsg); it came with " + got), m.tag));
    co_return;
  }
  switch (m.op) {
    case Op::launch: {
      auto tag = m.tag;
      bool wait = m.wait_ready;
      auto launched = co_await supervisor_.launch(std::move(m.request), "socket");
      if (!launched) {
        send(c, protocol::reply_error(launched.error(), tag));
        co_return;
      }
      auto id = *launched;
      // Dropped while the launch was recorded (the agent stopping, a watch on this connection
      // over its limit): nobody to answer, and nothing may subscribe for it any more.
      if (!connections_.count(c)) co_return;
      if (!wait) {
        send(c, protocol::reply_launched(id, SandboxState::accepted, tag));
        co_return;
      }
      // A sandbox taken ready from a pool is ready already: no event will come.
      if (auto* sb = supervisor_.find(id); sb && (sb->state == SandboxState::ready || is_terminal(sb->state))) {
        send(c, protocol::reply_launch_final(sb->status(), tag));
        co_return;
      }
      // Hold the reply until the sandbox is ready, or will never be.
      auto token = std::make_shared<std::uint64_t>(0);
      *token = events_.subscribe(id, [this, weak = std::weak_ptr<Connection>(c), tag, token](const StateEvent& e, const Sandbox& sb) {
        if (e.state != SandboxState::ready && !is_terminal(e.state)) return;
        events_.unsubscribe(*token);
        if (auto conn = weak.lock()) {
          std::erase(conn->waits, *token);
          send(conn, protocol::reply_launch_final(sb.status(), tag));
        }
      });
      c->waits.push_back(*token);
      co_return;
    }
    case Op::status: {
      if (auto* sb = supervisor_.find(m.id)) send(c, protocol::reply_status(sb->status(), m.tag));
      else send(c, protocol::reply_error(make_error(ErrorCode::not_found, "no sandbox " + m.id, "/id"), m.tag));
      co_return;
    }
    case Op::list:
      send(c, protocol::reply_list(supervisor_.list(), m.tag));
      co_return;
    case Op::stop: {
      auto r = supervisor_.stop(m.id, m.timeout_ms);
      if (r) send(c, protocol::reply_stop(m.id, *r, m.tag));
      else send(c, protocol::reply_error(r.error(), m.tag));
      co_return;
    }
    case Op::logs: {
      auto path = supervisor_.log_path(m.id, m.source);
      if (!path) {
        send(c, protocol::reply_error(path.error(), m.tag));
        co_return;
      }
      // Read-only, never through a link (logs/ID is writable from inside the sandbox), a
      // regular file only: what the client gets is that log and nothing else.
      int fd = ::open(path->c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
      struct stat st {};
      if (fd >= 0 && (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        ::close(fd);
        fd = -1;
        errno = EINVAL;
      }
      if (fd < 0) {
        send(c, protocol::reply_error(make_error(errno == ENOENT ? ErrorCode::not_found : ErrorCode::internal,
                                                 "no " + m.source + " log for " + m.id + " yet (" + *path + ": " +
                                                     paths::errno_text() + ")", "/source"), m.tag));
        co_return;
      }
      send(c, protocol::reply_logs(m.id, m.source, *path, m.tag), fd);
      co_return;
    }
    case Op::extend: {
      auto r = supervisor_.extend(m.id, m.ttl_ms);
      if (r) send(c, protocol::reply_extend(m.id, *r, m.tag));
      else send(c, protocol::reply_error(r.error(), m.tag));
      co_return;
    }
    case Op::exec: {
      if (m.exec.tty) {
        for (auto& fd : passed.fds)
          if (!::isatty(fd.get())) {
            send(c, protocol::reply_error(make_error(ErrorCode::invalid_request,
                                                     "needs the client's terminal as its descriptors", "/tty"), m.tag));
            co_return;
          }
      }
      Execs::Stdio stdio{std::move(passed.fds[0]), std::move(passed.fds[1]), std::move(passed.fds[2])};
      auto exec_id = std::make_shared<std::string>();
      auto started = supervisor_.exec(m.id, m.exec, std::move(stdio),
                                      [this, weak = std::weak_ptr<Connection>(c), tag = m.tag, exec_id](
                                          const Result<ExecOutcome>& r, const std::string&) {
                                        auto conn = weak.lock();
                                        if (!conn) return;
                                        std::erase(conn->execs, *exec_id);
                                        send(conn, r ? protocol::reply_exec_ended(*exec_id, *r, tag)
                                                     : protocol::reply_error(r.error(), tag));
                                      });
      if (!started) {
        send(c, protocol::reply_error(started.error(), m.tag));
        co_return;
      }
      *exec_id = *started;
      c->execs.push_back(*started);
      send(c, protocol::reply_exec_started(*started, m.tag));
      co_return;
    }
    case Op::cp: {
      auto copy_id = std::make_shared<std::string>();
      auto started = supervisor_.copy(m.id, m.copy, std::move(passed.fds[0]),
                                      [this, weak = std::weak_ptr<Connection>(c), tag = m.tag, id = m.id, copy_id](
                                          const Result<std::uint64_t>& r) {
                                        auto conn = weak.lock();
                                        if (!conn) return;
                                        std::erase(conn->execs, *copy_id);
                                        send(conn, r ? protocol::reply_copied(id, *r, tag) : protocol::reply_error(r.error(), tag));
                                      });
      if (!started) {
        send(c, protocol::reply_error(started.error(), m.tag));
        co_return;
      }
      *copy_id = *started;
      c->execs.push_back(*started);
      co_return;
    }
    case Op::watch: {
      if (c->watch_token) {
        send(c, protocol::reply_ok(m.tag));
        co_return;
      }
      if (watchers_ >= config_.limits.max_watchers) {
        send(c, protocol::reply_error(make_error(ErrorCode::overloaded, "too many watchers (limits.max_watchers)"), m.tag));
        co_return;
      }
      send(c, protocol::reply_ok(m.tag));
      ++watchers_;
      c->watch_token = events_.subscribe([this, weak = std::weak_ptr<Connection>(c)](const StateEvent& e, const Sandbox&) {
        if (auto conn = weak.lock()) send(conn, protocol::event_line(e));
      });
      co_return;
    }
    case Op::stats:
      send(c, protocol::reply_stats(supervisor_.stats(), m.tag));
      co_return;
    case Op::pools: {
      std::vector<protocol::PoolInfo> all;
      for (auto& p : pools_.info())
        all.push_back({p.name, p.size, p.ready, p.warming, p.failed_in_a_row, p.retry_at_us, p.last_error});
      send(c, protocol::reply_pools(all, m.tag));
      co_return;
    }
    case Op::version:
      send(c, protocol::reply_version(SANDBOX_AGENT_VERSION, m.tag));
      co_return;
    case Op::metrics:
      send(c, protocol::reply_metrics(metrics_ ? metrics_() : std::string(), m.tag));
      co_return;
  }
}

}  // namespace sandbox_agent
