// A sandbox's logs directory (ROOT/logs/ID) is a size-limited tmpfs while the sandbox lives:
// whatever the sandbox writes — its stdout and stderr (runsc.log), what it writes under
// /.sandbox-agent/logs, files, links — lands there and nowhere else on the host, and past
// logs.max_bytes_per_sandbox writes fail (ENOSPC). When it is torn down, its regular files
// are kept on the disk below and the tmpfs goes.
#pragma once

#include <cstdint>
#include <string>

#include "reactor.hpp"
#include "sandbox_agent/error.hpp"

namespace sandbox_agent::log_quota {

// Mounts a tmpfs of `bytes` (and a few hundred inodes) on `dir`, which must exist.
Status mount(const std::string& dir, std::uint64_t bytes);

// Whether `dir` is such a mount (a tmpfs on a directory of another file system, or of the
// same tmpfs mounted again: the device differs from the parent's).
bool mounted(const std::string& dir);

// Copies the regular files off the tmpfs at `dir` (links, directories and the rest are
// dropped) into the directory below it, replacing files of the same name, then unmounts it:
// whoever looks at `dir` sees the tmpfs or all the kept logs, never some. The reads and writes
// go through the ring (the reactor never waits for the disk). Nothing to do for a directory
// that is no tmpfs. Errors name the file; the tmpfs goes whatever happens.
// Reach::after_unmount, as when the kernel refuses open_tree (needed to reach the directory
// below), holds the files in memory and writes them once the tmpfs is gone.
enum class Reach { below, after_unmount };
awaitable<Status> unmount_keeping(std::string dir, Reach reach = Reach::below);

}  // namespace sandbox_agent::log_quota
