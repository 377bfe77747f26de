// Durable file replacement without stalling the reactor: each write goes to a staging file
// beside the target (paths::staging_path: .NAME.tmp), is fsync'ed through a small io_uring
// of its own (the kernel runs the flush in its worker pool and signals an eventfd the
// reactor waits on), then swapped with the target through the same ring (where the kernel
// has IORING_OP_RENAMEAT: a rename waits for a busy journal); the directory's fsync is
// shared by every swap in it that is waiting. Writes to the same path are applied in order;
// a write superseded while queued is merged into the next. In a tmpfs or ramfs directory nothing is flushed: its files last
// until it is unmounted, which no fsync changes; the swap still happens on a later turn.
//
// Spare::keep (the agent's own records, rewritten many times, read by nobody while it runs):
// the swap is renameat2(RENAME_EXCHANGE) once the target exists, so the staging file then
// holds the previous content and is rewritten in place next time, and the file keeps the
// same two inodes instead of freeing one per write. Freed inodes are expensive to come back
// to: ext4 without a journal skips every inode freed in the last minute (six while its
// inode-table block is not yet written back) at each new file or directory
// (docs/benchmarks.md, "The root on disk"). Not for files others read while we write (spool
// statuses): a reader still holding the old inode open would see it rewritten under it.
// Spare::drop, the default, is the classic rename over the target and leaves no staging file.
// A plain rename is also used for a first write, where the directory cannot be opened (its
// fsync could not make the swap durable before the staging file is reused) and on file
// systems without RENAME_EXCHANGE.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <asio/posix/stream_descriptor.hpp>

#include "reactor.hpp"
#include "sandbox_agent/error.hpp"

struct io_uring;
struct io_uring_sqe;

namespace sandbox_agent {

class DurableWriter {
 public:
  using Done = std::function<void(int error)>;  // 0, or an errno value
  enum class Spare { keep, drop };  // keep the previous content in the staging file, or not (above)

  explicit DurableWriter(asio::any_io_executor ex);
  ~DurableWriter();
  Status open(unsigned entries = 256);

  // Replaces `path` with `content`, durably. `done` runs on the reactor when it is on disk.
  void write(const std::string& path, std::string content, Done done = {}, Spare spare = Spare::drop);
  // The same, awaited: returns 0 or an errno value.
  awaitable<int> write_async(std::string path, std::string content, Spare spare = Spare::drop);
  // Makes a rename or unlink already done in `dir` durable.
  void sync_dir(const std::string& dir, Done done = {});

  std::size_t pending() const { return paths_.size(); }
  std::uint64_t writes() const { return writes_; }    // files written (a merged write counts once)
  std::uint64_t flushes() const { return flushes_; }  // fsyncs submitted (none for tmpfs)
  awaitable<void> drain();  // until nothing is pending (shutdown)

 private:
  struct Job;
  struct DirSync;
  struct PathSlot {
    std::unique_ptr<Job> running;
    std::optional<std::string> next;  // newest content queued behind `running`
    Spare next_spare = Spare::drop;
    std::vector<Done> next_done;
  };
  struct Op {
    int fd;              // fsync: the file or directory
    std::uintptr_t tag;  // what it is for, and what completes (durable_writer.cpp)
  };
  void start(const std::string& path, std::string content, std::vector<Done> done, Spare spare);
  void submit_fsync(int fd, std::uintptr_t tag);
  void submit(Op op);
  void prep(io_uring_sqe* sqe, const Op& op);
  void flush_submissions();
  awaitable<void> completion_loop();
  void on_file_synced(Job* job, int res);
  void on_renamed(Job* job, int res);
  void swapped_in(Job* job);
  void on_dir_synced(DirSync* dir, int res);
  void finish(Job* job, int error);
  // The swap: a RENAME_EXCHANGE where exchanges(), or a plain rename where a failed exchange
  // says rename_instead() (and the directory remembers a file system that cannot exchange).
  static bool exchanges(const Job& job);
  static bool rename_instead(int err, DirSync& dir);
  int swap_in(Job& job);  // in line, where renames cannot go through the ring: 0 or errno
  DirSync& dir_for(const std::string& dir);
  void queue_dir_sync(DirSync& d, Done done);

  asio::any_io_executor ex_;
  std::unique_ptr<io_uring> ring_;
  asio::posix::stream_descriptor event_;
  std::uint64_t event_buf_ = 0;
  std::unordered_map<std::string, PathSlot> paths_;
  std::unordered_map<std::string, std::unique_ptr<DirSync>> dirs_;
  std::deque<Op> unsubmitted_;  // when the SQ is full
  bool open_ = false;
  bool rename_on_ring_ = false;  // IORING_OP_RENAMEAT (Linux 5.11)
  std::uint64_t writes_ = 0;
  std::uint64_t flushes_ = 0;
  bool submit_posted_ = false;                           // an io_uring_submit is queued on the reactor
  std::shared_ptr<bool> alive_ = std::make_shared<bool>();  // lets that handler outlive us safely
};

}  // namespace sandbox_agent
