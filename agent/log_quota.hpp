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

// Reads the regular files off the tmpfs at `dir` (links, directories and the rest are dropped),
// unmounts it, and writes them into `dir` on the file system below, replacing files of the
// same name. The reads and writes go through the ring (up to the quota's worth of I/O: the
// reactor never waits for the disk). Errors name the file; the tmpfs goes whatever happens.
awaitable<Status> unmount_keeping(std::string dir);

}  // namespace sandbox_agent::log_quota
