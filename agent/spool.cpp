#include "spool.hpp"

#include <asio/random_access_file.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <simdjson.h>

#include "log.hpp"
#include "paths.hpp"
#include "protocol.hpp"

namespace sandbox_agent {

namespace {

constexpr std::string_view kOriginPrefix = "spool:";
constexpr unsigned kFilesReadAtOnce = 64;
// Longer names cannot get what every request gets: NAME.N.json in rejected/ with
// NAME.N.error.json beside it, and the writer's .NAME.tmp staging name, within the 255 bytes
// a file name may have. Such a drop is rejected under a shortened name (see short_name).
constexpr std::size_t kMaxRequestName = 200;

// STEM…-HASH.json: the first 150 bytes of the stem and a hash of the whole name, so two long
// names that share a beginning stay apart.
std::string short_name(std::string_view name) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  std::string stem(name.substr(0, 150));
  while (!stem.empty() && (static_cast<unsigned char>(stem.back()) & 0xc0) == 0x80) stem.pop_back();  // whole UTF-8
  if (!stem.empty() && static_cast<unsigned char>(stem.back()) >= 0xc0) stem.pop_back();
  return stem + "-" + hex + ".json";
}

// Moves dir_from/name to dir_to/name without replacing anything there: a name already
// taken gets a numbered suffix (NAME.1.json …), so no request file is ever overwritten.
// With error_text, STEM.error.json beside the target is created first, complete (written
// aside, then link(2), which never replaces): a rejected x.json must not get an error file
// over a rejected request that was itself called x.error.json, and whoever finds a request
// in rejected/ finds its whole error there. Returns the name used, or empty (errno set).
std::string move_noreplace(const std::string& from_dir, const std::string& to_dir, const std::string& name,
                           const std::string* error_text = nullptr, const std::string& target_name = {}) {
  auto from = paths::join(from_dir, name);
  const std::string& target = target_name.empty() ? name : target_name;
  std::string stem = target.substr(0, target.size() - 5);  // without ".json"
  std::string staged;
  if (error_text) {
    // A few hundred bytes into the page cache; the durable copy replaces it right after.
    // Its own name: another agent's reject (or ours of another file) stages beside it.
    static std::uint64_t staged_count = 0;
    staged = paths::join(to_dir, ".error.json.staged." + std::to_string(::getpid()) + "." + std::to_string(++staged_count));
    int fd = ::open(staged.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return {};
    bool written = ::write(fd, error_text->data(), error_text->size()) == static_cast<ssize_t>(error_text->size());
    int err = errno;
    ::close(fd);
    if (!written) {
      ::unlink(staged.c_str());
      errno = err ? err : EIO;
      return {};
    }
  }
  std::string used;
  int err = EEXIST;
  for (int i = 0; i < 1000 && used.empty(); ++i) {
    std::string target_stem = i == 0 ? stem : stem + "." + std::to_string(i);
    auto to = paths::join(to_dir, target_stem + ".json");
    std::string error_file;
    if (error_text) {
      error_file = paths::join(to_dir, target_stem + ".error.json");
      if (::link(staged.c_str(), error_file.c_str()) != 0) {
        if (errno == EEXIST) continue;
        err = errno;
        break;
      }
    }
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
      used = target_stem + ".json";
      break;
    }
    err = errno;
    if (!error_file.empty()) ::unlink(error_file.c_str());  // the link we just made
    if (err != EEXIST) break;
  }
  if (!staged.empty()) ::unlink(staged.c_str());
  if (used.empty()) errno = err;
  return used;
}

}  // namespace

SpoolIntake::SpoolIntake(asio::any_io_executor ex, const Config& config, Supervisor& supervisor,
                         EventBus& events, DirWatcher& dirs, DurableWriter& writer)
    : ex_(ex), config_(config), supervisor_(supervisor), events_(events), dirs_(dirs), writer_(writer),
      reading_(ex, kFilesReadAtOnce) {}

