// Small filesystem and Unix-socket helpers.
#pragma once

#include <string>
#include <string_view>

namespace fake_runsc {

std::string join_path(std::string_view dir, std::string_view name);
// `p` made absolute against `cwd` (no normalisation).
std::string absolute_path(std::string_view cwd, std::string_view p);
bool make_dirs(const std::string& path, unsigned mode);

// Creates or truncates `path` with `data`; on failure returns false and sets *err.
bool write_file(const std::string& path, std::string_view data, std::string* err);
// Writes DIR/.NAME.tmp then renames it to DIR/NAME, as sandbox-init does for markers.
bool write_marker(const std::string& dir, std::string_view name, std::string_view data);
// Appends `line` plus a newline (O_APPEND, so concurrent writers do not interleave).
void append_line(const std::string& path, std::string_view line);
// Writes all of `data` to a blocking fd, retrying on EINTR.
bool write_all(int fd, std::string_view data);

// A non-blocking, close-on-exec listening AF_UNIX stream socket at `path`: an old file
// there is replaced, and the file appears only once the socket listens. Paths longer
// than sun_path go through /proc/self/fd/N of the parent. Returns -1 and sets *err.
int unix_listen(const std::string& path, int backlog, std::string* err);
// A socket bound at `path` that does not listen yet; -1 (and *err) on failure.
int unix_bind(const std::string& path, std::string* err);
// A blocking, close-on-exec connected socket, or -1 with errno set.
int unix_connect(const std::string& path);

}  // namespace fake_runsc
