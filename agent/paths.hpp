// Small path and filesystem helpers shared across modules (no Asio, no JSON).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace sandbox_agent::paths {

// "/a/b" — absolute, no empty, "." or ".." components, no trailing slash (except "/").
bool is_normalized_absolute(std::string_view p);

// True when `p` equals `dir` or lies beneath it (component-wise, not string prefix).
bool is_same_or_under(std::string_view p, std::string_view dir);

std::string join(std::string_view a, std::string_view b);
std::string errno_text();  // strerror(errno)

// mkdir -p with a mode for created directories; false (errno set) on failure.
bool make_dirs(const std::string& path, unsigned mode = 0755);

// rm -rf of a directory tree that contains no mount points; best effort, returns success.
bool remove_tree(const std::string& path);

// The pid in a pid file (runsc's --pid-file: digits, no newline), or -1. `written_unix_us`,
// when given, gets the file's mtime: when runsc wrote it (0 if there is no pid).
int read_pid_file(const std::string& path, std::int64_t* written_unix_us = nullptr);

// Reads a whole small file (up to max bytes); false on error or when larger.
// Like read_file, but only a regular file (symlinks to one too), opened without blocking: a
// FIFO or a device put where a file is expected fails with EINVAL instead of blocking.
bool read_regular_file(const std::string& path, std::string& out, std::size_t max);
bool read_file(const std::string& path, std::string& out, std::size_t max);

// The same for a file in a directory a sandbox can write to (sockets/ID, logs/ID): never
// follows a symlink, never blocks on a FIFO, reads only regular files. What a sandbox
// leaves there must not make the agent (root) read or write anything else.
bool read_untrusted_file(const std::string& path, std::string& out, std::size_t max);

// Whether a line of an untrusted file (opened as read_untrusted_file does) satisfies `match`,
// reading it in blocks however large it is: memory stays bounded by `max_line`. `match` gets
// each line without its '\n' (the last one too, if the file does not end in one); of a line
// longer than max_line, its last max_line bytes (what was appended to it last).
// 1 found, 0 not found, -1 on error (errno set).
int find_untrusted_line(const std::string& path, std::size_t max_line,
                        const std::function<bool(std::string_view)>& match);

// Writes all of `data` to `fd` (retrying short writes and EINTR); false with errno set.
bool write_all(int fd, std::string_view data);

// fchmodat(dfd, name, mode, AT_SYMLINK_NOFOLLOW): with fchmodat2 (Linux 6.6) one system call;
// before it, libc's way (an O_PATH open and a chmod of its /proc/self/fd link). -1 with errno.
int chmod_at_nofollow(int dfd, const char* name, unsigned mode);

// Where an atomic replacement of `path` is staged: .NAME.tmp beside it. DurableWriter keeps
// the previous content there after a swap (the file is reused, not freed).
std::string staging_path(const std::string& path);
// Removes `path` and its staging file.
void remove_file_and_staging(const std::string& path);

// Writes `data` to `path` atomically (tmp + fsync + rename + fsync dir). Blocking: for
// start-up and tools, not for the reactor (see DurableWriter).
bool write_file_atomic(const std::string& path, std::string_view data, unsigned mode = 0644);

// The last `max` bytes of a file (from a line start where possible); empty on error.
// Untrusted like read_untrusted_file: logs live where sandboxes write.
std::string tail_file(const std::string& path, std::size_t max);

// Directory of the running executable (/proc/self/exe).
std::string self_exe_dir();

}  // namespace sandbox_agent::paths