SpoolIntake::~SpoolIntake() {
  close();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string SpoolIntake::dir(std::string_view sub) const { return paths::join(config_.spool, sub); }

bool SpoolIntake::is_request_name(std::string_view name) {
  return name.size() > 5 && name[0] != '.' && name.ends_with(".json") && name.find('/') == std::string_view::npos;
}

Status SpoolIntake::open() {
  for (auto sub : {"tmp", "new", "cur", "done", "status", "rejected"}) {
    auto d = dir(sub);
    if (!paths::make_dirs(d, 0755))
      return make_error(ErrorCode::internal, "creating " + d + ": " + paths::errno_text());
  }
  // One agent per spool. Claiming by rename keeps two agents from taking one file from new/,
  // but at start an agent resumes every file in cur/: another agent's claims would be
  // launched twice. Held until the process exits; the kernel drops it on any death.
  lock_fd_ = ::open(config_.spool.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (lock_fd_ < 0) return make_error(ErrorCode::internal, "opening " + config_.spool + ": " + paths::errno_text());
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    bool held = errno == EWOULDBLOCK;
    auto text = paths::errno_text();
    ::close(lock_fd_);
    lock_fd_ = -1;
    return make_error(ErrorCode::internal, held ? "the spool " + config_.spool + " is in use by another agent"
                                                : "locking the spool " + config_.spool + ": " + text);
  }
  return Ok{};
}

void SpoolIntake::start() {
  event_token_ = events_.subscribe([this](const StateEvent& e, const Sandbox& sb) { on_event(e, sb); });
  auto wd = dirs_.watch(dir("new"), IN_MOVED_TO | IN_CLOSE_WRITE,
                        [this](std::string_view name, std::uint32_t mask) { on_new_entry(name, mask); });
  if (!wd) spdlog::error("cannot watch {}: {}", dir("new"), wd.error().message);
  else watch_wd_ = *wd;

  // Claimed before a restart: finish what the supervisor does not know about.
  if (DIR* d = ::opendir(dir("cur").c_str())) {
    std::vector<std::string> names;
    while (auto* e = ::readdir(d))
      if (is_request_name(e->d_name)) names.emplace_back(e->d_name);
    ::closedir(d);
    for (auto& name : names) {
      // The newest sandbox launched from this name, if it was launched from this very file:
      // an older one may have had the name before (its file in done/ by now), and this file,
      // claimed after that one ended, may never have been launched. Its claim (the rename
      // into cur/) set its ctime, and its sandbox was created after the claim.
      struct stat st {};
      std::int64_t claimed_us = ::lstat(paths::join(dir("cur"), name).c_str(), &st) == 0
                                    ? static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000 + st.st_ctim.tv_nsec / 1000
                                    : 0;
      const Sandbox* sb = nullptr;
      for (const auto& id : supervisor_.ids_with_origin(std::string(kOriginPrefix) + name))
        if (auto* s = supervisor_.find(id); s && (!sb || s->created_at_us > sb->created_at_us)) sb = s;
      if (sb && sb->created_at_us < claimed_us) {
        spdlog::info("spool: {} in cur/ was claimed after sandbox {} of that name ended: launching it", name, sb->id);
        sb = nullptr;
      }
      if (sb) {
        // Its state may have changed while nobody wrote the status (it ended while the agent
        // was down, or recovery failed it before we subscribed): say so, then finish.
        write_status(name, *sb, is_terminal(sb->state));
      } else {
        in_progress_.insert(name);
        asio::co_spawn(ex_, process(name), asio::detached);
      }
    }
  }
  rescan_new();
  spdlog::info("watching the spool {}", config_.spool);
}

void SpoolIntake::close() {
  if (watch_wd_ >= 0) dirs_.unwatch(watch_wd_);
  watch_wd_ = -1;
  if (event_token_) events_.unsubscribe(event_token_);
  event_token_ = 0;
}

void SpoolIntake::rescan_new() {
  DIR* d = ::opendir(dir("new").c_str());
  if (!d) {
    spdlog::error("cannot read {}: {}", dir("new"), paths::errno_text());
    return;
  }
  std::vector<std::string> names;
  while (auto* e = ::readdir(d))
    if (is_request_name(e->d_name)) names.emplace_back(e->d_name);
  ::closedir(d);
  for (auto& n : names) on_new_entry(n, IN_MOVED_TO);
}

void SpoolIntake::on_new_entry(std::string_view name, std::uint32_t mask) {
  if (mask & IN_Q_OVERFLOW) return rescan_new();
  if (!is_request_name(name)) return;
  std::string n(name);
  if (!in_progress_.insert(n).second) {
    // Being claimed or processed: this may be another file of that name, dropped after the
    // first was claimed. Look again when we are done with the first.
    recheck_.insert(std::move(n));
    return;
  }
  asio::co_spawn(ex_, claim(std::move(n)), asio::detached);
}

awaitable<void> SpoolIntake::claim(std::string name) {
  if (name.size() > kMaxRequestName) {  // straight from new/: it never becomes a request
    co_await reject(dir("new"), name, make_error(ErrorCode::invalid_request,
                                        "the file name is " + std::to_string(name.size()) + " bytes long; at most " +
                                            std::to_string(kMaxRequestName) + " are allowed"));
    done_with(name);
    co_return;
  }
  if (!simdjson::validate_utf8(name.data(), name.size())) {
    // Its origin (spool:NAME) goes into the record and the status, which are JSON.
    co_await reject(dir("new"), name, make_error(ErrorCode::invalid_request, "the file name is not valid UTF-8"));
    done_with(name);
    co_return;
  }
  // Claiming is the rename: whoever renames first owns the file (another agent, or us
  // after a restart, finds it gone). Never replaces a file already in cur/.
  auto from = paths::join(dir("new"), name);
  auto to = paths::join(dir("cur"), name);
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    if (err == EEXIST) {
      co_await reject(dir("new"), name, make_error(ErrorCode::exists, "a request file named " + name +
                                                                 " is already being processed (spool/cur/" + name + ")"));
    } else if (err != ENOENT) {  // ENOENT: claimed by someone else, or gone
      spdlog::error("spool: cannot claim {}: {}", from, std::strerror(err));
    }
    done_with(name);
    co_return;
  }
  co_await process(std::move(name));
}

