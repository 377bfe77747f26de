// sandbox-init: PID 1 of every gVisor sandbox the agent launches. See supervisor.hpp for the
// process duties, dockerd.hpp for dockerd, relay.hpp for the socket relay.
#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

#include "args.hpp"
#include "copy.hpp"
#include "fd.hpp"
#include "log.hpp"
#include "supervisor.hpp"

namespace {
// A sandbox may start init with stdio closed; then the first fds init opens would land on
// 0-2 and be handed to children as their stdio. Park /dev/null there instead.
void ensure_stdio_open() {
  for (int fd = 0; fd < 3; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    int opened = ::open("/dev/null", O_RDWR);
    if (opened >= 0 && opened != fd) ::close(opened);
  }
}
}  // namespace

int main(int argc, char** argv) {
  ensure_stdio_open();
  if (sinit::is_copy_command(argc, argv)) return sinit::copy_main(argc, argv);
  sinit::ParseResult parsed = sinit::parse_args(argc, argv);
  switch (parsed.action) {
    case sinit::ParseResult::Action::PrintVersion:
      std::printf("%s\n", sinit::kVersionLine);
      return 0;
    case sinit::ParseResult::Action::PrintUsage:
      std::fputs(sinit::usage_text(), stdout);
      return 0;
    case sinit::ParseResult::Action::UsageError:
      std::fprintf(stderr, "sandbox-init: %s\n%s", parsed.error.c_str(), sinit::usage_text());
      return 2;
    case sinit::ParseResult::Action::Run:
      break;
  }
  sinit::log_open(parsed.options.log_dir);
  sinit::raise_fd_limit();
  sinit::Supervisor supervisor(parsed.options);
  return supervisor.run();
}
