// Starting the daemon of a root, from the CLI.
#pragma once

#include <string>

namespace fake_runsc {

// Called by a CLI holding ROOT/fake-runsc.lock while no daemon answers: binds
// ROOT/fake-runsc.sock (so the CLI can connect at once and wait in the backlog), then
// forks and execs the daemon in a new session with no other inherited descriptors.
// Returns false and sets `err` if the socket cannot be bound or the daemon not run.
bool spawn_daemon(const std::string& root, std::string& err);

}  // namespace fake_runsc