awaitable<void> SpoolIntake::process(std::string name) {
  auto path = paths::join(dir("cur"), name);
  const auto limit = config_.limits.max_request_bytes;
  std::string text;
  Error error;
  bool readable = false;
  // A burst of drops is read a bounded number at a time: each read holds a descriptor and a
  // buffer of the file's size.
  co_await reading_.acquire();
  struct Slot {
    AsyncSemaphore* held;
    void release() {
      if (held) held->release();
      held = nullptr;
    }
    ~Slot() { release(); }
  } slot{&reading_};
  // O_NONBLOCK: a FIFO must not block us; O_NOFOLLOW: a symlink is not a request. Out of
  // descriptors or memory is the host's trouble, not the request's: it waits in cur/.
  int fd = -1;
  asio::steady_timer pause(ex_);
  for (Millis wait{50};; wait = std::min(wait * 2, Millis(2000))) {
    fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0 || (errno != EMFILE && errno != ENFILE && errno != ENOMEM)) break;
    if (!event_token_) {  // closing: the next start finds it in cur/
      done_with(name);
      co_return;
    }
    if (wait == Millis(50)) spdlog::warn("spool: {} waits in cur/: {}", name, paths::errno_text());
    pause.expires_after(wait);
    co_await pause.async_wait(use_nothrow);
  }
  struct stat st {};
  if (fd < 0) {
    error = make_error(ErrorCode::invalid_request,
                       errno == ELOOP ? "is a symbolic link, not a request file"
                                      : "cannot be read: " + paths::errno_text());
  } else if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    error = make_error(ErrorCode::invalid_request,
                       S_ISDIR(st.st_mode) ? "is a directory, not a request file" : "is not a regular file");
  } else if (static_cast<std::uint64_t>(st.st_size) > limit) {
    error = make_error(ErrorCode::too_large, "is " + std::to_string(st.st_size) + " bytes; the limit is " +
                                                 std::to_string(limit));
  } else {
    // Through the ring: the reactor never waits for the disk.
    asio::random_access_file file(ex_);
    file.assign(fd);
    fd = -1;
    text.resize(static_cast<std::size_t>(st.st_size) + 1);  // +1 notices a file that grew
    std::size_t got = 0;
    for (;;) {
      auto [ec, n] = co_await file.async_read_some_at(got, asio::buffer(text.data() + got, text.size() - got), use_nothrow);
      got += n;
      if (ec || n == 0 || got == text.size()) {
        if (ec && ec != asio::error::eof)
          error = make_error(ErrorCode::invalid_request, "cannot be read: " + ec.message());
        else
          readable = true;
        break;
      }
    }
    text.resize(got);
    if (readable && got > limit) {
      readable = false;
      error = make_error(ErrorCode::too_large, "is larger than " + std::to_string(limit) + " bytes");
    }
  }
  if (fd >= 0) ::close(fd);
  slot.release();

  if (readable) {
    auto request = parse_launch_request(text, supervisor_.policy());
    if (!request) {
      error = request.error();
      readable = false;
    } else {
      // A valid request the agent cannot take now is not rejected: it stays claimed in
      // cur/ and is tried again, with backoff; a restart finds it there. Now: overloaded,
      // shutting down, or the host failing (`internal`: its record could not be written,
      // the disk full or read-only), which passes.
      asio::steady_timer timer(ex_);
      bool said = false;
      for (Millis wait{20};; wait = std::min(wait * 2, Millis(5000))) {
        auto launched = co_await supervisor_.launch(request.value(), std::string(kOriginPrefix) + name);
        if (launched) {
          if (said) spdlog::info("spool: {} accepted after waiting", name);
          done_with(name);
          co_return;
        }
        auto code = launched.error().code;
        if (code != ErrorCode::overloaded && code != ErrorCode::internal) {
          error = launched.error();
          break;
        }
        if (!event_token_) {  // closed: the next start finds it in cur/
          done_with(name);
          co_return;
        }
        if (code == ErrorCode::internal && !said) {
          spdlog::warn("spool: {} waits in cur/ until the host recovers: {}", name, launched.error().message);
          said = true;
        } else {
          spdlog::debug("spool: {} waits: {}", name, launched.error().message);
        }
        timer.expires_after(code == ErrorCode::internal ? std::max(wait, Millis(100)) : std::min(wait, Millis(1000)));
        co_await timer.async_wait(use_nothrow);
      }
    }
  }
  co_await reject(dir("cur"), name, error);
  done_with(name);  // after the move: cur/NAME is free for another file of that name
}

