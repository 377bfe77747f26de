#include "durable_writer.hpp"

#include <liburing.h>

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/eventfd.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <spdlog/spdlog.h>

#include "paths.hpp"

namespace sandbox_agent {

struct DurableWriter::Job {
  std::string path, tmp;
  std::vector<Done> done;
  Spare spare = Spare::drop;
  DirSync* dir = nullptr;  // the target's directory (dirs_ owns it)
  int fd = -1;
  bool exchanging = false;  // the rename on the ring is a RENAME_EXCHANGE
};

struct DurableWriter::DirSync {
  std::string path;
  int fd = -1;
  bool in_flight = false;
  bool exchange = true;       // false once its file system refused RENAME_EXCHANGE
  bool in_memory = false;     // tmpfs/ramfs: its files last until it is unmounted; fsync adds nothing
  std::vector<Done> batch;    // covered by the fsync in flight
  std::vector<Done> waiting;  // need the next one
};

namespace {
// The low bits of user_data say what completed (Job and DirSync are aligned to 8).
constexpr std::uintptr_t kFileSynced = 0;  // a Job's staging file was flushed
constexpr std::uintptr_t kDirTag = 1;      // a DirSync's directory was flushed
constexpr std::uintptr_t kRenamed = 2;     // a Job's staging file was swapped in
constexpr std::uintptr_t kTagBits = 3;

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}
}  // namespace

bool DurableWriter::exchanges(const Job& job) {
  return job.spare == Spare::keep && job.dir->exchange && job.dir->fd >= 0;
}

bool DurableWriter::rename_instead(int err, DirSync& dir) {
  if (err == EINVAL || err == ENOSYS) {  // this file system cannot exchange
    dir.exchange = false;
    return true;
  }
  return err == ENOENT;  // the first write of the path: nothing to exchange with
}

int DurableWriter::swap_in(Job& job) {
  if (exchanges(job)) {
    if (::renameat2(AT_FDCWD, job.tmp.c_str(), AT_FDCWD, job.path.c_str(), RENAME_EXCHANGE) == 0) return 0;
    if (!rename_instead(errno, *job.dir)) return errno;
  }
  return ::rename(job.tmp.c_str(), job.path.c_str()) == 0 ? 0 : errno;
}

DurableWriter::DurableWriter(asio::any_io_executor ex) : ex_(ex), event_(ex) {}

DurableWriter::~DurableWriter() {
  std::error_code ignored;
  event_.close(ignored);
  if (open_) ::io_uring_queue_exit(ring_.get());
  for (auto& [p, slot] : paths_)
    if (slot.running && slot.running->fd >= 0) ::close(slot.running->fd);
  for (auto& [p, d] : dirs_)
    if (d->fd >= 0) ::close(d->fd);
}

Status DurableWriter::open(unsigned entries) {
  ring_ = std::make_unique<io_uring>();
  if (int r = ::io_uring_queue_init(entries, ring_.get(), 0); r < 0)
    return make_error(ErrorCode::internal, std::string("io_uring_queue_init: ") + std::strerror(-r));
  open_ = true;
  // Renames go through the ring too where the kernel can (5.11): on a busy journal a rename
  // waits for it, and the reactor must not (it sat up to 21 ms in one beside tear-downs).
  if (io_uring_probe* probe = ::io_uring_get_probe_ring(ring_.get())) {
    rename_on_ring_ = ::io_uring_opcode_supported(probe, IORING_OP_RENAMEAT);
    ::io_uring_free_probe(probe);
  }
  int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return make_error(ErrorCode::internal, "eventfd: " + paths::errno_text());
  if (int r = ::io_uring_register_eventfd(ring_.get(), efd); r < 0) {
    ::close(efd);
    return make_error(ErrorCode::internal, std::string("io_uring_register_eventfd: ") + std::strerror(-r));
  }
  event_.assign(efd);
  asio::co_spawn(ex_, completion_loop(), asio::detached);
  return Ok{};
}

void DurableWriter::write(const std::string& path, std::string content, Done done, Spare spare) {
  auto& slot = paths_[path];
  if (slot.running) {  // keep order: only the newest content waits behind the running write
    slot.next = std::move(content);
    slot.next_spare = spare;
    if (done) slot.next_done.push_back(std::move(done));
    return;
  }
  std::vector<Done> d;
  if (done) d.push_back(std::move(done));
  start(path, std::move(content), std::move(d), spare);
}

