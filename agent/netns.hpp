// Network namespaces held open by a bind mount on a file (what `ip netns add` does), made in
// code from the agent's own mount namespace: CNI and runsc both take the file's path.
#pragma once

#include <string>

#include "sandbox_agent/error.hpp"

namespace sandbox_agent::netns {

// Creates a new, empty network namespace pinned at `path` (the file is created). Only the
// calling thread enters it, and only between two syscalls: it is back in its own namespace
// before this returns. Fails if `path` exists.
Status create(const std::string& path);

// Unmounts and removes `path`. Idempotent: a missing or unmounted file is fine. The kernel
// frees the namespace once nothing (a runsc sandbox, a veth) holds it.
Status remove(const std::string& path);

// The IPv4 address and prefix ("10.231.0.5/16") of `ifname` inside the namespace at `path`,
// or empty. For DEL after a crash cut ADD short: the plugins' result was never recorded, but
// the interface they configured still says what they gave it.
std::string ipv4_of(const std::string& path, const std::string& ifname);

}  // namespace sandbox_agent::netns