awaitable<void> SpoolIntake::reject(std::string from_dir, std::string name, Error error) {
  auto text = protocol::reply_error(error, {});
  // The disk may refuse (full, read-only): the file stays where it is and is moved once it
  // can be, with backoff; it is never left behind without a word.
  asio::steady_timer timer(ex_);
  std::string moved;
  for (Millis wait{100};; wait = std::min(wait * 2, Millis(5000))) {
    moved = move_noreplace(from_dir, dir("rejected"), name, &text,
                           name.size() > kMaxRequestName ? short_name(name) : std::string());
    if (!moved.empty()) break;
    if (errno == ENOENT || !event_token_) {  // gone (taken by someone else), or we are closing
      spdlog::error("spool: cannot move {} to rejected/: {}", paths::join(from_dir, name), paths::errno_text());
      co_return;
    }
    if (wait == Millis(100))
      spdlog::error("spool: cannot move {} to rejected/ yet: {}; retrying", paths::join(from_dir, name),
                    paths::errno_text());
    timer.expires_after(wait);
    co_await timer.async_wait(use_nothrow);
  }
  spdlog::warn("spool: rejected {}{}: {}", name, moved == name ? "" : " (as " + moved + ")", error.describe());
  auto error_file = paths::join(dir("rejected"), moved.substr(0, moved.size() - 5) + ".error.json");
  writer_.write(error_file, std::move(text));  // the same text, now durably
}

void SpoolIntake::on_event(const StateEvent& e, const Sandbox& sb) {
  if (!sb.origin.starts_with(kOriginPrefix)) return;
  write_status(sb.origin.substr(kOriginPrefix.size()), sb, is_terminal(e.state));
}

void SpoolIntake::write_status(const std::string& name, const Sandbox& sb, bool terminal) {
  auto status_file = paths::join(dir("status"), name);
  // The status says so before the file moves to done/.
  writer_.write(status_file, to_json(sb.status()) + "\n", [this, name, id = sb.id, terminal](int err) {
    if (err) {
      spdlog::error("spool: cannot write the status of {}: {}; retrying", name, std::strerror(err));
      retry_status(name, id);
      return;
    }
    if (terminal) finish(name);
  });
}

// A status the disk refused is written again (the sandbox's newest status) with backoff
// until it is there; a terminal one then moves the request to done/ as usual.
void SpoolIntake::retry_status(const std::string& name, const std::string& id) {
  unwritten_status_[name] = id;
  if (retrying_status_) return;
  retrying_status_ = true;
  asio::co_spawn(ex_, [this]() -> awaitable<void> {
    asio::steady_timer t(ex_);
    for (Millis wait{100}; !unwritten_status_.empty() && event_token_; wait = std::min(wait * 2, Millis(5000))) {
      t.expires_after(wait);
      co_await t.async_wait(use_nothrow);
      auto pending = unwritten_status_;
      for (const auto& [name, id] : pending) {
        const Sandbox* sb = supervisor_.find(id);
        if (!sb || sb->origin != std::string(kOriginPrefix) + name) {
          unwritten_status_.erase(name);
          continue;
        }
        bool terminal = is_terminal(sb->state);
        if (co_await writer_.write_async(paths::join(dir("status"), name), to_json(sb->status()) + "\n") == 0) {
          unwritten_status_.erase(name);
          spdlog::info("spool: status of {} written ({})", name, to_string(sb->state));
          if (terminal) finish(name);
        }
      }
    }
    retrying_status_ = false;
  }, asio::detached);
}

void SpoolIntake::done_with(const std::string& name) {
  in_progress_.erase(name);
  if (recheck_.erase(name)) on_new_entry(name, IN_MOVED_TO);
}

void SpoolIntake::finish(const std::string& name) {
  if (::access(paths::join(dir("cur"), name).c_str(), F_OK) != 0) return;
  if (move_noreplace(dir("cur"), dir("done"), name).empty())
    spdlog::error("spool: cannot move {} to done/: {}", name, paths::errno_text());
}

}  // namespace sandbox_agent
