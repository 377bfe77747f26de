// Egress rules for bridge sandboxes, in nftables (through libnftables: one atomic transaction
// per change, no process to spawn, and the rules are the agent's own tables, never mixed with
// anyone else's). Also the masquerade for the built-in network's subnet.
//
// Table `inet sandbox_agent`: the forward and input hooks send every packet from a sandbox's
// address through that sandbox's chain (a verdict map keyed by source address); the chain
// accepts what its egress allows and rejects the rest. Replies to allowed traffic (and traffic
// into a sandbox: published ports) pass by conntrack. Bridged traffic between two sandboxes
// reaches the forward hook through br_netfilter (bridge-nf-call-iptables, which the agent
// turns on), so sandboxes cannot reach each other unless allowed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sandbox_agent/cidr.hpp"
#include "sandbox_agent/error.hpp"

struct nft_ctx;

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

// Not thread-safe: one thread uses it (the network module's worker, never the reactor: a
// transaction is a netlink round trip of a few milliseconds).
class Firewall {
 public:
  Firewall();
  ~Firewall();
  Firewall(const Firewall&) = delete;
  Firewall& operator=(const Firewall&) = delete;

  // Replaces the agent's tables with the base rules plus `live`'s chains, atomically (start-up:
  // whatever a crashed agent left is gone in the same transaction that restores the living).
  Status reset(const std::string& masquerade_subnet, const std::vector<SandboxEgress>& live);
  Status add(const SandboxEgress& sb);
  // Creates the table if missing and changes nothing else: whether nftables works here.
  Status reset_probe();
  // Best effort and idempotent: each piece that is there is removed.
  void remove(const std::string& key, const std::string& ip);
  // Drops both tables (tests; the agent keeps them across restarts for sandboxes that live on).
  void remove_all();

 private:
  Status run(const std::string& commands);
  nft_ctx* ctx_ = nullptr;
};

// Makes bridged IPv4 traffic pass the inet hooks (br_netfilter); false with `why` if it cannot.
bool ensure_bridge_netfilter(std::string& why);

}  // namespace sandbox_agent
