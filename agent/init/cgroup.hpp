// How dockerd gets past its "Devices cgroup isn't mounted" check (Debian's runsc 20221219 has no
// devices cgroup; dockerd skips the check when it runs in a user namespace):
//   sandbox / host-bind / none: plain dockerd (the spec provides the mount, or nothing does);
//   userns: dockerd in a nested user namespace, where it skips the check;
//   auto:   plain when a cgroup v1 devices hierarchy is mounted, userns otherwise.
#pragma once

#include <optional>
#include <string>

#include "args.hpp"

namespace sinit {

struct CgroupDecision {
  bool userns = false;
  std::string reason;  // for the log
};

CgroupDecision decide_cgroup_strategy(CgroupMode mode,
                                      const std::string& mountinfo_path = "/proc/self/mountinfo");

// The mount point of a cgroup v1 mount with the devices controller in mountinfo text, if any.
std::optional<std::string> find_devices_cgroup(const std::string& mountinfo);

}  // namespace sinit
