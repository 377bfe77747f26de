// Asks the configured runsc what it is, once, at start-up: `runsc --version`, `runsc flags`,
// `runsc help platforms`, and the host's `dockerd --version`. Child processes on the reactor
// (argv only, bounded by a deadline), like every runsc call.
#pragma once

#include "reactor.hpp"
#include "sandbox_agent/config.hpp"
#include "sandbox_agent/runtime.hpp"

namespace sandbox_agent {

awaitable<RuntimeInfo> probe_runtime(const Config& config);

// The same, on a private io_context, for callers without a reactor (`--check-config`).
RuntimeInfo probe_runtime_now(const Config& config);

}  // namespace sandbox_agent
