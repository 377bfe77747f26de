// CNI without libcni: a network configuration list, the JSON each plugin gets on stdin, and
// the result a chain of plugins returns. The agent runs the plugins itself (network.cpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sandbox_agent/config.hpp"
#include "sandbox_agent/error.hpp"
#include "sandbox_agent/request.hpp"

namespace sandbox_agent::cni {

inline constexpr std::string_view kDefaultNetworkName = "sandbox-agent";
inline constexpr std::string_view kDefaultBridge = "sa-br0";
inline constexpr std::string_view kInterface = "eth0";

struct Plugin {
  std::string type;                       // the plugin binary's name in network.cni_path
  std::string conf;                       // its object, as written in the list
  std::vector<std::string> capabilities;  // those set to true ("portMappings", …)
};

struct NetworkList {
  std::string name;
  std::string cni_version;
  std::vector<Plugin> plugins;
};

// Parses a .conflist; errors name the field.
Result<NetworkList> parse_conflist(std::string_view text);

// The built-in list: bridge (gateway, hairpin; no ipMasq: the agent masquerades in nftables,
// because runsc takes the sandbox interface's addresses away and the bridge plugin's DEL then
// cannot find the address its masquerade rule was for), host-local IPAM on `subnet` with its
// leases in `ipam_dir`, firewall (forwarding allowed on hosts whose FORWARD policy is DROP,
// e.g. with Docker), and portmap.
std::string default_conflist(const std::string& subnet, const std::string& ipam_dir);

// What a plugin gets on stdin: its own object plus name, cniVersion, prevResult (when there
// is one) and runtimeConfig for the capabilities it declared.
std::string plugin_input(const NetworkList& list, const Plugin& plugin, std::string_view prev_result,
                         const std::vector<PortMapping>& ports);

// The address the chain gave the sandbox, from a result (any CNI version with "ips").
struct Attachment {
  std::string ip;       // without prefix length
  std::string cidr;     // "10.231.0.5/16"
  std::string gateway;  // may be empty
  std::string result;   // the whole result, kept for DEL's prevResult
};
Result<Attachment> parse_result(std::string_view text);

// A plugin's error object ({"code":…,"msg":…,"details":…}) as one line; falls back to the
// text itself.
std::string describe_error(std::string_view output);

// The environment a plugin runs with.
std::vector<std::string> plugin_env(std::string_view command, const std::string& container_id,
                                    const std::string& netns, const std::string& cni_path);

}  // namespace sandbox_agent::cni
