// Applying the egress rules (firewall_rules.hpp) and the masquerade for the built-in network's
// subnet, in tables that are the agent's own, never mixed with anyone else's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "firewall_rules.hpp"
#include "reactor.hpp"
#include "sandbox_agent/error.hpp"

namespace sandbox_agent {

// Applies the rules with `nft -f -` (Debian's nftables), a child process on the reactor like
// the CNI plugins: one file is one netlink transaction (all of it applies, or none), and the
// reactor never waits for netlink. Each call has a deadline.
class Firewall {
 public:
  explicit Firewall(std::string nft = "/usr/sbin/nft", Millis timeout = Millis(10000))
      : nft_(std::move(nft)), timeout_(timeout) {}
  const std::string& program() const { return nft_; }

  // Replaces the agent's tables with the base rules plus `live`'s chains, atomically (start-up:
  // whatever a crashed agent left is gone in the same transaction that restores the living).
  awaitable<Status> reset(std::string masquerade_subnet, std::vector<SandboxEgress> live);
  awaitable<Status> add(SandboxEgress sb);
  // Best effort and idempotent: each piece that is there is removed.
  awaitable<void> remove(std::string key, std::string ip);

 private:
  awaitable<Status> run(std::string commands);
  std::string nft_;
  Millis timeout_;
};

inline constexpr const char* kBridgeNetfilterKnob = "/proc/sys/net/bridge/bridge-nf-call-iptables";

// Makes bridged IPv4 traffic pass the inet hooks (br_netfilter), turning the knob on when it is
// off (as Docker does); false with `why` if it cannot.
bool ensure_bridge_netfilter(std::string& why);

}  // namespace sandbox_agent
