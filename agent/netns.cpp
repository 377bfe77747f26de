#include "netns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>

#include "paths.hpp"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

namespace sandbox_agent::netns {

namespace {
Status fail(const std::string& what) { return make_error(ErrorCode::internal, what + ": " + paths::errno_text()); }
}  // namespace

Status create(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
  if (fd < 0) return fail("creating " + path);
  ::close(fd);
  int own = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own < 0) {
    auto s = fail("opening this thread's network namespace");
    ::unlink(path.c_str());
    return s;
  }
  Status result = Ok{};
  if (::unshare(CLONE_NEWNET) != 0) {
    result = fail("unshare(CLONE_NEWNET)");
  } else {
    if (::mount("/proc/thread-self/ns/net", path.c_str(), nullptr, MS_BIND, nullptr) != 0)
      result = fail("pinning the namespace at " + path);
    // Back home whatever happened: everything else this thread does is in the host's namespace.
    if (::setns(own, CLONE_NEWNET) != 0) {
      ::close(own);
      std::abort();  // the reactor thread stranded in a sandbox's namespace: never go on
    }
  }
  ::close(own);
  if (!result) ::unlink(path.c_str());
  return result;
}

Status remove(const std::string& path) {
  while (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) {
  }
  if (errno != EINVAL && errno != ENOENT) return fail("unmounting " + path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail("removing " + path);
  return Ok{};
}

bool is_pinned(const std::string& path) {
  struct statfs fs {};
  return ::statfs(path.c_str(), &fs) == 0 && static_cast<unsigned long>(fs.f_type) == NSFS_MAGIC;
}

}  // namespace sandbox_agent::netns
