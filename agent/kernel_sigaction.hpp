// struct sigaction as the kernel's rt_sigaction takes it. Children reset their signals with
// it between fork and exec: libc's sigaction refuses its own internal signals (32, 33),
// which must be reset too, or the program would start with them ignored.
#pragma once

#include <cstdint>

namespace sandbox_agent {

struct KernelSigaction {
  void* handler;
  unsigned long flags;
  void* restorer;
  std::uint64_t mask;  // the kernel's sigset: 64 signals, the size both callers pass (8)
};
static_assert(sizeof(void*) == 8, "KernelSigaction has x86_64's and arm64's layout");

}  // namespace sandbox_agent