awaitable<int> DurableWriter::write_async(std::string path, std::string content, Spare spare) {
  // Shared with the callback, which may outlive this coroutine at shutdown.
  struct Pending {
    explicit Pending(asio::any_io_executor ex) : signal(ex, Clock::time_point::max()) {}
    asio::steady_timer signal;
    int result = -1;
  };
  auto p = std::make_shared<Pending>(ex_);
  write(path, std::move(content), [p](int err) {
    p->result = err;
    p->signal.cancel();
  }, spare);
  if (p->result < 0) co_await p->signal.async_wait(use_nothrow);
  co_return p->result;
}

void DurableWriter::start(const std::string& path, std::string content, std::vector<Done> done, Spare spare) {
  auto job = std::make_unique<Job>();
  job->path = path;
  job->tmp = paths::staging_path(path);
  job->done = std::move(done);
  job->spare = spare;
  job->dir = &dir_for(dir_of(path));
  Job* j = job.get();
  paths_[path].running = std::move(job);
  ++writes_;
  // open + write land in the page cache; only the flush waits for the disk.
  j->fd = ::open(j->tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (j->fd < 0) return finish(j, errno);
  if (!paths::write_all(j->fd, content)) return finish(j, errno);
  if (j->dir->in_memory) {
    // Nothing to flush: swap it in on the next turn (callers hear after write() returns, as
    // for a flush), without a trip through the kernel's workers, which a busy machine may
    // not schedule for tens of milliseconds (a pool claim waits for its record).
    asio::post(ex_, [this, j, alive = std::weak_ptr<bool>(alive_)] {
      if (!alive.expired()) on_file_synced(j, 0);
    });
    return;
  }
  submit_fsync(j->fd, reinterpret_cast<std::uintptr_t>(j) | kFileSynced);
}

void DurableWriter::prep(io_uring_sqe* sqe, const Op& op) {
  if ((op.tag & kTagBits) == kRenamed) {
    auto* job = reinterpret_cast<Job*>(op.tag & ~kTagBits);
    ::io_uring_prep_renameat(sqe, AT_FDCWD, job->tmp.c_str(), AT_FDCWD, job->path.c_str(),
                             job->exchanging ? RENAME_EXCHANGE : 0);
  } else {
    ::io_uring_prep_fsync(sqe, op.fd, 0);
  }
  ::io_uring_sqe_set_data(sqe, reinterpret_cast<void*>(op.tag));
}

void DurableWriter::submit_fsync(int fd, std::uintptr_t tag) {
  ++flushes_;
  submit(Op{fd, tag});
}

void DurableWriter::submit(Op op) {
  io_uring_sqe* sqe = ::io_uring_get_sqe(ring_.get());
  if (!sqe) {
    ::io_uring_submit(ring_.get());
    sqe = ::io_uring_get_sqe(ring_.get());
  }
  if (!sqe) {  // the kernel has not taken any: wait for completions to make room
    unsubmitted_.push_back(op);
    return;
  }
  prep(sqe, op);
  // One io_uring_enter for every operation queued in this turn of the reactor (many
  // sandboxes record at once under load), not one each.
  if (submit_posted_) return;
  submit_posted_ = true;
  asio::post(ex_, [this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    submit_posted_ = false;
    ::io_uring_submit(ring_.get());
  });
}

void DurableWriter::flush_submissions() {
  while (!unsubmitted_.empty()) {
    io_uring_sqe* sqe = ::io_uring_get_sqe(ring_.get());
    if (!sqe) break;
    prep(sqe, unsubmitted_.front());
    unsubmitted_.pop_front();
  }
  ::io_uring_submit(ring_.get());
}

awaitable<void> DurableWriter::completion_loop() {
  for (;;) {
    auto [ec, n] = co_await event_.async_read_some(
        asio::buffer(&event_buf_, sizeof event_buf_), use_nothrow);
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
      spdlog::error("durable writer: eventfd read failed: {}", ec.message());
      co_return;
    }
    io_uring_cqe* cqe = nullptr;
    while (::io_uring_peek_cqe(ring_.get(), &cqe) == 0) {
      auto tag = reinterpret_cast<std::uintptr_t>(::io_uring_cqe_get_data(cqe));
      int res = cqe->res;
      ::io_uring_cqe_seen(ring_.get(), cqe);
      switch (tag & kTagBits) {
        case kFileSynced: on_file_synced(reinterpret_cast<Job*>(tag & ~kTagBits), res); break;
        case kDirTag: on_dir_synced(reinterpret_cast<DirSync*>(tag & ~kTagBits), res); break;
        case kRenamed: on_renamed(reinterpret_cast<Job*>(tag & ~kTagBits), res); break;
      }
    }
    if (!unsubmitted_.empty()) flush_submissions();
  }
}

