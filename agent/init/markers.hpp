// Status markers for the host agent, which watches --status-dir with inotify and ignores
// dot-files: each marker is written as .NAME.tmp and renamed to NAME, so it only ever sees
// complete files.
#pragma once

#include <string>

namespace sinit {

inline constexpr const char* kInitExitMarker = "init.exit";
inline constexpr const char* kDockerdExitMarker = "dockerd.exit";

// Writes {"exit_code":N} to DIR/NAME atomically. Logs and returns false on failure.
bool write_exit_marker(const std::string& dir, const char* name, int exit_code);

// Removes markers left by a previous run in the same directory, so none is mistaken as new.
void remove_stale_markers(const std::string& dir);

}  // namespace sinit
