#include "userns.hpp"

#include <cerrno>
#include <fcntl.h>
#include <string>

#include "fd.hpp"
#include "log.hpp"

namespace sinit {

namespace {

// Why not the full identity map "0 0 4294967295": moby and runc decide "am I in a user
// namespace?" by reading /proc/self/uid_map, and treat exactly that line as the initial
// namespace. dockerd would then run its devices-cgroup check again and fail, which is the very
// thing the nested namespace is for. One id fewer maps every uid a container image uses while
// still reading as a user namespace. "0 0 1" (what `unshare -r` writes) is the fallback.
constexpr const char* kMappings[] = {"0 0 4294967294\n", "0 0 1\n"};

bool write_proc_file(pid_t pid, const char* name, const char* text, int* err) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) {
    *err = errno;
    return false;
  }
  // These files want the whole map in a single write(2).
  std::string s = text;
  ssize_t n = ::write(fd.get(), s.data(), s.size());
  if (n != static_cast<ssize_t>(s.size())) {
    *err = n < 0 ? errno : EIO;
    return false;
  }
  return true;
}

std::string one_line(const char* map) {
  std::string s = map;
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

}  // namespace

bool write_root_id_maps(pid_t pid) {
  int err = 0;
  // "deny" first: unprivileged writers need it before gid_map; for us it is harmless, and a
  // kernel without the file (before 3.19) is not fatal.
  if (!write_proc_file(pid, "setgroups", "deny", &err))
    log_msg("userns: /proc/%d/setgroups: %s (continuing)", pid, errno_str(err).c_str());

  // uid_map and gid_map can each be written only once, so try a mapping on uid_map first and
  // use the same one for gid_map.
  for (const char* map : kMappings) {
    if (!write_proc_file(pid, "uid_map", map, &err)) {
      log_msg("userns: uid_map '%s' refused: %s", one_line(map).c_str(), errno_str(err).c_str());
      continue;
    }
    if (!write_proc_file(pid, "gid_map", map, &err)) {
      log_msg("userns: gid_map '%s' refused: %s", one_line(map).c_str(), errno_str(err).c_str());
      return false;
    }
    log_msg("userns: pid %d mapped uid/gid '%s'", pid, one_line(map).c_str());
    return true;
  }
  return false;
}

}  // namespace sinit
