// sandbox-init's second job: `cp-in` / `cp-out`, run by the agent through `runsc exec` for
// the `cp` op, so copying needs no tool inside the image. One regular file, streamed between
// the path and stdin/stdout, bounded by --max-bytes; `cp-in` writes a temporary file beside
// the target and renames it into place, so a failed copy leaves nothing behind.
// The last line on stderr is the report: "copied N bytes", or the reason. Exit codes:
// 0 copied, 2 the path is not usable (a directory, not a regular file, no such directory,
// permission), 3 no such file, 4 bigger than --max-bytes, 1 anything else (I/O).
#pragma once

namespace sinit {

// Whether argv names a copy (argv[1] is cp-in or cp-out).
bool is_copy_command(int argc, const char* const* argv);
int copy_main(int argc, const char* const* argv);

}  // namespace sinit
