// In-sandbox paths to host paths, through a spec's bind mounts.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "spec.hpp"

namespace fake_runsc {

struct MountView {
  std::string_view destination, source;
};

// The host path of in-sandbox `path`: the longest mount destination that is a path
// prefix of it, replaced by that mount's source. Empty when no mount covers it.
std::string host_path(const std::vector<MountView>& mounts, std::string_view path);

}  // namespace fake_runsc
