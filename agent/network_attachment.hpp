// What a bridge sandbox got from the network, kept in its record so DEL can run after a restart.
#pragma once

#include <string>

namespace sandbox_agent {

struct NetworkAttachment {
  std::string ip, cidr, gateway;
  std::string cni_result;  // the plugin chain's result JSON (DEL's prevResult)
};

}  // namespace sandbox_agent
