// Id maps for a child that has just unshared its user namespace (see spawn.hpp), the in-code
// equivalent of `unshare -U -r` except that init, in the parent namespace, may map many ids.
#pragma once

#include <sys/types.h>

namespace sinit {

// Writes "deny" to /proc/PID/setgroups, then uid_map and gid_map. Tries the widest mapping that
// dockerd still recognises as a user namespace, then "0 0 1". Logs what it used.
bool write_root_id_maps(pid_t pid);

}  // namespace sinit
