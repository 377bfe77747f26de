#include "watchers.hpp"

#include <asio/post.hpp>
#include <asio/posix/stream_descriptor.hpp>

#include <cerrno>
#include <cstring>
#include <vector>
#include <sys/inotify.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "paths.hpp"
#include "process.hpp"

namespace sandbox_agent {

DirWatcher::DirWatcher(asio::any_io_executor ex) : ex_(std::move(ex)) {}
DirWatcher::~DirWatcher() { close(); }

Status DirWatcher::open() {
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return make_error(ErrorCode::internal, "inotify_init1: " + paths::errno_text());
  fd_ = std::make_unique<asio::posix::stream_descriptor>(ex_, fd);
  asio::co_spawn(ex_, read_loop(), asio::detached);
  return Ok{};
}

void DirWatcher::close() {
  if (fd_) {
    std::error_code ignored;
    fd_->close(ignored);
  }
  callbacks_.clear();
}

Result<int> DirWatcher::watch(const std::string& dir, std::uint32_t mask, Callback cb) {
  if (!fd_) return make_error(ErrorCode::internal, "inotify not open");
  int wd = ::inotify_add_watch(fd_->native_handle(), dir.c_str(), mask | IN_ONLYDIR);
  if (wd < 0) return make_error(ErrorCode::internal, "inotify_add_watch " + dir + ": " + paths::errno_text());
  callbacks_[wd] = std::move(cb);
  return wd;
}

void DirWatcher::unwatch(int wd) {
  if (callbacks_.erase(wd) && fd_) ::inotify_rm_watch(fd_->native_handle(), wd);
}

awaitable<void> DirWatcher::read_loop() {
  std::vector<char> buf(65536);
  auto* d = fd_.get();
  for (;;) {
    auto [ec, n] = co_await d->async_read_some(asio::buffer(buf), use_nothrow);
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
    if (ec) {
      spdlog::error("inotify read failed: {}", ec.message());
      co_return;
    }
    dispatch(buf.data(), n);
  }
}

// A plain function, not part of the coroutine: g++ 12 does not honour alignment for locals of
// a coroutine frame, and each header is copied out because the buffer is only char-aligned.
void DirWatcher::dispatch(const char* data, std::size_t n) {
  for (std::size_t off = 0; off + sizeof(inotify_event) <= n;) {
    inotify_event ev;
    std::memcpy(&ev, data + off, sizeof ev);
    const char* name_bytes = data + off + sizeof ev;
    off += sizeof ev + ev.len;
    if (off > n) break;  // the kernel never splits an event; be safe anyway
    if (ev.mask & IN_Q_OVERFLOW) {
      spdlog::warn("inotify queue overflowed: rescanning every watched directory");
      std::vector<int> wds;  // callbacks may watch/unwatch while we call them
      for (auto& [wd, cb] : callbacks_) wds.push_back(wd);
      for (int wd : wds)
        if (auto it = callbacks_.find(wd); it != callbacks_.end()) it->second({}, IN_Q_OVERFLOW);
      continue;
    }
    auto it = callbacks_.find(ev.wd);
    if (it == callbacks_.end()) continue;
    if (ev.mask & IN_IGNORED) {  // the directory is gone
      callbacks_.erase(it);
      continue;
    }
    // the name is NUL-padded to len bytes
    std::string_view name = ev.len ? std::string_view(name_bytes, ::strnlen(name_bytes, ev.len))
                                   : std::string_view();
    auto cb = it->second;  // the callback may unwatch itself
    cb(name, ev.mask);
  }
}

struct PidWatcher::Proc {
  explicit Proc(asio::any_io_executor ex) : d(std::move(ex)) {}
  asio::posix::stream_descriptor d;  // not open when the process was already gone
  std::unordered_map<std::uint64_t, Callback> callbacks;
};

PidWatcher::PidWatcher(asio::any_io_executor ex) : ex_(std::move(ex)) {}

PidWatcher::~PidWatcher() {
  for (auto& [pid, p] : procs_) {
    std::error_code ignored;
    p->d.close(ignored);
  }
}

std::uint64_t PidWatcher::watch(pid_t pid, Callback cb) {
  auto it = procs_.find(pid);
  if (it != procs_.end()) {
    auto token = next_token_++;
    tokens_[token] = pid;
    it->second->callbacks[token] = std::move(cb);
    return token;
  }
  int fd = open_pidfd(pid);
  // Only ESRCH says it is gone; out of descriptors says nothing about the process.
  if (fd < 0 && errno != ESRCH) return 0;
  auto token = next_token_++;
  tokens_[token] = pid;
  auto proc = std::make_shared<Proc>(ex_);
  if (fd >= 0) proc->d.assign(fd);
  proc->callbacks[token] = std::move(cb);
  procs_[pid] = proc;
  if (fd < 0) {  // ESRCH: already gone
    asio::post(ex_, [this, pid] { fire(pid); });
    return token;
  }
  // A Proc alive means this watcher is alive: only procs_ and retired_ own them.
  proc->d.async_wait(asio::posix::descriptor_base::wait_read,
                     [this, pid, weak = std::weak_ptr<Proc>(proc)](std::error_code ec) {
                       auto p = weak.lock();
                       if (!p) return;
                       if (retired_.erase(p.get())) return;  // cancelled: its pidfd closes now
                       if (ec == asio::error::operation_aborted) return;
                       if (auto it = procs_.find(pid); it != procs_.end() && it->second == p) fire(pid);
                     });
  return token;
}

void PidWatcher::fire(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end()) return;
  auto proc = it->second;
  procs_.erase(it);
  std::error_code ignored;
  proc->d.close(ignored);
  for (auto& [token, cb] : proc->callbacks) {
    tokens_.erase(token);
    cb();
  }
}

void PidWatcher::cancel(std::uint64_t token) {
  auto t = tokens_.find(token);
  if (t == tokens_.end()) return;
  auto it = procs_.find(t->second);
  tokens_.erase(t);
  if (it == procs_.end()) return;
  it->second->callbacks.erase(token);
  if (it->second->callbacks.empty()) {
    // Cancelled, not closed: a pidfd closed while its wait is still queued in the ring could
    // be reused by the next pidfd, and the stale wait would report the wrong process gone.
    // The Proc is retired until its handler has run.
    std::error_code ignored;
    auto& proc = it->second;
    if (proc->d.is_open()) {
      proc->d.cancel(ignored);
      retired_.emplace(proc.get(), proc);
    }
    procs_.erase(it);
  }
}

}  // namespace sandbox_agent
