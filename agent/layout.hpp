// Where everything lives under the root directory (the contract's layout).
#pragma once

#include <string>

#include "paths.hpp"

namespace sandbox_agent {

struct Layout {
  std::string root;
  std::string state_dir() const { return paths::join(root, "state"); }
  std::string state_file(const std::string& id) const { return paths::join(state_dir(), id + ".json"); }
  std::string bundle_dir(const std::string& id) const { return paths::join(paths::join(root, "bundles"), id); }
  std::string sockets_dir(const std::string& id) const { return paths::join(paths::join(root, "sockets"), id); }
  std::string logs_dir(const std::string& id) const { return paths::join(paths::join(root, "logs"), id); }
  std::string runsc_root() const { return paths::join(root, "runsc"); }
};

}  // namespace sandbox_agent
