// Files of fake-runsc under --root, and how the CLI finds and starts the daemon.
#pragma once

namespace fake_runsc {

inline constexpr const char* kSocketName = "fake-runsc.sock";       // the daemon listens here
inline constexpr const char* kLockName = "fake-runsc.lock";         // flock: start/retire
inline constexpr const char* kPidName = "fake-runsc.pid";           // the daemon's pid
inline constexpr const char* kStartsLog = "fake-starts.log";        // "ID UNIX_US" per start
inline constexpr const char* kReadyLog = "fake-dockerd-ready.log";  // dockerd answers
inline constexpr int kIdleExitSeconds = 3;  // with no container and no CLI connected

// The daemon is a separate executable next to the CLI (the CLI is linked statically and
// without a JSON parser so that it starts fast). It is run as
//   fake-runsc-daemon ROOT   with its listening socket as fd 3.
inline constexpr const char* kDaemonExe = "fake-runsc-daemon";
inline constexpr int kListenFd = 3;

}  // namespace fake_runsc
