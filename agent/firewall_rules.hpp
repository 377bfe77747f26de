// The nftables rules for bridge sandboxes, as text (pure: unit-tested, applied by firewall.hpp).
// Table `inet sandbox_agent`: the forward and input hooks send every packet from a sandbox's
// address through that sandbox's chain (a verdict map keyed by source address); the chain
// accepts what its egress allows and rejects the rest. Replies to allowed traffic (and traffic
// into a sandbox: published ports) pass by conntrack. Bridged traffic between two sandboxes
// reaches the forward hook through br_netfilter (bridge-nf-call-iptables, which the agent
// turns on), so sandboxes cannot reach each other unless allowed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sandbox_agent/cidr.hpp"

namespace sandbox_agent {

inline constexpr std::string_view kFirewallTable = "sandbox_agent";
inline constexpr std::string_view kNatTable = "sandbox_agent_nat";

struct SandboxEgress {
  std::string key;  // names its chain and sets: the runsc id (unique, fixed length)
  std::string ip;   // the sandbox's address
  AllowedAddresses allowed;
};

// The rule text (nft syntax), pure, for tests and for the transactions below.
std::string firewall_base_rules(const std::string& masquerade_subnet);  // recreates both tables
std::string sandbox_rules(const SandboxEgress& sb);
std::vector<std::string> sandbox_removal(const std::string& key, const std::string& ip);
std::string chain_name(const std::string& key);

}  // namespace sandbox_agent
