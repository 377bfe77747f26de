#include "copy.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "fd.hpp"

namespace sinit {

namespace {

constexpr int kCopied = 0, kFailed = 1, kBadPath = 2, kNoFile = 3, kTooBig = 4;
constexpr std::size_t kChunk = 1 << 20;

int report_error(int code, const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  return code;
}

int path_error(const std::string& path, int err) {
  return report_error(err == ENOENT ? kNoFile : (err == EIO ? kFailed : kBadPath), path + ": " + errno_str(err));
}

struct CopyOptions {
  bool in = false;
  unsigned long long max_bytes = 0;
  mode_t mode = 0644;
  std::string path;
};

bool parse(int argc, const char* const* argv, CopyOptions& o, std::string& error) {
  o.in = std::string_view(argv[1]) == "cp-in";
  int i = 2;
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    char* end = nullptr;
    if (a.starts_with("--max-bytes=")) {
      o.max_bytes = std::strtoull(argv[i] + 12, &end, 10);
      if (*end || o.max_bytes == 0) return error = "bad --max-bytes", false;
    } else if (a.starts_with("--mode=") && o.in) {
      o.mode = static_cast<mode_t>(std::strtoul(argv[i] + 7, &end, 8));
      if (*end || o.mode > 07777) return error = "bad --mode", false;
    } else {
      return error = "unknown option " + std::string(a), false;
    }
  }
  if (i + 1 != argc || argv[i][0] != '/') return error = "usage: cp-in|cp-out --max-bytes=N [--mode=M] -- /PATH", false;
  if (o.max_bytes == 0) return error = "--max-bytes is required", false;
  o.path = argv[i];
  return true;
}

// Copies `from` to `to` until EOF; false past `max` bytes or on an I/O error (errno set).
bool pump(int from, int to, unsigned long long max, unsigned long long& copied, bool& too_big) {
  static char buf[kChunk];
  for (;;) {
    ssize_t n = ::read(from, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    if (copied + static_cast<unsigned long long>(n) > max) {
      too_big = true;
      return false;
    }
    if (!write_all(to, buf, static_cast<size_t>(n))) return false;
    copied += static_cast<unsigned long long>(n);
  }
}

int copy_out(const CopyOptions& o) {
  Fd f(::open(o.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!f.valid()) return path_error(o.path, errno);
  struct stat st {};
  if (::fstat(f.get(), &st) != 0) return path_error(o.path, errno);
  if (!S_ISREG(st.st_mode)) return report_error(kBadPath, o.path + ": not a regular file");
  if (static_cast<unsigned long long>(st.st_size) > o.max_bytes)
    return report_error(kTooBig, o.path + " is " + std::to_string(st.st_size) + " bytes, more than the limit of " +
                                     std::to_string(o.max_bytes) + " (limits.max_copy_bytes)");
  ::fcntl(f.get(), F_SETFL, 0);  // O_NONBLOCK was for the open only (a FIFO must not hang it)
  unsigned long long copied = 0;
  bool too_big = false;
  if (!pump(f.get(), 1, o.max_bytes, copied, too_big)) {
    if (too_big) return report_error(kTooBig, o.path + " grew past the limit of " + std::to_string(o.max_bytes) + " bytes");
    return report_error(kFailed, o.path + ": " + errno_str(errno));
  }
  std::fprintf(stderr, "copied %llu bytes\n", copied);
  return kCopied;
}

int copy_in(const CopyOptions& o) {
  auto slash = o.path.rfind('/');
  std::string dir = slash == 0 ? "/" : o.path.substr(0, slash);
  std::string name = o.path.substr(slash + 1);
  struct stat st {};
  mode_t mode = o.mode;
  if (::stat(o.path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return report_error(kBadPath, o.path + " is a directory");
    if (!S_ISREG(st.st_mode)) return report_error(kBadPath, o.path + ": not a regular file");
    mode = st.st_mode & 07777;  // replacing a file keeps its mode
  } else if (errno != ENOENT) {
    return path_error(o.path, errno);
  }
  std::string tmp = dir + (dir == "/" ? "" : "/") + "." + name + ".sandbox-agent-XXXXXX";
  Fd f(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!f.valid()) return report_error(errno == ENOENT || errno == ENOTDIR ? kBadPath : kFailed, dir + ": " + errno_str(errno));
  unsigned long long copied = 0;
  bool too_big = false;
  bool ok = pump(0, f.get(), o.max_bytes, copied, too_big);
  int err = errno;
  if (ok && (::fchmod(f.get(), mode) != 0 || ::fsync(f.get()) != 0)) ok = false, err = errno;
  if (ok && ::rename(tmp.c_str(), o.path.c_str()) != 0) ok = false, err = errno;
  if (!ok) {
    ::unlink(tmp.c_str());
    if (too_big) return report_error(kTooBig, "more than the limit of " + std::to_string(o.max_bytes) + " bytes (limits.max_copy_bytes); nothing was written");
    return report_error(kFailed, o.path + ": " + errno_str(err));
  }
  std::fprintf(stderr, "copied %llu bytes\n", copied);
  return kCopied;
}

}  // namespace

bool is_copy_command(int argc, const char* const* argv) {
  if (argc < 2) return false;
  std::string_view a = argv[1];
  return a == "cp-in" || a == "cp-out";
}

int copy_main(int argc, const char* const* argv) {
  CopyOptions o;
  std::string error;
  if (!parse(argc, argv, o, error)) return report_error(kBadPath, error);
  return o.in ? copy_in(o) : copy_out(o);
}

}  // namespace sinit