void DurableWriter::on_file_synced(Job* job, int res) {
  ::close(job->fd);
  job->fd = -1;
  if (res < 0) return finish(job, -res);
  if (rename_on_ring_ && !job->dir->in_memory) {
    job->exchanging = exchanges(*job);
    return submit(Op{-1, reinterpret_cast<std::uintptr_t>(job) | kRenamed});
  }
  if (int e = swap_in(*job)) return finish(job, e);
  swapped_in(job);
}

void DurableWriter::on_renamed(Job* job, int res) {
  if (res < 0 && job->exchanging && rename_instead(-res, *job->dir)) {
    job->exchanging = false;
    return submit(Op{-1, reinterpret_cast<std::uintptr_t>(job) | kRenamed});
  }
  if (res < 0) return finish(job, -res);
  swapped_in(job);
}

void DurableWriter::swapped_in(Job* job) {
  // The rename is durable once the directory is: share that fsync with other renames. The
  // next write of this path (which may reuse the staging file) starts only after it.
  queue_dir_sync(*job->dir, [this, job](int err) { finish(job, err); });
}

DurableWriter::DirSync& DurableWriter::dir_for(const std::string& dir) {
  auto& d = dirs_[dir];
  if (!d) {
    d = std::make_unique<DirSync>();
    d->path = dir;
  }
  if (d->fd < 0) {
    d->fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct statfs fs {};
    d->in_memory = d->fd >= 0 && ::fstatfs(d->fd, &fs) == 0 &&
                   (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
  }
  return *d;
}

void DurableWriter::sync_dir(const std::string& dir, Done done) {
  queue_dir_sync(dir_for(dir), std::move(done));
}

void DurableWriter::queue_dir_sync(DirSync& d, Done done) {
  if (d.fd < 0) {  // cannot open the directory: the rename stands, durability unknown
    if (done) done(0);
    return;
  }
  if (d.in_memory) {  // the rename is as durable as it will be
    if (done) done(0);
    return;
  }
  d.waiting.push_back(std::move(done));
  if (d.in_flight) return;
  d.in_flight = true;
  d.batch.swap(d.waiting);
  submit_fsync(d.fd, reinterpret_cast<std::uintptr_t>(&d) | kDirTag);
}

void DurableWriter::on_dir_synced(DirSync* d, int res) {
  auto batch = std::move(d->batch);
  d->batch.clear();
  d->in_flight = false;
  if (!d->waiting.empty()) {
    d->in_flight = true;
    d->batch.swap(d->waiting);
    submit_fsync(d->fd, reinterpret_cast<std::uintptr_t>(d) | kDirTag);
  }
  for (auto& cb : batch)
    if (cb) cb(res < 0 ? -res : 0);
}

void DurableWriter::finish(Job* j, int error) {
  if (j->fd >= 0) ::close(j->fd);
  if (error) ::unlink(j->tmp.c_str());
  auto it = paths_.find(j->path);
  auto job = std::move(it->second.running);  // keeps j alive through the callbacks
  auto next = std::move(it->second.next);
  auto next_done = std::move(it->second.next_done);
  auto next_spare = it->second.next_spare;
  it->second.next.reset();
  it->second.next_done.clear();
  if (next) start(job->path, std::move(*next), std::move(next_done), next_spare);
  else paths_.erase(it);
  for (auto& cb : job->done)
    if (cb) cb(error);
}

awaitable<void> DurableWriter::drain() {
  asio::steady_timer t(ex_);
  while (!paths_.empty()) {
    t.expires_after(Millis(2));
    co_await t.async_wait(use_nothrow);
  }
}

}  // namespace sandbox_agent
